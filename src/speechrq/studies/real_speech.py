"""``speechrq bench real-speech``: the tiny recipe pre-trained on an hour of real read speech against the same budget on
the synthesized hour (and against the filterbank and random init), probed on real speech (issue 37).

**Corpora** (:func:`build_corpora`), from the LibriSpeech excerpts (``utterances.tsv``, ``SPEAKERS.TXT``, FLAC; a
folder outside the project, never copied into it: :func:`excerpts_dir` says where it is looked for), written as
speechrq corpus folders by :func:`speechrq.data.recipes.write_entries` (the writing path of ``data import``):

- ``sid``: the 100 test-other utterances (10 speakers), label = speaker; per speaker, its utterances sorted by id and
  shuffled with the fixed :data:`SPLIT_SEED`, 60/20/20 (6 train, 2 dev, 2 test of 10).
- ``sex``: the 251 train-clean-100 utterances (one per reader), label = the reader's sex from ``SPEAKERS.TXT``
  (``supervision.gender``); split by speaker, stratified by sex, 60/20/20 with the same seed.
- ``pretrain``: the real audio pre-training reads: the train and dev utterances of both task corpora as one ``train``
  split (the tiny recipe reads ``train`` only). The test utterances (and so the sex task's test speakers) are held
  out, so the probes' test audio is never seen in pre-training.

**Pre-training.** For each pre-training seed ``s``, the tiny recipe for ``steps`` on the real ``pretrain`` corpus
(``OUT/seed{s}/real``) and on the synthesized corpus (``OUT/seed{s}/synth``), each with ``train.seed = s`` and
``quantizer.seed = 1234 + s`` as :mod:`speechrq.studies.latent_study` trains (its ``_train``: a finished run is reused
only through the trainer's resume check, same config and inputs).

**Probes.** Every final encoder, a random init of the recipe's preset drawn with init seed ``s`` (one per pre-training
seed, paired with it) and the filterbank, each baseline normalised with the probed corpus's own statistics
(:mod:`speechrq.evaluate.baselines`' rule), probed by :func:`speechrq.evaluate.run.evaluate` on ``sid`` (task sid)
and ``sex`` (task sex) over ``probe_seeds`` probe seeds: lr and epoch chosen on dev, scores on test.

**Statistics.** Per system and task, the mean ± standard deviation over pre-training seeds; the paired differences
:data:`COMPARISONS` by seed, each with its 95% t-interval over seeds (:func:`speechrq.studies.latent_study.paired`);
the filterbank has no seed, so every seed is paired with its one score (its probe-seed spread is not in the
interval); Holm's rule over the comparisons of each task's table (:func:`speechrq.studies.latent_study.family`), and
one sentence per comparison written from its numbers.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

from ..errors import SpeechrqError
from ..io import atomic_write_json, atomic_write_text, read_json
from .latent_study import QUANTIZER_SEED, _train, family, paired, summarize

EXCERPTS_ENV = "SPEECHRQ_EXCERPTS"  # overrides the default folder; an EXCERPTS argument overrides both
DEFAULT_EXCERPTS = Path("..", "shared", "data", "librispeech-excerpts")  # from a clone's root: beside the repository
SID_SUBSET, SEX_SUBSET = "test-other", "train-clean-100"  # utterances.tsv's subset column: which task corpus
SPLIT_SEED = 0  # every split of the study is drawn with it (per group: random.Random(f"{SPLIT_SEED}:{group}"))
HELD_SHARE = 0.2  # dev and test each; the rest (60%) is train
COLUMNS = ("path", "subset", "speaker", "utterance", "duration_s")
TASKS = ("sid", "sex")  # each probed on its own corpus
SYSTEMS = ("real", "synth", "random-init", "fbank")
COMPARISONS = (("real", "synth"), ("real", "fbank"), ("real", "random-init"), ("synth", "fbank"), ("synth", "random-init"))
SYSTEM_NAMES = {"real": "the encoder pre-trained on the real hour", "synth": "the encoder pre-trained on the synthesized hour",
                "random-init": "the randomly initialised encoder", "fbank": "the filterbank"}
TASK_NAMES = {"sid": "speaker identification among the {n} " + SID_SUBSET + " speakers",
              "sex": "the readers' sex across the {n} " + SEX_SUBSET + " readers, split by speaker"}  # n: the corpus's speakers
LRS = [1e-3, 1e-2]
QUESTION = ("The tiny recipe pre-trained on the real hour against the same budget on the synthesized hour (and against the "
            "filterbank and random init), probed on real speech: speaker identification among the 10 test-other speakers "
            "(split so that no utterance is in two splits), and the readers' sex from SPEAKERS.TXT across the 251 "
            "train-clean-100 speakers, split by speaker.")
HELD_OUT = ("The real pre-training corpus holds the train and dev utterances of both task corpora; every test utterance "
            "(and so every test speaker of the sex task) is held out of pre-training, so the probes' test audio is never "
            "seen in pre-training. Their train and dev audio is.")
SPLIT_RULE = (f"sid: per speaker, its utterances sorted by id, shuffled with split seed {SPLIT_SEED}, then 60/20/20 "
              f"(train/dev/test); sex: per sex, its speakers sorted by id, shuffled with split seed {SPLIT_SEED}, then "
              "60/20/20, every utterance of a speaker in the speaker's split; dev and test each round(20%) of the group, "
              "at least one")
SEEDS_DRIVE = (f"pre-training seed s: train.seed = s (initialisation, data order, masks, heads) and quantizer.seed = "
               f"{QUANTIZER_SEED} + s (random projections and codebooks), the same on the real and the synthesized corpus; "
               "random init: the preset's weights drawn with init seed s; probe seeds inside each")
FBANK_PAIRING = ("the filterbank has no seed: every pre-training seed is paired with its one score (the mean over probe "
                 "seeds), so its probe-seed spread is not in the interval")


def excerpts_dir(given: str | Path | None = None) -> Path:
    """Where the excerpts are read: ``given`` (the EXCERPTS argument), else ``$SPEECHRQ_EXCERPTS``, else
    :data:`DEFAULT_EXCERPTS` (``../shared/data/librispeech-excerpts`` from the current directory: beside the repository
    when run from a clone's root, as ``make real-speech`` runs)."""
    if given:
        return Path(given)
    return Path(os.environ[EXCERPTS_ENV]) if os.environ.get(EXCERPTS_ENV) else DEFAULT_EXCERPTS


def require_excerpts(given: str | Path | None = None) -> Path:
    """:func:`excerpts_dir`, refused in one line naming the folder when it holds no excerpts."""
    path = excerpts_dir(given)
    if not (path / "utterances.tsv").is_file() or not (path / "SPEAKERS.TXT").is_file():
        raise SpeechrqError(f"{path}: no LibriSpeech excerpts folder (utterances.tsv, SPEAKERS.TXT) here; give its path as "
                            f"EXCERPTS or set {EXCERPTS_ENV}")
    return path


def read_utterances(excerpts: Path) -> list[dict]:
    """``utterances.tsv``'s rows (``path``, ``subset``, ``speaker``, ``utterance``); a row with an empty field or whose
    audio file is missing is a one-line error naming its line."""
    from ..data.recipes import _table_rows

    table = excerpts / "utterances.tsv"
    rows = []
    for lineno, row in _table_rows(table, COLUMNS, "TSV"):
        if any(not (row.get(k) or "").strip() for k in COLUMNS):
            raise SpeechrqError(f"{table}:{lineno}: a row with an empty or missing field")
        if not (excerpts / row["path"]).is_file():
            raise SpeechrqError(f"{table}:{lineno}: {excerpts / row['path']}: no such file")
        rows.append({k: row[k].strip() for k in COLUMNS})
    return rows


def split_counts(n: int, what: str) -> tuple[int, int, int]:
    """``(train, dev, test)`` of a group of ``n``: dev and test each ``round(0.2 n)``, at least 1, the rest train."""
    held = max(1, round(HELD_SHARE * n))
    if n - 2 * held < 1:
        raise SpeechrqError(f"{what}: {n} too few to split into train, dev and test (at least 3)")
    return n - 2 * held, held, held


def _assign(items: list[str], group: str) -> dict[str, str]:
    """``items`` (sorted, then shuffled with the split seed of ``group``) -> train, dev or test by :func:`split_counts`."""
    order = sorted(items)
    random.Random(f"{SPLIT_SEED}:{group}").shuffle(order)
    train, dev, _ = split_counts(len(order), group)
    return {x: "train" if k < train else "dev" if k < train + dev else "test" for k, x in enumerate(order)}


def plan_corpora(excerpts: Path, rows: list[dict], sexes: dict[str, str]) -> dict[str, list]:
    """The three corpora as lists of :class:`~speechrq.data.recipes.Entry`: ``sid``, ``sex`` and ``pretrain``."""
    from ..data.recipes import Entry

    if (unknown := sorted({r["speaker"] for r in rows} - set(sexes))):
        raise SpeechrqError(f"{excerpts / 'SPEAKERS.TXT'}: no sex for speaker(s) {', '.join(unknown[:5])} of utterances.tsv")

    def entry(row: dict, split: str) -> Entry:
        return Entry(split, excerpts / row["path"], row["utterance"], speaker=row["speaker"], gender=sexes[row["speaker"]])

    sid_rows = [r for r in rows if r["subset"] == SID_SUBSET]
    sex_rows = [r for r in rows if r["subset"] == SEX_SUBSET]
    if not sid_rows or not sex_rows:
        raise SpeechrqError(f"{excerpts / 'utterances.tsv'}: expected utterances of {SID_SUBSET} and of {SEX_SUBSET}")
    sid = []
    for speaker in sorted({r["speaker"] for r in sid_rows}):
        mine = {r["utterance"]: r for r in sid_rows if r["speaker"] == speaker}
        sid += [entry(mine[u], split) for u, split in sorted(_assign(list(mine), f"sid:{speaker}").items())]
    split_of = {}
    for sex in sorted({sexes[r["speaker"]] for r in sex_rows}):
        split_of |= _assign(sorted({r["speaker"] for r in sex_rows if sexes[r["speaker"]] == sex}), f"sex:{sex}")
    sex_entries = [entry(r, split_of[r["speaker"]]) for r in sorted(sex_rows, key=lambda r: r["utterance"])]
    pretrain = [Entry("train", e.audio, e.id, speaker=e.speaker, gender=e.gender) for e in sid + sex_entries if e.split != "test"]
    test = {e.id for e in sid + sex_entries if e.split == "test"} | {str(e.audio) for e in sid + sex_entries if e.split == "test"}
    if (leaked := [e.id for e in pretrain if e.id in test or str(e.audio) in test]):
        raise SpeechrqError(f"real speech: test utterance(s) {', '.join(leaked[:3])} in the pre-training corpus")
    return {"sid": sid, "sex": sex_entries, "pretrain": pretrain}


def build_corpora(excerpts: str | Path | None, out: str | Path, workers: int = 2, progress: bool = True) -> dict[str, Path]:
    """Write (or reuse, when made from the same plan) ``OUT/sid``, ``OUT/sex`` and ``OUT/pretrain`` (with its
    ``feature_stats.json``); returns their folders. Every excerpt's audio must pass ``data import``'s checks."""
    from ..data.corpus import cut_files
    from ..data.recipes import read_speakers, write_entries
    from ..features import corpus_stats

    excerpts = require_excerpts(excerpts)
    sexes, _ = read_speakers(excerpts / "SPEAKERS.TXT")
    plans = plan_corpora(excerpts, read_utterances(excerpts), sexes)
    made = {}
    for name, entries in plans.items():
        folder = Path(out) / name
        record = {"code": "real_speech/1", "source": str(excerpts.resolve()), "split_seed": SPLIT_SEED,
                  "entries": [[e.split, e.id, e.speaker, e.gender, str(e.audio)] for e in entries]}
        if (folder / "plan.json").exists() and read_json(folder / "plan.json") == record and cut_files(folder):
            made[name] = folder
            continue
        report_file = folder / "import_report.json"
        if report_file.exists() and str(read_json(report_file).get("kind", "")).startswith("librispeech-excerpts"):
            shutil.rmtree(folder)  # made by this study from another plan: made again (a stale feature_stats.json with it)
        _, report = write_entries(entries, f"librispeech-excerpts/{name}", excerpts, folder, workers=workers, progress=progress)
        if report.skipped or report.kept != len(entries):
            raise SpeechrqError(f"{folder}: {len(entries) - report.kept} excerpt file(s) failed the audio checks (see {report_file})")
        atomic_write_json(folder / "plan.json", record)
        made[name] = folder
    corpus_stats(made["pretrain"], "train", progress=progress)
    return made


def _probe(task: str, corpus: Path, out: Path, finals: dict[str, dict[int, Path]], seeds: list[int], preset: str,
           probe_seeds: int, epochs: int, progress: bool) -> tuple[dict[str, dict], dict]:
    """Probe every final encoder, the random init of each seed and the filterbank on ``task``: ``({system: {seed or
    None: probe result}}, the baselines' record)``."""
    from ..encoders import load_encoder
    from ..evaluate.baselines import (
        FBANK_BASELINE,
        RANDOM_BASELINE,
        make_baselines,
        member_name,
    )
    from ..evaluate.run import evaluate
    from ..evaluate.splits import DEFAULT_FOLD

    made, _, record = make_baselines(corpus, [DEFAULT_FOLD], True, preset, max(seeds) + 1, progress=progress)
    encoders, where = {}, {}
    for system, runs in finals.items():
        for seed, ckpt in runs.items():
            encoders[f"{system}@s{seed}"], where[f"{system}@s{seed}"] = load_encoder(ckpt), (system, seed)
    for seed in seeds:  # one weight draw per pre-training seed, paired with it (not pooled into one row)
        encoders[f"random-init@s{seed}"], where[f"random-init@s{seed}"] = made[member_name(seed)], ("random-init", seed)
    encoders["fbank"], where["fbank"] = made[FBANK_BASELINE], ("fbank", None)
    # results.md names the statistics and the filterbank; each random draw is a row of its own, named by its seed
    said = {k: v for k, v in record.items() if k != RANDOM_BASELINE}
    results = evaluate(encoders, corpus, [task], out, LRS, epochs, progress=progress, target_analysis=False, seeds=probe_seeds,
                       baselines=said)
    found: dict[str, dict] = {}
    for name, m in results["models"].items():
        system, seed = where[name]
        found.setdefault(system, {})[seed] = m["tasks"][task]
    record[RANDOM_BASELINE] = record[RANDOM_BASELINE] | {
        "init_seeds": seeds, "fingerprints": [made[member_name(s)].fingerprint for s in seeds],
        "pairing": "init seed s is paired with pre-training seed s"}
    return found, record


def verdict_sentence(task: str, a: str, b: str, cell: dict | None) -> str:
    """One sentence from a comparison's numbers: better, worse or within noise, with the difference and its interval
    (``task``: the task's name in words)."""
    if cell is None:
        return f"On {task}, {SYSTEM_NAMES[a]} against {SYSTEM_NAMES[b]}: fewer than 2 seeds, no verdict."
    how = {"better": "better than", "worse": "worse than", "within noise": "within noise of"}.get(cell["verdict"])
    if how is None:
        return f"On {task}, {SYSTEM_NAMES[a]} against {SYSTEM_NAMES[b]}: {cell['verdict']}."
    holm = f", Holm p {cell['p_holm']:.3f}" if cell.get("p_holm") is not None else ""
    lo, hi = cell["ci95"]
    return (f"On {task}, {SYSTEM_NAMES[a]} is {how} {SYSTEM_NAMES[b]}: {cell['mean']:+.2f} accuracy points "
            f"(95% interval [{lo:+.2f}, {hi:+.2f}] over {cell['n']} pre-training seeds{holm}).")


def tabulate(found: dict[str, dict], task: str, name: str) -> tuple[dict, dict]:
    """``(scores, comparisons)`` of one task: each system's mean ± std over pre-training seeds (the filterbank's over
    probe seeds), and :data:`COMPARISONS` paired by seed, Holm over the task's table, each with its sentence (``name``:
    the task's name in words)."""
    scores = {}
    for system in SYSTEMS:
        per = found.get(system) or {}
        if system == "fbank" and None in per:
            r = per[None]
            scores[system] = {"mean": r["test"], "std": r["test_std"], "n": 1, "per_seed": {}, "std_over": "probe seeds"}
        elif per:
            scores[system] = summarize({s: r["test"] for s, r in sorted(per.items())}) | {"std_over": "pre-training seeds"}
    comparisons = {}
    for a, b in COMPARISONS:
        if a not in scores or b not in scores:
            continue
        mine = scores[a]["per_seed"]
        base = {s: scores[b]["mean"] for s in mine} if b == "fbank" else scores[b]["per_seed"]
        comparisons[f"{a} - {b}"] = {"a": a, "b": b, "vs": paired(mine, base, lower_is_better=False)}
    family([c["vs"] for c in comparisons.values() if c["vs"]], f"{task}: the {len(comparisons)} comparisons of its table")
    for c in comparisons.values():
        c["sentence"] = verdict_sentence(name, c["a"], c["b"], c["vs"])
    return scores, comparisons


def _summary(corpus: Path) -> dict:
    from ..data.corpus import summarize as corpus_summary

    s = corpus_summary(corpus)
    return {"hours": s["hours"], "utterances": s["utterances"], "speakers": s["speakers"], "splits": s["splits"]}


def real_speech_study(excerpts: str | Path | None, out: str | Path, seeds: list[int], steps: int = 1000,
                      synth_corpus: str | Path = "exp/demo/corpus", probe_seeds: int = 3, epochs: int = 30,
                      config: str | Path | None = None, progress: bool = True, workers: int = 2) -> dict:
    """Build the corpora, pre-train (reusing finished runs), probe, and write ``OUT/study.json`` and ``OUT/study.md``."""
    from ..config import load_config
    from ..data.corpus import cut_files
    from ..pretrain.config import PretrainConfig
    from ..resources import config_path
    from .significance import FAMILY_RULE

    out, synth_corpus = Path(out), Path(synth_corpus)
    config = config or config_path("pretrain", "tiny")
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise SpeechrqError(f"--seeds: distinct pre-training seeds >= 0, got {','.join(map(str, seeds)) or 'none'}")
    if min(steps, probe_seeds, epochs) < 1:
        raise SpeechrqError("--steps, --probe-seeds, --epochs: each must be >= 1")
    excerpts = require_excerpts(excerpts)
    if not synth_corpus.is_dir() or "train" not in cut_files(synth_corpus):
        raise SpeechrqError(f"{synth_corpus}: no synthesized corpus (cuts_train.jsonl.gz); make it with "
                            f"`speechrq synth {synth_corpus} --hours 1.0 --seed 0` (make demo's corpus step)")
    recipe = load_config(PretrainConfig, config, [f"data.corpus={synth_corpus}"])
    budget = [f"optim.max_steps={steps}"] + ([f"optim.warmup_steps={steps}"] if steps < recipe.optim.warmup_steps else [])  # a toy budget
    preset = load_config(PretrainConfig, config, [f"data.corpus={synth_corpus}", *budget]).model.preset  # checked before any work
    corpora = build_corpora(excerpts, out / "corpora", workers=workers, progress=progress)
    finals: dict[str, dict[int, Path]] = {"real": {}, "synth": {}}
    for seed in seeds:
        for system, corpus in (("real", corpora["pretrain"]), ("synth", synth_corpus)):
            finals[system][seed] = _train(config, corpus, out / f"seed{seed}" / system,
                                          [*budget, f"train.seed={seed}", f"quantizer.seed={QUANTIZER_SEED + seed}"],
                                          progress)
    scores, comparisons, baselines, summaries = {}, {}, {}, {name: _summary(path) for name, path in corpora.items()}
    names = {task: TASK_NAMES[task].format(n=summaries[task]["speakers"]) for task in TASKS}
    for task in TASKS:
        found, baselines[task] = _probe(task, corpora[task], out / f"eval_{task}", finals, seeds, preset, probe_seeds, epochs, progress)
        scores[task], comparisons[task] = tabulate(found, task, names[task])
    report = {"question": QUESTION, "excerpts": str(excerpts), "config": str(config), "preset": preset, "steps": steps, "overrides": budget,
              "seeds": seeds, "probe_seeds": probe_seeds, "epochs": epochs, "lrs": LRS, "seeds_drive": SEEDS_DRIVE,
              "family_rule": f"{FAMILY_RULE}: one family per task, its {len(COMPARISONS)} comparisons",
              "fbank_pairing": FBANK_PAIRING, "held_out": HELD_OUT, "split_rule": SPLIT_RULE, "split_seed": SPLIT_SEED,
              "tasks": list(TASKS), "task_names": names, "system_order": list(SYSTEMS),
              "comparison_order": [f"{a} - {b}" for a, b in COMPARISONS], "metric": "accuracy (%), higher is better", "systems": SYSTEM_NAMES,
              "corpora": {name: summaries[name] | {"path": str(path)} for name, path in corpora.items()}
              | {"synth": _summary(synth_corpus) | {"path": str(synth_corpus)}},
              "scores": scores, "comparisons": comparisons, "baselines": baselines,
              "runs": {system: {str(s): str(p) for s, p in runs.items()} for system, runs in finals.items()}}
    atomic_write_json(out / "study.json", report)
    atomic_write_text(out / "study.md", format_study(report))
    return report


CEILING = 99.5  # a test accuracy (%) at or above it: the task cannot rank systems above that score


def verdict_summary(report: dict) -> str:
    """The study's verdict in a few sentences, from its numbers alone: per task, the comparisons that hold after Holm
    (better or worse) with their differences, the rest within noise; a task where some system is at the ceiling
    (:data:`CEILING`) is said to be so; then the question's answer, real against synthesized."""
    parts = []
    for task in report["tasks"]:
        name = report["task_names"][task]
        cells = {k: c for k, c in report["comparisons"][task].items() if c["vs"]}
        held = [f"{c['a']} is {c['vs']['verdict']} than {c['b']} ({c['vs']['mean']:+.2f} [{c['vs']['ci95'][0]:+.2f}, "
                f"{c['vs']['ci95'][1]:+.2f}], Holm p {c['vs']['p_holm']:.3f})"
                for c in cells.values() if c["vs"]["verdict"] in ("better", "worse")]
        rest = "every comparison is within noise" if not held else (
            f"{'; '.join(held)}; the other {len(cells) - len(held)} within noise" if len(cells) > len(held) else "; ".join(held))
        top = max(report["scores"][task].items(), key=lambda kv: kv[1]["mean"])
        ceiling = (f" ({top[0]} scores {top[1]['mean']:.2f} on {report['corpora'][task]['splits']['test']['utterances']} test "
                   "utterances: the task is at its ceiling and cannot rank the systems)") if top[1]["mean"] >= CEILING else ""
        parts.append(f"On {name}, {rest}{ceiling}.")
    answer = []
    for task in report["tasks"]:
        c = report["comparisons"][task].get("real - synth")
        if c and c["vs"]:
            answer.append(f"{task} {c['vs']['mean']:+.2f} [{c['vs']['ci95'][0]:+.2f}, {c['vs']['ci95'][1]:+.2f}] ({c['vs']['verdict']})")
    if answer:
        beats = [t for t in report["tasks"] if (report["comparisons"][t].get("real - synth") or {}).get("vs", {}) and
                 report["comparisons"][t]["real - synth"]["vs"]["verdict"] == "better"]
        parts.append(f"Real against synthesized pre-training, real minus synthesized: {'; '.join(answer)}: the real hour "
                     + ("beats the synthesized one on " + ", ".join(beats) if beats else "does no better than the synthesized one")
                     + f" at this scale ({report['preset']} recipe, {report['steps']} steps, {len(report['seeds'])} seeds).")
    return "**Verdict.** " + " ".join(parts)


def format_study(report: dict) -> str:
    """The study's tables: per task, each system's accuracy (mean ± std) and the comparisons with their intervals,
    Holm's p and verdicts, then the verdicts as sentences."""
    c = report["corpora"]
    lines = [report["question"], "", verdict_summary(report), "",
             (f"{len(report['seeds'])} pre-training seeds ({', '.join(map(str, report['seeds']))}) × {report['probe_seeds']} probe "
             f"seed{'s' if report['probe_seeds'] > 1 else ''}; the {report['preset']} recipe for {report['steps']} steps on the real pre-training corpus "
             f"({c['pretrain']['hours']:.2f} h, {c['pretrain']['utterances']} utterances) and on the synthesized one "
             f"({c['synth']['hours']:.2f} h); test split, {report['metric']}; ± the standard deviation over pre-training "
             f"seeds (the filterbank's: over probe seeds); Δ: the first system minus the second, paired by seed, with its 95% "
             f"t-interval over pre-training seeds; verdicts by {report['family_rule']}. {report['held_out']} Splits: "
             f"{report['split_rule']}. Seeds: {report['seeds_drive']}; {report['fbank_pairing']}.")]
    for task in report["tasks"]:
        name = task.upper() if task == "sid" else task.capitalize()
        corpus = c[task]
        counts = ", ".join(f"{split} {s['utterances']} utterances of {s['speakers']} speakers" for split, s in corpus["splits"].items())
        lines += ["", f"{name}: {report['task_names'][task]}; {counts}.", "",
                  f"| system | {name} acc ↑ | per seed |", "|---|---|---|"]
        for system in report["system_order"]:
            if (s := report["scores"][task].get(system)) is None:
                continue
            per = ", ".join(f"{v:.2f}" for _, v in sorted(s["per_seed"].items(), key=lambda kv: int(kv[0]))) or "-"
            lines.append(f"| {system} | {s['mean']:.2f} ± {s['std']:.2f} | {per} |")
        lines += ["", f"| comparison | Δ {name} acc, 95% interval, Holm p, verdict |", "|---|---|"]
        order = [k for k in report["comparison_order"] if k in report["comparisons"][task]]
        for key in order:
            cmp = report["comparisons"][task][key]
            v = cmp["vs"]
            label = key.replace(" - ", " − ")
            if v is None:
                lines.append(f"| {label} | no verdict (one seed) |")
                continue
            holm = f" Holm p {v['p_holm']:.3f}" if v.get("p_holm") is not None else ""
            lines.append(f"| {label} | {v['mean']:+.2f} [{v['ci95'][0]:+.2f}, {v['ci95'][1]:+.2f}]{holm} {v['verdict']} |")
        lines += [""] + [f"- {report['comparisons'][task][k]['sentence']}" for k in order]
    return "\n".join(lines) + "\n"
