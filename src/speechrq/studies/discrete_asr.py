"""``speechrq asr compare``: the RPQ paper's Table II on one corpus, in one command.

For one encoder layer: the continuous features, k-means units, PQ units for each M of a
list, and RPQ units for each M (with ``alpha``) are each fit on a seeded sample, encoded, and
used to train the same ASR model for the same steps, once per replicate seed; every model is
then decoded on the dev and test splits. A replicate seed ``s`` redraws every random part of
its system: the quantizer's frame sample, k-means initialisations and RPQ's random subsets
(quantizer seed ``seed + s``, :func:`quantizer_seed`), the ASR model's initialisation, data
order and dropout (``train.seed = s``); every row of seed ``s`` built from one quantizer
(raw, de-duplicated and BPE k-means, and the continuous row beside them) shares that draw. The k-means units enter as raw aligned frames
and, with ``kmeans_inputs``, de-duplicated and de-duplicated with unit BPE: the paper's
k-means baseline (its Table VI's first row equals Table II's k-means row; ESPnet's asr2
recipes do the same), built from the same quantizer and units as the raw row. PQ and RPQ
enter as raw aligned frames, as in the paper.

The table gives CER and WER (mean ± standard deviation over training seeds), the training time
per epoch (Figure 6: seconds of the trainer's own steps times the steps an epoch takes, counted from the sampler) and the
input's bits per second (``M log2 k`` per frame at the source's frame shift: 25 frames/s at 40 ms, 50 at a Hugging Face
model's 20 ms; a de-duplicated or BPE row is counted per frame too; 32 bits per dimension for the continuous
features). Each PQ, RPQ and continuous row's CER is compared with each k-means row by a t-interval
over replicate seeds and test utterances, verdicts after Holm's rule over the table
(:mod:`speechrq.studies.significance`). Every stage is
reused when finished (units, runs, decodes), so an interrupted comparison resumes; more seeds or
rows can be added to a finished comparison.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from ..errors import SpeechrqError
from ..io import atomic_write_json, atomic_write_text
from .asr_runs import _errors, _slug, family, run_dir

KMEANS_INPUTS = ("units", "dedup", "bpe")


def kmeans_name(k: int, kind: str, unit_bpe: int) -> str:
    return {"units": f"k-means (k={k})", "dedup": f"k-means (k={k}), de-duplicated",
            "bpe": f"k-means (k={k}), de-dup + unit BPE {unit_bpe} (the paper's baseline)"}[kind]


def systems(k: int, pq_ms: list[int], rpq_ms: list, alpha: float, continuous: bool = True,
            kmeans_inputs: tuple[str, ...] = ("units",), unit_bpe: int = 1000, rvq_ms: list[int] = ()) -> list[dict]:
    """The rows of the table: name, input kind, and the quantizer spec (the continuous row's names the k-means
    fit whose sample it shares); a de-dup + BPE row also carries its unit BPE size.

    ``rpq_ms`` holds stream counts ``M`` (with ``alpha``) or ``(M, α)`` pairs (Table IV's α sweep at one M);
    ``rvq_ms`` the RVQ level counts ``V`` of Table III."""
    if bad := [i for i in kmeans_inputs if i not in KMEANS_INPUTS]:
        raise SpeechrqError(f"--kmeans-inputs: {', '.join(map(repr, bad))} not among {', '.join(KMEANS_INPUTS)}")
    km = {"kind": "kmeans", "k": k, "num_subspaces": 1}
    rows = [{"name": "continuous", "input": "continuous", "quantizer": km}] if continuous else []
    rows += [{"name": kmeans_name(k, i, unit_bpe), "input": i, "quantizer": km} | ({"unit_bpe": unit_bpe} if i == "bpe" else {})
             for i in dict.fromkeys(kmeans_inputs)]
    pq_ms, rvq_ms = list(dict.fromkeys(pq_ms)), list(dict.fromkeys(rvq_ms))
    rows += [{"name": f"PQ (M={m})", "input": "units", "quantizer": {"kind": "pq", "k": k, "num_subspaces": m}} for m in pq_ms]
    rpq = [(m, alpha) if isinstance(m, int) else tuple(m) for m in rpq_ms]
    rows += [{"name": f"RPQ (M={m}, α={a:g})", "input": "units",
              "quantizer": {"kind": "rpq", "k": k, "num_subspaces": m, "alpha": a}} for m, a in dict.fromkeys(rpq)]
    rows += [{"name": f"RVQ (V={v})", "input": "units", "quantizer": {"kind": "rvq", "k": k, "num_subspaces": v}} for v in rvq_ms]
    return rows


def quantizer_seed(seed: int, replicate: int) -> int:
    """The seed of replicate ``replicate``'s quantizer draw (sample, initialisation, random subsets): ``seed + replicate``."""
    return seed + replicate


def units_dir(out: Path, quantizer: dict, replicate: int) -> Path:
    """``OUT/units/<quantizer>/seed<S>``: replicate ``S``'s own quantizer fit and the corpus encoded with it."""
    return out / "units" / _slug(quantizer) / f"seed{replicate}"


def compare(encoder: str | Path, layer: int, corpus: str | Path, out: str | Path, config: str | Path, k: int, pq_ms: list[int],
            rpq_ms: list[int], alpha: float = 0.125, frames: int = 60000, seed: int = 0, overrides: list[str] = (),
            test_split: str = "test", beam: int = 10, ctc_weight: float = 0.3, mode: str = "joint", progress: bool = True,
            continuous: bool = True, jobs: int = 1, seeds: list[int] = (0,), kmeans_inputs: tuple[str, ...] = ("units",),
            unit_bpe: int = 1000, rvq_ms: list[int] = (), frame_ms: int | None = None) -> dict:
    """Run every system (see the module docstring) for every training seed of ``seeds`` into ``out``; returns and
    writes ``compare.json`` / ``compare.md``.

    ``seeds`` are the replicate seeds: replicate ``s`` fits its own quantizers with seed ``seed + s`` and trains its
    ASR models with ``train.seed = s`` (:func:`quantizer_seed`). ``jobs`` trainings run side by side, one process each with its share of the
    threads (:mod:`speechrq.parallel`; for a CPU: on a GPU keep 1). A run trained beside others has no time
    reported (:func:`timed_alone`): ``compare.json`` records ``jobs`` and says why in ``timings_removed``.
    """
    from ..asr.config import ASRConfig
    from ..config import config_to_dict, load_config
    from ..encoders import EncoderLayer
    from ..identity import claim, corpus_fingerprint
    from ..parallel import run_in_processes
    from ..units import QuantizerSpec
    from ..units.run import encode_units, fit_units

    out = Path(out)
    if jobs < 1:
        raise SpeechrqError(f"--jobs: must be >= 1, got {jobs}")
    seeds = list(dict.fromkeys(seeds))
    if not seeds:
        raise SpeechrqError("--seeds: give at least one training seed")
    if seed < 0 or (negative := [s for s in seeds if s < 0]):
        raise SpeechrqError(f"--seed {seed} / --seeds {','.join(map(str, seeds))}: seeds must be >= 0"
                            + (f" (got {', '.join(map(str, negative))})" if seed >= 0 else ""))
    if unit_bpe < 2:
        raise SpeechrqError(f"--unit-bpe: must be >= 2, got {unit_bpe}")
    rows = systems(k, pq_ms, rpq_ms, alpha, continuous, tuple(kmeans_inputs), unit_bpe, rvq_ms)
    # OUT holds one comparison: the same encoder weights and layer, corpus content, ASR config and sample; rows (systems)
    # and training seeds may be added, and runs are re-decoded when only the decoding settings changed
    base = config_to_dict(load_config(ASRConfig, config, [*overrides, "data.units=unused", "out_dir=unused"]))
    base["train"].pop("compile")  # how the runs compute, not what: compiled and eager runs answer the same comparison
    lay = EncoderLayer(encoder, layer, frame_ms)
    from ..data.batching import refuse_short_cuts
    from ..data.corpus import LazyCuts

    for split in dict.fromkeys(["train", "dev", test_split]):  # before OUT is claimed: a refusal leaves nothing behind
        refuse_short_cuts(LazyCuts(corpus, split), lay.min_samples, f"encoder layer {layer} at {lay.frame_ms} ms (split {split})")
    from ..text import transcripts_digest

    texts = [c.supervisions[0].text if c.supervisions else "" for split in dict.fromkeys(["train", "dev", test_split])
             for c in LazyCuts(corpus, split)]
    identity = {"code": "asr-compare/2", "encoder": lay.fingerprint, "layer": layer, "corpus": corpus_fingerprint(corpus),
                "config": base, "frames": frames, "seed": seed, "test_split": test_split, "k": k, "frame_ms": lay.frame_ms,
                "transcripts": transcripts_digest(texts)}
    # asr-compare/1 drew one quantizer for every training seed: its runs answer another question
    claim(out, identity, "an ASR comparison", hint="use another --out or delete it (a comparison made before each seed drew "
          "its own quantizer is not extended)")
    from ..asr.search import SEARCH_VERSION

    decoding = {"mode": mode, "beam": beam, "ctc_weight": ctc_weight, "search": SEARCH_VERSION, "splits": ["dev", test_split]}
    settings = {"test_split": test_split, "mode": mode, "beam": beam, "ctc_weight": ctc_weight}
    from ..schema import load
    from ..formats import compare_runs

    # the finished runs' numbers, checked (a hand-edited compare.json is one line naming the key, not a wrong table)
    results = load(out / "compare.json", compare_runs)["rows"] if (out / "compare.json").exists() else {}

    def done(row: dict, s: int) -> bool:
        r = results.get(row["name"], {})
        return (r.get("quantizer") == row["quantizer"] and r.get("unit_bpe") == row.get("unit_bpe")
                and r.get("seeds", {}).get(str(s), {}).get("decoding") == decoding)

    todo = [(row, s) for row in rows for s in seeds if not done(row, s)]
    if todo:  # the table and its evidence are written again at the end: until then none says it is finished
        for stale in (out / "compare.md", out / "compare_errors.json.gz"):
            stale.unlink(missing_ok=True)
    # the quantizers first, one after the other: each replicate seed's own fit, shared by the rows of that seed that read it
    for slug, s in dict.fromkeys((_slug(row["quantizer"]), s) for row, s in todo):
        q = next(row["quantizer"] for row, _ in todo if _slug(row["quantizer"]) == slug)
        bpe = next((row["unit_bpe"] for row, _ in todo if _slug(row["quantizer"]) == slug and row["input"] == "bpe"), None)
        spec = QuantizerSpec(kind=q["kind"], k=q["k"], num_subspaces=q["num_subspaces"], alpha=q.get("alpha", 0.125),
                             seed=quantizer_seed(seed, s))
        if progress:
            print(f"compare: units {slug}, seed {s} (quantizer seed {spec.seed})", flush=True)
        where = units_dir(out, q, s)
        fit_units(encoder, layer, corpus, where, spec, frames=frames, progress=progress, frame_ms=lay.frame_ms)
        encode_units(where, corpus, ["train", "dev", test_split], where / "corpus", bpe=bpe, progress=progress)  # reused when done
    workers = max(1, min(jobs, len(todo)))
    tasks = [{"out": str(out), "config": str(config), "overrides": list(overrides), "row": row, "seed": s, "test_split": test_split,
              "decoding": decoding, "quantizer_seed": quantizer_seed(seed, s), "jobs": workers, "progress": progress and workers == 1} for row, s in todo]

    def finished(task: dict, result: dict) -> None:  # each run saved as it finishes: an interrupted comparison resumes
        row = task["row"]
        r = results.setdefault(row["name"], {})
        if r.get("quantizer") != row["quantizer"] or r.get("unit_bpe") != row.get("unit_bpe") or "seeds" not in r:
            r.clear()  # another system under this name, or a row written before training seeds: nothing of it is kept
        r.update({k: v for k, v in row.items() if k != "name"})
        r.setdefault("seeds", {})[str(task["seed"])] = result
        for timing in ("s_per_step", "epoch_s"):  # summarized again: a row is timed only where every run was
            r.pop(timing, None)
        r |= summarize_seeds({k: timed_alone(run) for k, run in r["seeds"].items()})
        atomic_write_json(out / "compare.json", settings | {"rows": results})
        if progress and workers > 1:
            print(f"compare: {row['name']}, seed {task['seed']}: CER {result['cer']:.2f}", flush=True)

    if progress and workers > 1:
        print(f"compare: {len(tasks)} trainings in {workers} processes", flush=True)
    run_in_processes(_train_and_decode, tasks, workers, progress, desc="trainings", on_done=finished)
    report_rows = {}
    for row in rows:  # the rows asked for, with the seeds asked for (a row may hold more seeds from earlier calls)
        r = dict(results[row["name"]])
        # each epoch counted from the sampler: recorded with the run, or counted again for runs saved before it was
        # (which held an estimate from the hours)
        seeds_run = {str(s): timed_alone(r["seeds"][str(s)]) for s in seeds}
        r = {k: v for k, v in r.items() if k not in ("s_per_step", "epoch_s")}  # summarized again below, from the runs asked for
        r["seeds"] = {k: run | ({"epoch_s": run["s_per_step"] * (steps_per_epoch(out, row, int(k)) if run.get("steps_per_epoch") is None
                                                                 else run["steps_per_epoch"])} if "s_per_step" in run else {})
                      for k, run in seeds_run.items()}
        report_rows[row["name"]] = r | summarize_seeds(r["seeds"])
    report = settings | {"training_seeds": seeds, "seeds_drive": SEEDS_DRIVE, "rows": report_rows,
                         "differences": differences(out, rows, seeds, test_split)}
    if not all("epoch_s" in r for r in report_rows.values()):
        report["timings_removed"] = shared_cores_note(max(r["jobs"] for r in report_rows.values()))
    from .evidence import archive_path, row_errors, write_archive

    # the per-utterance errors behind every number and interval, beside the JSON (`speechrq.studies.evidence.recheck_compare`)
    write_archive(archive_path(out / "compare.json"), {row["name"]: {
        "comparison": out.name, "quantizer": row["quantizer"], "input": row["input"],
        "splits": row_errors(out, row, seeds, ["dev", test_split])} for row in rows}, seeds, test_split)
    atomic_write_json(out / "compare.json", report)
    atomic_write_text(out / "compare.md", format_compare(report))
    return report


SEEDS_DRIVE = ("replicate seed s: the quantizer's frame sample, k-means initialisations and RPQ subsets (quantizer seed "
               "= --seed + s), the ASR model's initialisation, data order and dropout (train.seed = s)")


def summarize_seeds(per_seed: dict) -> dict:
    """A row's numbers over its training seeds: CER and WER mean and standard deviation, the rest as means."""
    runs = list(per_seed.values())

    def spread(key: str) -> float:
        return statistics.stdev(r[key] for r in runs) if len(runs) > 1 else 0.0

    first = runs[0]
    return {"cer": statistics.fmean(r["cer"] for r in runs), "cer_std": spread("cer"), "wer": statistics.fmean(r["wer"] for r in runs),
            "wer_std": spread("wer"), "cer_dev": statistics.fmean(r["cer_dev"] for r in runs), "cer_dev_std": spread("cer_dev"),
            "bits_per_second": first["bits_per_second"],
            "steps": first["steps"], "utterances": first["utterances"], "jobs": max(r["jobs"] for r in runs),
            "decoding": first["decoding"], "final_loss": statistics.fmean(r["final_loss"] for r in runs if r["final_loss"] is not None)
            if any(r["final_loss"] is not None for r in runs) else None} | _by_language(runs) | (
                {key: statistics.fmean(r[key] for r in runs) for key in ("s_per_step", "epoch_s")}
                if all("s_per_step" in r and "epoch_s" in r for r in runs) else {})  # a row is timed only where every run was


def timed_alone(run: dict) -> dict:
    """A run's record without its times where it trained beside other trainings (``jobs`` > 1, e.g. one recorded by an
    earlier speechrq): a time per step taken on shared cores measures neither training, so none is reported."""
    return run if run.get("jobs", 1) == 1 else {k: v for k, v in run.items() if k not in ("s_per_step", "epoch_s")}


def shared_cores_note(jobs: int) -> str:
    """Why a table made with ``--jobs`` ``jobs`` > 1 reports no training time (its ``timings_removed``)."""
    return (f"Its runs trained {jobs} at a time (`--jobs {jobs}`) on shared cores, so no time per step or epoch is reported: a "
            "time taken beside another training measures neither. `asr compare --jobs 1`, with nothing else running, times "
            "them (one process per run folder).")


def _by_language(runs: list[dict]) -> dict:
    """On a corpus of several languages: each language's CER over the seeds (mean, sd) and their macro average
    (``cer_language_mean``, each language counted once: ML-SUPERB's averaged CER)."""
    if not all(r.get("cer_by_language") for r in runs):
        return {}
    langs = sorted(runs[0]["cer_by_language"])
    per = {lang: [r["cer_by_language"][lang] for r in runs] for lang in langs}
    macro = [statistics.fmean(r["cer_by_language"][lang] for lang in langs) for r in runs]
    return {"cer_by_language": {lang: {"cer": statistics.fmean(v), "cer_std": statistics.stdev(v) if len(v) > 1 else 0.0}
                                for lang, v in per.items()},
            "cer_language_mean": statistics.fmean(macro), "cer_language_mean_std": statistics.stdev(macro) if len(macro) > 1 else 0.0}


def differences(out: Path, rows: list[dict], seeds: list[int], test_split: str) -> list[dict]:
    """Every PQ, RPQ and continuous row against every k-means row: CER and WER difference (row − k-means; negative is
    better) with a 95% t-interval over replicate seeds and test utterances; the verdicts after Holm's rule over these
    CER comparisons (one family; per language, one family per language)."""
    baselines = [r for r in rows if r["quantizer"]["kind"] == "kmeans" and r["input"] != "continuous"]
    others = [r for r in rows if r not in baselines]
    errors = {r["name"]: _errors(out, r, seeds, test_split) for r in baselines + others}
    out_rows = []
    for base in baselines:
        for row in others:
            what = f"{out}: {row['name']} and {base['name']}"
            pair = shares_draw(base, row)
            d = {"row": row["name"], "baseline": base["name"]} | paired_difference(errors[base["name"]], errors[row["name"]], what,
                                                                                    test_split, pair)
            languages = errors[base["name"]][5]
            if len(set(languages) - {None}) > 1:  # each language's utterances on their own
                d["by_language"] = {lang: paired_difference(_subset(errors[base["name"]], lang), _subset(errors[row["name"]], lang),
                                                            what, test_split, pair) for lang in sorted(set(languages) - {None})}
            out_rows.append(d)
    return family(out_rows, "each row against each k-means row")


def _subset(errors: tuple, language: str) -> tuple:
    """:func:`_errors` of one language's utterances."""
    ce, cl, we, wl, ids, langs = errors
    keep = [k for k, g in enumerate(langs) if g == language]
    return ce[:, keep], cl[keep], we[:, keep], wl[keep], [ids[k] for k in keep], [language] * len(keep)


def paired_difference(a, b, what: str, test_split: str, paired: bool = False) -> dict:
    """``b − a`` in CER and WER (negative: ``b`` is better) from two rows' :func:`_errors` (paired over test utterances),
    with t-intervals over replicate seeds and utterances (:func:`~speechrq.studies.significance.difference_interval`;
    ``paired``: seed ``s`` of both rows shares its quantizer draw); the verdict is set by :func:`family` over the table.
    ``what`` names the pair in the error raised when they scored different utterances."""
    from .significance import difference_interval

    ac, al, aw, awl, aids = a[:5]
    bc, _, bw, _, bids = b[:5]
    if aids != bids:
        raise SpeechrqError(f"{what} scored different {test_split} utterances")
    return {"cer": difference_interval(ac, bc, al, paired), "wer": difference_interval(aw, bw, awl, paired)}


def shares_draw(a: dict, b: dict) -> bool:
    """Whether seed ``s`` of rows ``a`` and ``b`` read one quantizer fit (k-means raw, de-duplicated, BPE, continuous)."""
    return _slug(a["quantizer"]) == _slug(b["quantizer"])


def steps_per_epoch(out: Path, spec: dict, seed: int) -> int:
    """Optimizer steps in the first epoch of one run: the sampler's batches over the row's training units (no audio read)."""
    from dataclasses import replace

    from ..asr.config import ASRConfig
    from ..asr.data import ASRData
    from ..config import load_config
    from ..data.batching import make_sampler

    run = run_dir(out, spec, seed)
    cfg = load_config(ASRConfig, run / "config.yaml")
    data = ASRData.from_config(replace(cfg.data, units=str(units_dir(out, spec["quantizer"], seed) / "corpus")))  # where it is now
    cuts = data.cuts(cfg.data.train_split).to_eager()
    sampler = make_sampler(cuts, cfg.data.max_duration, shuffle=True, seed=seed, num_buckets=cfg.data.num_buckets)
    sampler.set_epoch(0)
    return sum(1 for _ in sampler) // max(cfg.optim.accum_steps, 1)


def training_numbers(metrics: list[dict]) -> dict:
    """A run's numbers from its ``metrics.jsonl``: ``final_loss``, the last record's window mean (the trajectory's: a
    resumed run's is the uninterrupted run's), and ``s_per_step``, wall clock (the measured step times, each window
    weighted by its steps)."""
    from ..training.engine import seconds_per_step

    return {"s_per_step": seconds_per_step(metrics) or 0.0, "final_loss": metrics[-1]["loss"] if metrics else None}


def _train_and_decode(task: dict) -> dict:
    """One training seed of one row: the ASR model trained on its units (resumed or reused when its config and inputs
    are the same), test decoded, each utterance's errors kept beside the run; returns the run's numbers."""
    from ..asr.config import ASRConfig
    from ..asr.decode import Recognizer, decode_split
    from ..asr.trainer import train_asr
    from ..checkpoint import latest_checkpoint
    from ..config import load_config
    from ..text import utterance_errors
    from ..training.engine import read_metrics
    from ..units import UnitQuantizer
    from ..units.run import recorded_frame_ms

    row, out, progress, dec = task["row"], Path(task["out"]), task["progress"], task["decoding"]
    units = units_dir(out, row["quantizer"], task["seed"])
    run = run_dir(out, row, task["seed"])
    if progress:
        print(f"compare: {row['name']}, training seed {task['seed']}", flush=True)
    cfg = load_config(ASRConfig, task["config"], [*task["overrides"], f"data.units={units / 'corpus'}", f"data.input={row['input']}",
                                                  f"out_dir={run}", f"train.seed={task['seed']}"])
    train_asr(cfg, resume=latest_checkpoint(run / "checkpoints") is not None, progress=progress)
    metrics = read_metrics(run)
    numbers = training_numbers(metrics)
    s_per_step = numbers["s_per_step"]
    recognizer = Recognizer(run)
    data = recognizer.data(units / "corpus")  # the units it trained on (checked: the same quantizer)
    scored = {}
    for split in dict.fromkeys(["dev", task["test_split"]]):  # dev for every choice a table makes, test for what it reports
        result = decode_split(recognizer, data.cuts(split), dec["mode"], dec["beam"], dec["ctc_weight"], progress=progress)
        char_errors, chars = utterance_errors(result["refs"], result["hyps"], "char")
        word_errors, words = utterance_errors(result["refs"], result["hyps"], "word")
        atomic_write_json(run / f"errors_{split}.json", {"ids": result["ids"], "char_errors": char_errors, "chars": chars,
                                                         "word_errors": word_errors, "words": words, "decoding": dec,
                                                         "languages": result["languages"]})
        scored[split] = result
    dev, result = scored["dev"], scored[task["test_split"]]
    quant = UnitQuantizer.load(units)
    epoch_steps = steps_per_epoch(out, row, task["seed"])
    bits = quant.dim * 32 if row["input"] == "continuous" else quant.bits_per_frame
    frames_per_s = 1000 / recorded_frame_ms(quant.source)  # 50 for 20 ms units, 25 for 40 ms
    return {"cer": result["cer"], "wer": result["wer"], "cer_dev": dev["cer"], "wer_dev": dev["wer"], "utterances": result["utterances"],
            "quantizer_seed": task["quantizer_seed"], "train_seed": task["seed"], "steps_per_epoch": epoch_steps,
            "bits_per_second": bits * frames_per_s, "steps": cfg.optim.max_steps, "final_loss": numbers["final_loss"], "run": str(run),
            "decoding": dec, "jobs": task["jobs"]} | (
                {"cer_by_language": result["cer_by_language"]} if "cer_by_language" in result else {}) | (
                {"s_per_step": s_per_step, "epoch_s": s_per_step * epoch_steps} if task["jobs"] == 1 else {})  # alone: timed


def format_compare(report: dict) -> str:
    seeds = report.get("training_seeds", [0])
    spread = len(seeds) > 1
    lines = [f"Discrete-unit ASR on `{report['test_split']}` ({report['mode']} decoding, beam {report['beam']}, "
             f"CTC weight {report['ctc_weight']}" + (f"; mean ± standard deviation over training seeds {', '.join(map(str, seeds))}"
                                                      if spread else f"; training seed {seeds[0]}") + "):",
             ""]
    # times taken out of a shipped JSON, or taken beside other trainings (an earlier speechrq's file), are not shown
    timed = all("epoch_s" in r and r.get("jobs", 1) == 1 for r in report["rows"].values())
    lines += (["| input | CER | WER | time per epoch (s) | input bits/s |", "|---|---|---|---|---|"] if timed
              else ["| input | CER | WER | input bits/s |", "|---|---|---|---|"])
    for name, r in report["rows"].items():
        cer = f"{r['cer']:.2f} ± {r['cer_std']:.2f}" if spread else f"{r['cer']:.2f}"
        wer = f"{r['wer']:.2f} ± {r['wer_std']:.2f}" if spread else f"{r['wer']:.2f}"
        lines.append(f"| {name} | {cer} | {wer} | " + (f"{r['epoch_s']:.1f} | " if timed else "") + f"{r['bits_per_second']:.0f} |")
    if report.get("seeds_drive"):
        lines += ["", f"Seeds: {report['seeds_drive']}."]
    if not timed and report.get("timings_removed"):
        lines += ["", f"Times per epoch: not shown. {report['timings_removed']}"]
    if (langs := sorted({lang for r in report["rows"].values() for lang in r.get("cer_by_language", {})})):
        lines += ["", "CER per language, and their mean (each language counted once, as ML-SUPERB averages):", "",
                  "| input | " + " | ".join(langs) + " | mean |", "|---" * (len(langs) + 2) + "|"]
        for name, r in report["rows"].items():
            by = r.get("cer_by_language", {})
            cells = [(f"{by[lang]['cer']:.2f} ± {by[lang]['cer_std']:.2f}" if spread else f"{by[lang]['cer']:.2f}") if lang in by else "-"
                     for lang in langs]
            mean = (f"{r['cer_language_mean']:.2f}" + (f" ± {r['cer_language_mean_std']:.2f}" if spread else "")) if by else "-"
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean} |")
    if report.get("differences"):
        from .significance import FAMILY_RULE, METHOD

        new = any("p" in d["cer"] for d in report["differences"]) or not spread
        how = (f"95% {METHOD}; verdicts by {FAMILY_RULE}" if new else "95% bootstrap over test utterances and training seeds, "
               "each interval judged on its own; made before issue 35, with one quantizer draw for every training seed")
        lines += ["", f"Each row against each k-means row (ΔCER = row − k-means, ↓ lower is better; {how}"
                  + ("" if spread else "; one training seed gives no interval and no verdict") + "):", "",
                  "| row | against | ΔCER | 95% interval | Holm p | ΔWER | verdict |", "|---|---|---|---|---|---|---|"]
        for d in report["differences"]:
            c, w = d["cer"], d["wer"]
            lines.append(f"| {d['row']} | {d['baseline']} | {c['difference']:+.2f} | {interval_text(c)} | {p_text(d.get('p_holm'))} | "
                         f"{w['difference']:+.2f} | {d['verdict']} |")
        if (by := [d for d in report["differences"] if d.get("by_language")]):
            langs = sorted({lang for d in by for lang in d["by_language"]})
            lines += ["", "The same differences per language (ΔCER [95% interval]):", "",
                      "| row | against | " + " | ".join(langs) + " |", "|---" * (len(langs) + 2) + "|"]
            for d in by:
                cells = [(lambda c: f"{c['difference']:+.2f} {interval_text(c)}")(d["by_language"][lang]["cer"])
                         if lang in d["by_language"] else "-" for lang in langs]
                lines.append(f"| {d['row']} | {d['baseline']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def interval_text(c: dict) -> str:
    """``[lo, hi]`` of a difference, or ``(one seed)`` where there is none."""
    return f"[{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}]" if c.get("ci") else "(one seed)"


def p_text(p: float | None) -> str:
    return "-" if p is None else f"{p:.3f}" if p >= 0.001 else "<0.001"


def parse_rpq(text: str, alpha: float, flag: str = "--rpq") -> list[tuple[int, float]]:
    """``"2,8,32@0.25"`` -> ``[(2, alpha), (8, alpha), (32, 0.25)]``: RPQ stream counts, each with ``@α`` or ``alpha``."""
    pairs = []
    for item in (x.strip() for x in (text or "").split(",")):
        if not item:
            continue
        m, at, a = item.partition("@")
        try:
            pair = (int(m), float(a) if at else alpha)
        except ValueError:
            raise SpeechrqError(f"{flag}: {item!r} is not M or M@ALPHA (e.g. 32 or 32@0.125)") from None
        if pair[0] < 1 or not 0 < pair[1] <= 1:
            raise SpeechrqError(f"{flag}: {item!r}: M must be >= 1 and alpha in (0, 1]")
        if float(f"{pair[1]:g}") != pair[1]:  # rows, units and runs are named by α's 6 significant digits
            raise SpeechrqError(f"{flag}: {item!r}: give alpha in at most 6 significant digits (it names the row: {pair[1]:g})")
        pairs.append(pair)
    return pairs


def parse_ms(text: str, flag: str) -> list[int]:
    try:
        ms = [int(x) for x in text.split(",") if x.strip()] if text else []
    except ValueError:
        raise SpeechrqError(f"{flag}: {text!r} is not a comma-separated list of integers") from None
    if bad := [m for m in ms if m < 1]:
        raise SpeechrqError(f"{flag}: {', '.join(map(str, bad))}: stream counts must be >= 1")
    return ms

