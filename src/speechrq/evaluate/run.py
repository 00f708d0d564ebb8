"""``speechrq evaluate``: probe several encoders on one corpus and write the results.

Outputs in ``OUT``:

- ``results.json``: every number (scores, lr sweep, layer weights, target separability);
- ``results.md``: the paper's Table 1 layout with Avg, and the target-separability table;
- ``layer_weights.png``: Figure 4, weighted-sum weights per task, models side by side;
- ``curves.png``: Figure 3, each task and Avg against the cumulative step, one line per run
  (when a run directory is evaluated ``--every N`` steps);
- ``target_tsne_phones.png`` / ``target_tsne_speakers.png``: Figures 5 and 6
  (:mod:`speechrq.evaluate.target_quality`).

Finished probes are kept one file per probe seed, ``OUT/probes/<encoder fingerprint>/<task>.<settings digest>.seed<k>.json``,
with the settings that made them (the corpus by the content of its manifests), and hidden states in
``OUT/hidden_states/<corpus fingerprint>/<encoder fingerprint>``, so a second run with the same
settings trains nothing and encodes nothing, a run with more probe seeds trains only the new ones, and a run
with other settings or another corpus in the same folder never reads them (:mod:`speechrq.identity`).
``reuse`` (``--reuse-probes DIR``) reads finished probes from other evaluations' folders too, by the same
rule, and copies them into ``OUT``: the demo's curves take their last checkpoints' probes from its probe table.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

from ..checkpoint import list_checkpoints
from ..encoders import FrozenEncoder, HiddenStateCache, cache_hidden_states
from ..encoders.frozen import COMPILED
from ..encoders.cache import STATES_BATCH_SECONDS, Recomputer, plan_cache, state_shape
from ..errors import SpeechrqError
from ..io import atomic_path, atomic_write_json, atomic_write_text
from .baselines import FBANK_BASELINE, RANDOM_BASELINE
from .finetune import FinetuneConfig
from .finetune import finetune as finetune_encoder
from .jobs import MEMORY_SHARE, PROVIDED, ProbeJob, available_memory, default_jobs, fit_jobs, run_jobs, store_bytes
from .probes import CTC_TASKS, SUPERB_TASKS, TASKS, ProbeResult, StateStore, label_of, over_folds, over_inits, over_seeds, superb_average
from .splits import DEFAULT_FOLD, Fold

DISK_SHARE = 0.8  # the default cache budget: this share of the free space where hidden states are kept
TARGET_SAMPLE = {"per_speaker": 20, "seed": 0}  # the utterances target analysis reads (Figures 5 and 6)


def model_name(checkpoint: str | Path) -> str:
    """``exp/demo/stage0/checkpoints/step_00000400`` -> ``stage0@400``."""
    p = Path(checkpoint)
    step = p.name.split("_")[-1].lstrip("0") or "0"
    run = p.parent.parent.name if p.parent.name == "checkpoints" else p.parent.name
    return f"{run}@{step}"


def resolve_checkpoints(paths: list[str | Path], every: int | None = None) -> dict[str, Path]:
    """Checkpoints to evaluate, by model name: a checkpoint or Hugging Face folder as given; a run
    directory's newest checkpoint, or with ``every`` each of its checkpoints whose step is a multiple of it."""
    from ..encoders.hf import is_pretrained_folder

    found: dict[str, Path] = {}
    for p in map(Path, paths):
        if is_pretrained_folder(p):  # a Hugging Face baseline
            found[p.name] = p
            continue
        if (p / "meta.json").exists():
            found[model_name(p)] = p
            continue
        if not (p / "checkpoints").is_dir():
            raise SpeechrqError(f"{p}: neither a checkpoint (RUN/checkpoints/step_N), a run directory (holding checkpoints/) "
                                "nor a Hugging Face model folder (config.json)")
        ckpts = list_checkpoints(p / "checkpoints")
        if not ckpts:
            raise SpeechrqError(f"{p}/checkpoints: no complete checkpoint")
        chosen = [c for s, c in ckpts if s % every == 0] if every else [ckpts[-1][1]]
        if not chosen:
            raise SpeechrqError(f"{p}: no checkpoint at a multiple of --every {every} (steps: {', '.join(str(s) for s, _ in ckpts)})")
        found |= {model_name(c): c for c in chosen}
    return found


def _probe_record(task: str, enc_fingerprint: str, data, lrs: list[float], epochs: int, preset: str, out: Path, corpus: str,
                  seeds: int, fold: Fold, ft: FinetuneConfig | None, corpus_fp: str, reuse: tuple[Path, ...] = ()
                  ) -> tuple[dict[int, Path], dict, dict[int, ProbeResult], int]:
    """Where each probe seed's result is kept, the settings that make them, the seeds already probed (the saved
    result of each seed probed with the same settings on the same corpus content, in ``out`` or a ``reuse`` folder)
    and how many of them were copied from a ``reuse`` folder into ``out``. Results are kept under a name keyed by the settings' digest, so none is ever replaced."""
    from ..identity import digest
    from ..schema import load
    from ..formats import probe_cache

    utterances = {s: len(v) for s, v in data.items()}
    settings = ({"corpus": str(corpus), "finetune": asdict(ft), "utterances": utterances} if task == "ft" else
                {"corpus": str(corpus), "lrs": lrs, "epochs": epochs, "preset": preset, "utterances": utterances})
    # probe/2: ASR's characters from the training transcripts in every script (speechrq.text), CER per language;
    # probe/3: states computed in the cache pass's fixed batches, utterance means summed in float64 (encoders.cache);
    # probe/4: one file per probe seed (a seed's result does not depend on how many seeds were asked for)
    settings |= {"corpus_fingerprint": corpus_fp, "code": "probe/4"}
    if fold != DEFAULT_FOLD:
        settings["fold"] = asdict(fold)
    key = digest({k: v for k, v in settings.items() if k != "corpus"})  # the corpus by content; a moved corpus keeps its probes
    stem = f"{task}.{fold.name}.{key}" if fold.name else f"{task}.{key}"
    paths = {seed: out / "probes" / enc_fingerprint / f"{stem}.seed{seed}.json" for seed in range(seeds)}
    found: dict[int, ProbeResult] = {}
    copied = 0
    for seed, path in paths.items():
        wanted = json.loads(json.dumps({k: v for k, v in settings.items() if k != "corpus"} | {"seed": seed}))
        for where in (out, *reuse):
            kept = where / "probes" / enc_fingerprint / path.name
            if not kept.exists():
                continue
            saved = load(kept, probe_cache)  # a kept probe edited by hand or cut short: one line naming the file and key
            if {k: v for k, v in saved.get("settings", {}).items() if k != "corpus"} == wanted:
                found[seed] = ProbeResult(**saved["result"])
                if where != out:  # out holds every probe its results read
                    atomic_write_json(path, saved)
                    copied += 1
                break
    return paths, settings, found, copied


def _read_by_probes(tasks: list[str], labelled: dict, cuts: dict, folds: list[Fold], target_analysis: bool
                    ) -> tuple[list[str], list[str], list[str]]:
    """``(frame ids, target-analysis ids, mean ids)`` in manifest order: the utterances whose frames the CTC probes read,
    those whose frames target analysis reads, and those whose utterance means the utterance-level probes read."""
    from lhotse import CutSet

    from .target_quality import sample_cuts

    order = list(dict.fromkeys(c.id for p in cuts for c in cuts[p]))
    frames = {i for t in tasks if t in CTC_TASKS for p in cuts for i, _ in labelled[t][p]}
    sample = set()
    if target_analysis:
        train = CutSet.from_cuts([c for p in folds[0].train for c in cuts[p]])
        sample = {c.id for c in sample_cuts(train, TARGET_SAMPLE["per_speaker"], TARGET_SAMPLE["seed"])}
    means = {i for t in tasks if t not in CTC_TASKS and t != "ft" for p in cuts for i, _ in labelled[t][p]}
    return [i for i in order if i in frames], [i for i in order if i in sample], [i for i in order if i in means]


def _analysed(encoders: dict, steps: dict[str, int] | None) -> set[str]:
    """The models target analysis reads: speechrq checkpoints (not the baselines), the newest of each run and any without a step."""
    newest: dict[str, tuple[int, str]] = {}
    for name, step in (steps or {}).items():
        run = name.rsplit("@", 1)[0]
        newest[run] = max(newest.get(run, (step, name)), (step, name))
    keep = {n for _, n in newest.values()}
    return {n for n, e in encoders.items() if n not in (RANDOM_BASELINE, FBANK_BASELINE) and getattr(e, "checkpoint", None) is not None
            and (n in keep or (steps or {}).get(n) is None)}


def _size(n: float) -> str:
    """Bytes in decimal GB, or MB below a GB (``0.00 GB`` tells nothing)."""
    return f"{n / 1e9:.2f} GB" if n >= 1e9 or n == 0 else f"{n / 1e6:.1f} MB"


def _plan_states(encoders: dict, frame_ids: dict[str, list[str]], mean_ids: list[str], by_id: dict, cache_root: Path,
                 cache_max_gb: float | None, tasks: list[str], probe_frames: list[str], ctx) -> dict:
    """Each encoder's :class:`~speechrq.encoders.cache.CachePlan` within the budget (``frame_ids``: the frames each encoder's
    readers need), the plan said in a few lines (rank 0)."""
    import shutil

    if cache_max_gb is not None and not cache_max_gb >= 0:
        raise SpeechrqError(f"--cache-max-gb: a size in GB >= 0, got {cache_max_gb:g}")
    items = {name: [(i, by_id[i].duration) for i in frame_ids[name]] for name in encoders}
    needs = {name: plan_cache(state_shape(enc), items[name], mean_ids, None).bytes_needed for name, enc in encoders.items()}
    total = sum(needs.values())
    if cache_max_gb is None:
        where = next(p for p in [cache_root, *cache_root.parents] if p.exists())
        free = shutil.disk_usage(where).free
        budget, said = DISK_SHARE * free, (f"{DISK_SHARE * free / 1e9:.1f} GB, {DISK_SHARE:.0%} of the {free / 1e9:.1f} GB free "
                                           f"on {where} (set it with --cache-max-gb)")
    else:
        budget, said = cache_max_gb * 1e9, f"{_size(cache_max_gb * 1e9)} (--cache-max-gb)"
    # every encoder caches the same share of what it needs
    plans = {name: plan_cache(state_shape(enc), items[name], mean_ids, None if total <= budget else budget * needs[name] / total)
             for name, enc in encoders.items()}
    most = max((len(v) for v in frame_ids.values()), default=0)
    if ctx.is_main and (most or mean_ids):
        frame_readers = [t for t in tasks if t in CTC_TASKS] + (["target analysis"] if any(len(v) > len(probe_frames) for v in frame_ids.values()) else [])
        mean_readers = [t for t in tasks if t not in CTC_TASKS and t != "ft"]
        reads = "; ".join([f"frames of {'up to ' if len({len(v) for v in frame_ids.values()}) > 1 else ''}{most} utterances "
                           f"({', '.join(frame_readers)})"] * bool(most) + [f"means of {len(mean_ids)} ({', '.join(mean_readers)})"] * bool(mean_ids))
        print(f"hidden states: {len(encoders)} encoder(s), reading {reads}: {_size(total)} in all; budget {said}")
        if total <= budget:
            print(f"hidden states: caching all of it in {cache_root}")
        else:
            for name, plan in plans.items():
                print(f"hidden states: {name}: caching {_size(plan.bytes_cached)} of {_size(plan.bytes_needed)} "
                      f"(frames of {len(plan.frames)} of {len(frame_ids[name])}, means of {len(plan.means)} of {len(mean_ids)}); "
                      f"{len(plan.recomputed)} utterances are recomputed whenever a probe reads them (every epoch)")
    return plans


def evaluate(encoders: dict[str, FrozenEncoder], corpus: str | Path, tasks: list[str], out: str | Path, lrs: list[float],
             epochs: int, cache_root: str | Path | None = None, progress: bool = True, steps: dict[str, int] | None = None,
             target_analysis: bool = True, tsne: bool = True, preset: str = "cpu", parents: dict[str, str] | None = None, seeds: int = 1,
             folds: list[Fold] | None = None, finetune: FinetuneConfig = FinetuneConfig(), probe_jobs: int | None = None,
             cache_max_gb: float | None = None, ctx=None, groups: dict[str, list[str]] | None = None,
             baselines: dict | None = None, reuse: list[str | Path] = ()) -> dict | None:
    """Probe every encoder on ``tasks`` and write the outputs listed in the module docstring.

    ``groups`` (row name -> names of encoders in ``encoders``): encoders probed one by one whose results make one
    row, pooled by :func:`~speechrq.evaluate.probes.over_inits` (the random-init baseline's weight draws,
    :mod:`speechrq.evaluate.baselines`); they get no row of their own. ``baselines``: the rule the baselines were
    made by, written to ``results.json`` and said under the table. ``reuse``: other evaluations' output folders whose
    finished probes (same encoder, settings and corpus content, seed by seed) are copied in rather than trained again.

    ``folds`` say which corpus parts each probe trains, selects and scores on
    (:mod:`speechrq.evaluate.splits`; default: ``train``/``dev``/``test``); with several,
    each task's score is the mean over folds, each fold's kept in ``fold_tests``;
    ``finetune`` sets the ``ft`` task (:mod:`speechrq.evaluate.finetune`);
    ``probe_jobs`` probes train side by side in as many processes (:mod:`speechrq.evaluate.jobs`;
    default: one per core on a CPU, at most 8, one on a GPU), fewer where their states would not fit in memory.

    ``steps`` (model name -> cumulative step) places models on the curves, and
    ``parents`` (model name -> the model it was branched from) joins a branched
    stage's line to its parent's point;
    ``target_analysis`` adds Figures 5 and 6 for the newest checkpoint of each run (``tsne=False``: their numbers
    without the t-SNE figures).

    Hidden states (:mod:`speechrq.encoders.cache`): what the probes read is estimated from the manifest first and
    cached within ``cache_max_gb`` (decimal GB, all encoders together; default: :data:`DISK_SHARE` of the free space
    where they are kept), utterance means before frames; what does not fit is recomputed whenever a probe reads it,
    the same bits, so the results do not depend on the budget. The plan is printed before any audio is read.

    ``ctx`` (:class:`speechrq.distributed.Context`): under torchrun the ranks share the hidden-state pass
    and the probes (every seed of one probe on one rank); rank 0 writes the outputs and returns the results
    (None on the other ranks).
    """
    from .. import distributed

    ctx = ctx or distributed.Context()
    from lhotse import CutSet

    from ..data.batching import refuse_short_cuts
    from ..data.corpus import cut_files, load_cuts
    from ..identity import corpus_fingerprint

    for t in tasks:
        if t not in TASKS:
            raise SpeechrqError(f"--tasks: {t!r} is not one of {', '.join(TASKS)}")
    out = Path(out)
    if (held := [n for n in ("identity.json", "units.json", "encode.json") if (out / n).exists()]):
        raise SpeechrqError(f"{out}: holds another command's output ({', '.join(held)}), not an evaluation; use another --out")
    folds = folds or [DEFAULT_FOLD]
    have = cut_files(corpus)
    if missing := sorted({p for f in folds for p in f.parts} - set(have)):
        raise SpeechrqError(f"{corpus}: has no part {', '.join(map(repr, missing))} (it has {', '.join(have)}); "
                            "say which parts to use with --splits train=...,dev=...,test=... or --folds PART,PART,...")
    # hidden states and probes are keyed by the content of the parts read, not the corpus's path: a corpus made
    # again in the same folder (another seed, other labels) never reads the old one's states or probes
    corpus_fp = corpus_fingerprint(corpus, sorted({p for f in folds for p in f.parts}))
    # states are keyed by the pass's batching too: each utterance is computed in one fixed batch (encoders.cache)
    cache_root = (Path(cache_root) if cache_root else out / "hidden_states") / corpus_fp / f"batch{STATES_BATCH_SECONDS:g}s"
    cuts = {part: load_cuts(corpus, part) for part in sorted({p for f in folds for p in f.parts})}
    for name, enc in encoders.items():  # every encoder reads every cut: a short one is refused, named, before any work
        refuse_short_cuts((c for p in cuts for c in cuts[p]), enc.min_samples, f"encoder {name}")
    labelled = {t: {p: [(c.id, lab) for c in cuts[p] if (lab := label_of(t, c)) is not None] for p in cuts} for t in tasks}
    if "sex" in tasks and len(held := {lab for items in labelled["sex"].values() for _, lab in items}) < 2:
        raise SpeechrqError(f"{corpus}: task sex needs speakers of both sexes (supervision.gender; `data import librispeech` "
                            f"sets it from SPEAKERS.TXT); this corpus holds {', '.join(map(str, sorted(held))) or 'none'}")
    if "asr" in tasks and (emptied := [c.id for p in cuts for c in cuts[p] if c.supervisions and c.supervisions[0].text
                                       and label_of("asr", c) is None]):
        from ..checks import name_list

        print(f"asr: {len(emptied)} utterance(s) have a transcript that normalises to nothing (speechrq.text.normalize_text) "
              f"and are left out of the ASR probe: {name_list(emptied, shown=5)}")
    data = {t: {f.name: f.assign(labelled[t]) for f in folds} for t in tasks}
    for t in tasks:
        for f in folds:
            if missing := [role for role, items in data[t][f.name].items() if not items]:
                where = f"fold {f.name} " if f.name else ""
                raise SpeechrqError(f"{corpus}: {where}task {t} has no labelled utterance in {', '.join(missing)} "
                                    f"(train={'+'.join(f.train)}, dev={'+'.join(f.dev) or f'{f.dev_share:g} of train'}, "
                                    f"test={'+'.join(f.test)})")
    by_id = {c.id: c for p in cuts for c in cuts[p]}
    language_of = {c.id: c.supervisions[0].language for c in by_id.values() if c.supervisions}
    if "lid" in tasks and len(held := set(language_of.values()) - {None}) < 2:
        raise SpeechrqError(f"{corpus}: task lid needs utterances of two languages or more (supervision.language); "
                            f"this corpus holds {', '.join(map(str, held)) or 'none'}")
    # a corpus of several languages is scored per language (ML-SUPERB), ASR as CER
    multilingual = len(set(language_of.values()) - {None}) > 1

    def cuts_of(roles: dict[str, list]) -> dict[str, list]:
        return {role: [by_id[i] for i, _ in items] for role, items in roles.items()}

    results: dict = {"corpus": str(corpus), "corpus_fingerprint": corpus_fp, "hidden_states": str(cache_root), "tasks": tasks, "lrs": lrs, "epochs": epochs, "probe_preset": preset, "probe_seeds": seeds,
                     "folds": [asdict(f) for f in folds], "models": {}} | ({"finetune": asdict(finetune)} if "ft" in tasks else {})
    if baselines:
        results["baselines"] = baselines
    groups = groups or {}
    if (stray := [m for members in groups.values() for m in members if m not in encoders]):
        raise SpeechrqError(f"evaluate: grouped encoder(s) {', '.join(stray)} not among the encoders")
    group_of = {m: row for row, members in groups.items() for m in members}
    device = ctx.device if ctx.distributed else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # what the probes read (CTC probes: frames; the others: utterance means; target analysis: frames of a sample),
    # estimated and planned against the budget before any audio is read
    frame_ids, sample_ids, mean_ids = _read_by_probes(tasks, labelled, cuts, folds, target_analysis)
    analysed = _analysed(encoders, steps) if target_analysis else set()
    # every probe: its seeds saved here or in a --reuse-probes folder, and the seeds still to train
    reuse = tuple(dict.fromkeys(Path(r).resolve() for r in reuse if Path(r).resolve() != out.resolve()))
    records, copies = {}, 0
    for name, enc in encoders.items():
        for t in tasks:
            if t == "ft" and not isinstance(enc, FrozenEncoder):
                continue  # the filterbank and Hugging Face baselines: nothing of ours to fine-tune
            for f in folds:
                paths, settings, found, copied = _probe_record(t, enc.fingerprint, data[t][f.name], lrs, epochs, preset, out, corpus,
                                                               seeds, f, finetune if t == "ft" else None, corpus_fp, reuse)
                records[name, t, f.name] = (paths, settings, found)
                copies += copied
    if reuse and ctx.is_main:
        print(f"probes: {copies} finished probe seed(s) with these encoders and settings copied from "
              f"{', '.join(map(str, reuse))}" + (": read, not trained" if copies else ""))
    todo = [key for key, (_, _, found) in records.items() if len(found) < seeds]
    # hidden states only for the encoders a probe still reads (fine-tuning reads audio) or target analysis reads
    needed = {name: enc for name, enc in encoders.items() if name in analysed or any(k[0] == name and k[1] != "ft" for k in todo)}
    reads = {name: [i for i in dict.fromkeys(frame_ids + (sample_ids if name in analysed else []))] for name in needed}
    plans = _plan_states(needed, reads, mean_ids, by_id, cache_root, cache_max_gb, tasks, frame_ids, ctx) if needed else {}
    computed = dict.fromkeys(encoders, 0)
    for name, enc in needed.items():  # every encoder's states first: the probes read only the cache (or recompute)
        enc.to(device)
        cache = HiddenStateCache(cache_root, enc.fingerprint)
        computed[name] = sum(cache_hidden_states(enc, cuts[p], cache, progress=progress, plan=plans[name], ctx=ctx) for p in cuts)
        enc.to("cpu")
    computed = {name: sum(n) for name, n in zip(encoders, zip(*distributed.gather_objects(list(computed.values()), ctx)))}
    # under torchrun the probes to train are dealt out to the ranks, every seed of one probe to one rank
    mine = set(todo[ctx.rank::ctx.world_size])
    held = {name: store_bytes(cache_root, enc.fingerprint, frame_ids, mean_ids) for name, enc in needed.items()}
    free = available_memory()
    in_memory = {name: free is None or b <= MEMORY_SHARE * free for name, b in held.items()}
    jobs = []
    for key in (k for k in todo if k in mine and k[1] != "ft"):
        name, t, fold_name = key
        enc = encoders[name]
        langs = {i: language_of[i] for i, _ in data[t][fold_name]["test"]} if multilingual else None
        jobs += [ProbeJob(key, t, str(cache_root), enc.fingerprint, tuple(frame_ids), data[t][fold_name], tuple(lrs), epochs, preset,
                          seed, langs, tuple(mean_ids), in_memory[name]) for seed in range(seeds) if seed not in records[key][2]]

    def save(key: tuple, seed: int, result: ProbeResult) -> None:  # each probe seed is saved as it finishes
        paths, settings, found = records[key]
        found[seed] = result
        atomic_write_json(paths[seed], {"settings": settings | {"seed": seed}, "result": asdict(result)})

    if jobs:
        # by default the cores are shared by the ranks on this node (torchrun's LOCAL_WORLD_SIZE)
        workers = probe_jobs if probe_jobs is not None else max(1, default_jobs() // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        largest = max(held[name] for name in needed if in_memory[name]) if any(in_memory.values()) else 0
        if (fitted := fit_jobs(workers, largest)) < workers:
            print(f"probes: {fitted} processes, not {workers}: each holds up to {largest / 2**30:.1f} GiB of hidden states "
                  "and more would not fit in half the available memory")
        for name, enc in needed.items():  # states the cache does not hold are recomputed, by this process's encoder
            if not plans[name].complete and any(j.fingerprint == enc.fingerprint for j in jobs):
                PROVIDED[enc.fingerprint] = StateStore(HiddenStateCache(cache_root, enc.fingerprint), frame_ids, mean_ids,
                                                       recompute=Recomputer(enc.to(device), [list(cuts[p]) for p in cuts]),
                                                       in_memory=in_memory[name])
        try:
            run_jobs(jobs, fitted, progress, on_done=lambda job, result: save(job.key, job.seed, result))
        finally:
            for enc in encoders.values():
                PROVIDED.pop(enc.fingerprint, None)
                enc.to("cpu")
    for key in (k for k in todo if k in mine and k[1] == "ft"):
        name, t, fold_name = key
        enc = encoders[name].to(device)
        missing = [seed for seed in range(seeds) if seed not in records[key][2]]
        for seed, result in zip(missing, finetune_encoder(enc, cuts_of(data[t][fold_name]), finetune, seeds=missing, progress=progress)):
            save(key, seed, result)
        enc.to("cpu")
    distributed.barrier(ctx)  # every rank's probes are saved
    if not ctx.is_main:
        return None
    for key in todo:
        if key not in mine:  # trained by another rank: read back from the files it saved
            name, t, fold_name = key
            f = next(f for f in folds if f.name == fold_name)
            records[key] = _probe_record(t, encoders[name].fingerprint, data[t][fold_name], lrs, epochs, preset, out, corpus, seeds, f,
                                         finetune if t == "ft" else None, corpus_fp)[:3]
    pooled_by: dict[str, dict[str, dict]] = {}
    for name, enc in encoders.items():
        probed = {}
        for t in tasks:
            if (name, t, folds[0].name) not in records:
                continue
            r = probed[t] = over_folds({f.name: over_seeds([records[name, t, f.name][2][k] for k in range(seeds)]) for f in folds})
            if progress:
                spread = f" ± {r.test_std:.2f} over {len(r.seed_tests)} probe seeds" if r.seed_tests else ""
                fold_note = f", mean of {len(r.fold_tests)} folds" if r.fold_tests else ""
                print(f"{name}: {t} {r.metric} {r.test:.2f}{spread}{fold_note} (dev {r.dev:.2f}, lr {r.lr:g}, "
                      f"{'step' if t == 'ft' else 'epoch'} {r.epoch})")
        if name in group_of:  # one draw of a pooled row: the row is written when its last member is probed
            row, members = group_of[name], groups[group_of[name]]
            pooled_by.setdefault(row, {})[name] = probed
            if len(pooled_by[row]) == len(members):
                results["models"][row] = _pooled_row(row, [(encoders[m].fingerprint, computed[m], pooled_by[row][m]) for m in members],
                                                     progress)
            continue
        results["models"][name] = {"fingerprint": enc.fingerprint, "step": (steps or {}).get(name),
                                   "branched_from": (parents or {}).get(name), "utterances_encoded": computed[name],
                                   "tasks": {t: asdict(r) for t, r in probed.items()}, "avg": superb_average(probed)}
        if enc.fingerprint.endswith(COMPILED):  # evaluate --compile: states of the compiled blocks
            results["models"][name]["compiled"] = True
    if target_analysis:
        from .target_quality import target_quality

        # the newest evaluated checkpoint of each run (curves evaluate many), and any model without a step
        analysed = {n: e for n, e in encoders.items() if n in analysed}
        if analysed:
            train = CutSet.from_cuts([c for p in folds[0].train for c in cuts[p]])
            # target analysis runs its encoders on the CPU (it feeds them CPU audio): so does the recomputation it needs
            stores = {n: StateStore(HiddenStateCache(cache_root, e.fingerprint), [], recompute=Recomputer(e.to("cpu"), [list(cuts[p]) for p in cuts]),
                                    in_memory=False) for n, e in analysed.items() if not plans[n].complete}
            results["target_quality"] = target_quality(analysed, train, cache_root, out, per_speaker=TARGET_SAMPLE["per_speaker"],
                                                       seed=TARGET_SAMPLE["seed"], stores=stores, figures=tsne)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", format_table(results))
    plot_layer_weights(results, out / "layer_weights.png")
    if any(len(v) > 1 for v in _runs(results).values()):
        plot_curves(results, out / "curves.png")
    return results


def _pooled_row(row: str, members: list[tuple[str, int, dict[str, ProbeResult]]], progress: bool) -> dict:
    """One results row from several weight draws (``(fingerprint, utterances encoded, {task: result})`` each):
    each task pooled over the draws (:func:`~speechrq.evaluate.probes.over_inits`), each draw's score in ``init_tests``."""
    from ..identity import digest

    tasks, pooled = {}, {}
    for t in members[0][2]:
        pooled[t], each = over_inits([probed[t] for _, _, probed in members])
        tasks[t] = asdict(pooled[t]) | {"init_tests": each}
        if progress:
            r = pooled[t]
            print(f"{row}: {t} {r.metric} {r.test:.2f} ± {r.test_std:.2f} over {len(members)} init seeds × "
                  f"{max(1, len(r.seed_tests) // len(members))} probe seeds")
    return {"fingerprint": f"{row}-{digest([fp for fp, _, _ in members])}", "fingerprints": [fp for fp, _, _ in members],
            "step": None, "branched_from": None, "utterances_encoded": sum(n for _, n, _ in members), "tasks": tasks,
            "avg": superb_average(pooled)}


def _runs(results: dict) -> dict[str, list[tuple[int, str]]]:
    """Models with a step, grouped by run: ``{"stage0": [(100, "stage0@100"), ...]}``."""
    runs: dict[str, list] = {}
    for name, m in results["models"].items():
        if m.get("step") is not None:
            runs.setdefault(name.rsplit("@", 1)[0], []).append((m["step"], name))
    return {r: sorted(v) for r, v in runs.items()}


def format_table(results: dict) -> str:
    tasks = results["tasks"]
    ft = results.get("finetune") or {}
    head = {"asr": f"ASR {_metric(results, 'asr', 'WER')} ↓", "sid": "SID acc ↑", "ic": "IC acc ↑", "er": "ER acc ↑", "pr": "PR PER ↓",
            "lid": "LID acc ↑", "sex": "Sex acc ↑", "ft": f"FT {ft.get('minutes', 0):g} min, {ft.get('steps', 0)} steps {_metric(results, 'ft', 'PER')} ↓"}
    lines = ["| model | " + " | ".join(head[t] for t in tasks) + " | Avg ↑ |", "|---" * (len(tasks) + 2) + "|"]
    for name, m in results["models"].items():
        cells = ["-" if t not in m["tasks"] else
                 f"{m['tasks'][t]['test']:.2f}" + (f" ± {m['tasks'][t]['test_std']:.2f}" if m["tasks"][t].get("seed_tests") else "")
                 for t in tasks]
        avg = "-" if m["avg"] is None else f"{m['avg']:.2f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {avg} |")
    folds = results.get("folds") or []
    if len(folds) > 1:
        lines += ["", f"Means over {len(folds)} leave-one-out folds (test on {', '.join(f['name'] for f in folds)} in turn); "
                  "each fold's score is in results.json (fold_tests)."]
    elif folds and list(folds[0]["train"]) != ["train"]:
        f = folds[0]
        dev = "+".join(f["dev"]) or f"{f['dev_share']:g} of train"
        lines += ["", f"Splits: train {'+'.join(f['train'])}, dev {dev}, test {'+'.join(f['test'])}."]
    by_language = [(name, t, m["tasks"][t]["by_language"]) for name, m in results["models"].items() for t in tasks
                   if m["tasks"].get(t, {}).get("by_language")]
    if by_language:
        langs = sorted({lang for _, _, b in by_language for lang in b})
        lines += ["", "Per language (test):", "", "| model | task | " + " | ".join(langs) + " |", "|---" * (len(langs) + 2) + "|"]
        for name, t, b in by_language:
            lines.append(f"| {name} | {head[t]} | " + " | ".join(f"{b[lang]:.2f}" if lang in b else "-" for lang in langs) + " |")
    if compiled := [name for name, m in results["models"].items() if m.get("compiled")]:
        lines += ["", f"Hidden states of {', '.join(compiled)} from torch.compile'd encoder blocks (--compile)."]
    if results.get("baselines"):
        from .baselines import describe_baselines

        lines += describe_baselines(results["baselines"], results.get("probe_seeds", 1))
    elif {FBANK_BASELINE, RANDOM_BASELINE} & set(results["models"]):
        lines += ["", f"Baselines made before issue 35: {FBANK_BASELINE} was normalised with the first listed encoder's "
                  f"statistics and {RANDOM_BASELINE} is one initialisation copying that encoder's configuration, so both "
                  "depend on which encoders were listed first, and the random-init spread holds probe seeds only."]
    if results.get("target_quality"):
        lines += ["", "Target separability (random projections; 5-NN accuracy %, silhouette):", "",
                  "| targets | phones 5-NN ↑ | phones silhouette ↑ | speakers 5-NN ↑ | speakers silhouette ↑ |", "|---|---|---|---|---|"]
        for name, q in results["target_quality"].items():
            ph, sp = (f"{v['knn_accuracy']:.1f} | {v['silhouette']:.3f}" if v else "- | -" for v in (q["phones"], q["speakers"]))
            lines.append(f"| {name} | {ph} | {sp} |")
    return "\n".join(lines) + "\n"


def _metric(results: dict, task: str, default: str) -> str:
    """What ``task`` scored on this corpus: PER or CER for ``ft``, WER or CER (several languages) for ``asr``."""
    metrics = {m["tasks"][task]["metric"] for m in results["models"].values() if task in m["tasks"]}
    return "/".join(sorted(metrics)).upper() or default


def _score(m: dict, task: str) -> float | None:
    if task == "avg":
        return m["avg"]
    return m["tasks"][task]["test"] if task in m["tasks"] else None


def plot_curves(results: dict, path: Path) -> None:
    """Figure 3: each task (and Avg when all four ran) against the cumulative step, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(results["tasks"]) + (["avg"] if all(t in results["tasks"] for t in SUPERB_TASKS) else [])
    label = {"asr": f"ASR {_metric(results, 'asr', 'WER')} (%) ↓", "sid": "SID acc (%)", "ic": "IC acc (%)", "er": "ER acc (%)", "pr": "PR PER (%) ↓", "lid": "LID acc (%)", "sex": "Sex acc (%)",
             "ft": f"FT {_metric(results, 'ft', 'PER')} (%) ↓", "avg": "Avg"}
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.2), squeeze=False)
    for ax, task in zip(axes[0], panels):
        for run, points in _runs(results).items():
            parent = results["models"][points[0][1]].get("branched_from")
            if parent in results["models"]:  # a branched stage starts at its parent's point (Fig. 2 layout)
                points = [(results["models"][parent]["step"], parent), *points]
            xs = [s for s, _ in points]
            ys = [_score(results["models"][n], task) for _, n in points]
            ax.plot(xs, [float("nan") if y is None else y for y in ys], marker="o", label=run)
        for name, style in ((RANDOM_BASELINE, "--"), (FBANK_BASELINE, ":")):
            if name in results["models"] and _score(results["models"][name], task) is not None:
                ax.axhline(_score(results["models"][name], task), color="grey", linestyle=style, label=name)
        ax.set_title(label[task], fontsize=10)
        ax.set_xlabel("pre-training step")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("probe scores along pre-training")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def plot_layer_weights(results: dict, path: Path) -> None:
    """Figure 4: one heatmap per model, rows = tasks, columns = layers (-1 = front end)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = results["models"]
    tasks = [t for t in results["tasks"] if t != "ft"]  # fine-tuning has no weighted sum
    if not tasks:
        return
    fig, axes = plt.subplots(1, len(models), figsize=(3 + 2.5 * len(models), 0.6 * len(tasks) + 1.6), squeeze=False)
    for ax, (name, m) in zip(axes[0], models.items()):
        w = np.array([m["tasks"][t]["layer_weights"] for t in tasks if t in m["tasks"]])
        im = ax.imshow(w, aspect="auto", cmap="viridis", vmin=0)
        ax.set_title(name, fontsize=9)
        ax.set_yticks(range(len(tasks)), [t.upper() for t in tasks if t in m["tasks"]])
        ax.set_xticks(range(w.shape[1]), [str(i - 1) for i in range(w.shape[1])], fontsize=7)
        ax.set_xlabel("layer (-1 = front end)")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("weighted-sum layer weights per task")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
