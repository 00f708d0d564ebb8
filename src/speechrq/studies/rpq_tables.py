"""The RPQ paper's tables from ``speechrq asr compare`` outputs: Tables I-IV, Table VII and Figure 6 in one call.

``rpq_tables(OUT, ...)`` reads finished comparisons (each ``OUT/compare.json`` with its runs) and lays
their rows out as the paper does (RPQ paper, Sec. V):

- **Table I**: the k-means rows by ``k`` (one comparison per ``k``), each against the smallest ``k``.
- **Table II**: continuous input, the k-means rows, PQ by ``M`` and RPQ by ``M`` (at the α most RPQ rows
  share; on a tie, the one nearest the paper's 0.125), each PQ / RPQ row against the paper's baseline (de-dup + unit BPE) and raw k-means.
- **Table III**: k-means, RVQ by levels ``V``, PQ and RPQ by ``M``, with input bits/s.
- **Table IV**: RPQ at its largest ``M`` by α, each against the α with the lowest **dev** CER (chosen on dev,
  reported on test).
- **Table VII**: for every row, the warm-up steps, the step where the learning rate peaks (read from the
  training log), the optimizer steps one epoch takes (counted from the sampler over the row's units:
  speechrq batches by seconds of audio, so ``M`` cannot change it) and the peak's epoch.
- **Figure 6**: time per epoch for k-means, RPQ by ``M`` and continuous input, where each of their runs trained alone
  (``jobs`` 1); otherwise none, and ``timings_removed`` says why.
- **Per language** (a corpus of several languages, ML-SUPERB's column): each row's CER per language and their
  mean (each language once), and each Table II difference per language.

Every number is a mean ± standard deviation over the replicate seeds the comparisons share (each seed its own
quantizer draw and ASR training); every difference carries a 95% t-interval over seeds and test utterances
(:mod:`speechrq.studies.significance`), and its verdict follows Holm's rule within its table (Tables I, II, III
and IV are a family each; Table II's per-language differences a family per language).
"""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

from ..errors import SpeechrqError
from ..io import atomic_write_json, atomic_write_text, read_json


def _load(out: Path) -> dict:
    path = out / "compare.json"
    if not path.exists():
        raise SpeechrqError(f"{out}: no compare.json (run `speechrq asr compare --out {out}` first)")
    report = read_json(path)
    if not isinstance(report, dict) or "training_seeds" not in report or not isinstance(report.get("rows"), dict) or not report["rows"]:
        raise SpeechrqError(f"{path}: not a finished comparison (no training_seeds or rows); run `speechrq asr compare` again")
    for name, r in report["rows"].items():
        missing = [k for k in ("input", "quantizer", "seeds") if not isinstance(r, dict) or k not in r]
        if missing or any(str(s) not in r["seeds"] for s in report["training_seeds"]):
            what = f"no {', '.join(missing)}" if missing else f"not every training seed of {report['training_seeds']}"
            raise SpeechrqError(f"{path}: row {name!r} has {what}; run `speechrq asr compare` again")
    from ..formats import compare_for_tables

    return compare_for_tables(report, path)  # every number the tables read, one line naming the key when one is not


def _row_spec(name: str, r: dict) -> dict:
    """The row as :func:`~speechrq.studies.discrete_asr.systems` describes it (what ``run_dir`` reads)."""
    return {"name": name, "input": r["input"], "quantizer": r["quantizer"]} | ({"unit_bpe": r["unit_bpe"]} if "unit_bpe" in r else {})


def _entry(out: Path, name: str, r: dict, seeds: list[int]) -> dict:
    from .discrete_asr import _by_language, timed_alone

    runs = [r["seeds"][str(s)] for s in seeds]
    spread = (lambda key: statistics.stdev(x[key] for x in runs) if len(runs) > 1 else 0.0)  # noqa: E731
    q = r["quantizer"]
    return {"name": name, "out": str(out), "input": r["input"], "kind": "continuous" if r["input"] == "continuous" else q["kind"],
            "k": q["k"], "M": q["num_subspaces"], "alpha": q.get("alpha"), "cer": statistics.fmean(x["cer"] for x in runs),
            "cer_std": spread("cer"), "wer": statistics.fmean(x["wer"] for x in runs), "wer_std": spread("wer"),
            "cer_dev": statistics.fmean(x["cer_dev"] for x in runs), "bits_per_second": runs[0]["bits_per_second"],
            "jobs": max(x.get("jobs", 1) for x in runs), "spec": _row_spec(name, r)} | _by_language(runs) | (
                {"s_per_step": statistics.fmean(x["s_per_step"] for x in runs)} if all("s_per_step" in timed_alone(x) for x in runs) else {})


def _difference(a: dict, b: dict, seeds: list[int], test_split: str) -> dict:
    """``b − a`` in CER and WER (negative: ``b`` is better) with t-intervals; its verdict comes with its table's family
    (:func:`~speechrq.studies.discrete_asr.family`). Seeds are paired when both rows read one quantizer fit."""
    from .discrete_asr import _errors, _subset, paired_difference, shares_draw

    ea, eb = _errors(Path(a["out"]), a["spec"], seeds, test_split), _errors(Path(b["out"]), b["spec"], seeds, test_split)
    what = f"{b['name']} ({b['out']}) and {a['name']} ({a['out']})"
    pair = a["out"] == b["out"] and shares_draw(a["spec"], b["spec"])
    d = {"row": b["name"], "against": a["name"]} | paired_difference(ea, eb, what, test_split, pair)
    if len(languages := sorted(set(ea[5]) - {None})) > 1:  # each language's utterances on their own
        d["by_language"] = {lang: paired_difference(_subset(ea, lang), _subset(eb, lang), what, test_split, pair) for lang in languages}
    return d


def lr_peak(out: Path, spec: dict, seed: int) -> dict:
    """The warm-up steps of one run's config, the logged step with the highest learning rate, and the run's epoch length."""
    from ..asr.config import ASRConfig
    from ..config import load_config
    from ..training.engine import read_metrics
    from .discrete_asr import run_dir, steps_per_epoch

    import json

    from ..schema import INT, NUMBER, check

    run = run_dir(out, spec, seed)
    try:
        metrics = read_metrics(run)
    except json.JSONDecodeError as e:
        raise SpeechrqError(f"{run / 'metrics.jsonl'}: a line is not valid JSON ({e.msg})") from None
    if not metrics:
        raise SpeechrqError(f"{run}: no training log (metrics.jsonl)")
    for i, m in enumerate(metrics):  # the step and learning rate of every logged line
        check(m, {"step": INT, "lr": NUMBER}, f"{run / 'metrics.jsonl'}: line {i + 1}")
    peak = max(metrics, key=lambda m: m["lr"])
    steps = steps_per_epoch(out, spec, seed)
    return {"warmup_steps": load_config(ASRConfig, run / "config.yaml").optim.warmup_steps, "peak_step": peak["step"],
            "peak_lr": peak["lr"], "steps_per_epoch": steps, "peak_epoch": peak["step"] / steps}


def rpq_tables(outs: list[str | Path], progress: bool = False) -> dict:
    """Tables I-IV and VII (and Figure 6's numbers) from finished comparisons ``outs`` (see the module docstring).

    Raises :class:`SpeechrqError` when a directory holds no finished comparison or the comparisons share no
    training seed or test split."""
    from .discrete_asr import shared_cores_note, steps_per_epoch

    outs = [Path(o) for o in outs]
    if not outs:
        raise SpeechrqError("rpq tables: give at least one `asr compare` output directory")
    reports = {o: _load(o) for o in outs}
    splits = {r["test_split"] for r in reports.values()}
    if len(splits) != 1:
        raise SpeechrqError(f"rpq tables: the comparisons score different test splits ({', '.join(sorted(splits))})")
    test_split = splits.pop()
    seeds = sorted(set.intersection(*(set(r["training_seeds"]) for r in reports.values())))
    if not seeds:
        raise SpeechrqError("rpq tables: the comparisons share no training seed")
    rows = [_entry(o, name, r, seeds) for o, rep in reports.items() for name, r in rep["rows"].items()]
    kmeans = [r for r in rows if r["kind"] == "kmeans" and r["input"] != "continuous"]
    main_out = max(outs, key=lambda o: sum(r["kind"] in ("pq", "rpq", "rvq") for r in rows if r["out"] == str(o)))
    main = [r for r in rows if r["out"] == str(main_out)]
    main_km = {r["input"]: r for r in main if r["kind"] == "kmeans" and r["input"] != "continuous"}
    baselines = [main_km[i] for i in ("bpe", "units") if i in main_km]

    # Table I: k-means by k, each input against the smallest k's row of that input
    table1 = []
    for inp in ("units", "dedup", "bpe"):
        by_k = sorted((r for r in kmeans if r["input"] == inp), key=lambda r: r["k"])
        for r in by_k:
            table1.append(r | ({"against_smallest_k": _difference(by_k[0], r, seeds, test_split)} if r is not by_k[0] else {}))
    # Table II's α: the one with the most RPQ rows; a tie goes to the α nearest the paper's 0.125
    alphas = Counter(r["alpha"] for r in main if r["kind"] == "rpq")
    alpha = min(alphas, key=lambda a: (-alphas[a], abs(a - 0.125))) if alphas else None
    pq = sorted((r for r in main if r["kind"] == "pq"), key=lambda r: r["M"])
    rpq = sorted((r for r in main if r["kind"] == "rpq" and r["alpha"] == alpha), key=lambda r: r["M"])
    rvq = sorted((r for r in main if r["kind"] == "rvq"), key=lambda r: r["M"])
    cont = [r for r in main if r["kind"] == "continuous"]
    table2 = [r | {"differences": [_difference(b, r, seeds, test_split) for b in baselines]} for r in cont + pq + rpq]
    for group in (pq, rpq):  # Table II's second claim: more streams help; each M against the smallest
        for r in table2:
            if group and r["name"] != group[0]["name"] and r["name"] in {g["name"] for g in group}:
                r["against_smallest_M"] = _difference(group[0], r, seeds, test_split)
    table3 = [r | {"differences": [_difference(b, r, seeds, test_split) for b in baselines]} for r in rvq + pq + rpq]
    top = max((r["M"] for r in main if r["kind"] == "rpq"), default=None)
    table4 = sorted((r for r in main if r["kind"] == "rpq" and r["M"] == top), key=lambda r: r["alpha"])
    if table4:  # the best α is chosen on dev and every other α compared with it on test
        best4 = min(table4, key=lambda r: r["cer_dev"])
        table4 = [r | ({"against_best": _difference(best4, r, seeds, test_split)} if r is not best4 else {"best": True}) for r in table4]
    from .discrete_asr import family

    family([r["against_smallest_k"] for r in table1 if "against_smallest_k" in r], "Table I")
    family([d for r in table2 for d in r["differences"]] + [r["against_smallest_M"] for r in table2 if "against_smallest_M" in r],
           "Table II")
    family([d for r in table3 for d in r["differences"]], "Table III")
    family([r["against_best"] for r in table4 if "against_best" in r], "Table IV")
    km = main_km.get("units") or next(iter(main_km.values()), None)  # the paper's K-means row: raw units
    first = [km] if km else []
    table7 = [{"name": r["name"], "M": r["M"], "cer": r["cer"], "cer_std": r["cer_std"], **lr_peak(Path(r["out"]), r["spec"], seeds[0])}
              for r in first + pq + rpq + rvq]
    epoch_steps = {t["name"]: t["steps_per_epoch"] for t in table7}
    timed = first + rpq + cont
    if all("s_per_step" in r for r in timed):  # Figure 6 only from runs that each trained alone
        figure6 = {"figure6": [{"name": r["name"], "s_per_step": r["s_per_step"], "jobs": r["jobs"], "epoch_s": r["s_per_step"] * (
            epoch_steps.get(r["name"]) or steps_per_epoch(Path(r["out"]), r["spec"], seeds[0]))} for r in timed]}
    else:
        figure6 = {"timings_removed": shared_cores_note(max(r["jobs"] for r in timed))}
    strip = lambda xs: [{k: v for k, v in x.items() if k not in ("spec", "s_per_step")} for x in xs]  # noqa: E731
    from .discrete_asr import SEEDS_DRIVE
    from .significance import FAMILY_RULE, METHOD

    return {"training_seeds": seeds, "seeds_drive": SEEDS_DRIVE, "interval": METHOD, "family_rule": FAMILY_RULE,
            "test_split": test_split, "comparisons": [str(o) for o in outs], "main": str(main_out),
            "alpha": alpha, "baselines": [b["name"] for b in baselines], "table1": strip(table1), "table2": strip(table2),
            "table3": strip(table3), "table4": strip(table4), "table7": table7} | figure6


def _pm(r: dict, key: str) -> str:
    return f"{r[key]:.2f} ± {r[key + '_std']:.2f}"


def _diff(d: dict | None) -> str:
    if not d:
        return ""
    from .discrete_asr import interval_text

    c = d["cer"]
    holm = f" (Holm p {d['p_holm']:.3f})" if d.get("p_holm") is not None else ""
    return f"{c['difference']:+.2f} {interval_text(c)}{holm} {d['verdict']}"


def format_tables(t: dict) -> str:
    seeds = ", ".join(map(str, t["training_seeds"]))
    method = (f"its 95% {t['interval']}; verdicts by {t['family_rule']}" if t.get("interval") else
              "its 95% bootstrap interval over test utterances and seeds (computed before issue 35: one quantizer draw for every "
              "seed, and each interval judged on its own)")
    out = [f"Test split `{t['test_split']}`; CER and WER mean ± standard deviation over seeds {seeds}"
           + (f" ({t['seeds_drive']})" if t.get("seeds_drive") else "") + f"; Δ is row − reference in CER (↓ negative: fewer "
           f"errors) with {method}.", ""]
    out += ["**Table I: k-means by k**", "", "| input | k | CER | WER | Δ against the smallest k |", "|---|---|---|---|---|"]
    out += [f"| {r['input']} | {r['k']} | {_pm(r, 'cer')} | {_pm(r, 'wer')} | {_diff(r.get('against_smallest_k'))} |" for r in t["table1"]]
    base = t["baselines"]
    head = " | ".join(f"Δ against {b}" for b in base)
    out += ["", f"**Table II: PQ and RPQ (α = {t['alpha']:g}) by M**" if t["alpha"] is not None else "**Table II: PQ by M**", "",
            f"| input | CER | WER | {head} | Δ against the smallest M |", "|---|---|---|---|" + "---|" * len(base)]
    for r in t["table2"]:
        out.append(f"| {r['name']} | {_pm(r, 'cer')} | {_pm(r, 'wer')} | " + " | ".join(_diff(d) for d in r["differences"])
                   + f" | {_diff(r.get('against_smallest_M'))} |")
    out += ["", "**Table III: RVQ, PQ and RPQ**", "", f"| method | CER | WER | bits/s | {head} |", "|---|---|---|---|" + "---|" * len(base)]
    for r in t["table3"]:
        out.append(f"| {r['name']} | {_pm(r, 'cer')} | {_pm(r, 'wer')} | {r['bits_per_second']:.0f} | "
                   + " | ".join(_diff(d) for d in r["differences"]) + " |")
    if t["table4"]:
        on_dev = all("cer_dev" in r for r in t["table4"])
        out += ["", f"**Table IV: RPQ (M = {t['table4'][0]['M']}) by α**" + (" (the best α chosen on dev CER)" if on_dev else
                " (the best α chosen on test CER, before issue 35)"), "",
                "| α | dev CER | CER | WER | Δ against the best α |" if on_dev else "| α | CER | WER | Δ against the best α |",
                "|---|---|---|---|---|" if on_dev else "|---|---|---|---|"]
        out += [f"| {r['alpha']:g} | " + (f"{r['cer_dev']:.2f} | " if on_dev else "") + f"{_pm(r, 'cer')} | {_pm(r, 'wer')} | "
                f"{'best' if r.get('best') else _diff(r.get('against_best'))} |" for r in t["table4"]]
    out += ["", f"**Table VII: where the learning rate peaks** (training seed {t['training_seeds'][0]}; speechrq batches by seconds "
            "of audio, so the steps of an epoch do not depend on M)", "",
            "| row | warm-up steps | peak step | steps per epoch | peak epoch | CER |", "|---|---|---|---|---|---|"]
    out += [f"| {r['name']} | {r['warmup_steps']} | {r['peak_step']} | {r['steps_per_epoch']} | {r['peak_epoch']:.2f} | {_pm(r, 'cer')} |"
            for r in t["table7"]]
    if (langs := sorted({lang for r in t["table2"] + t["table1"] for lang in r.get("cer_by_language", {})})):
        out += ["", "**Per language: CER** (mean ± sd over seeds; *mean* counts each language once, as ML-SUPERB averages)", "",
                "| input | " + " | ".join(langs) + " | mean |", "|---" * (len(langs) + 2) + "|"]
        for r in [*t["table1"], *t["table2"]]:
            by = r.get("cer_by_language", {})
            out.append(f"| {r['name']} | " + " | ".join(_pm(by[lang], "cer") if lang in by else "-" for lang in langs)
                       + (f" | {_pm(r, 'cer_language_mean')} |" if by else " | - |"))
        out += ["", "**Per language: Δ CER against each k-means baseline** [95% interval] verdict", "",
                "| input | against | " + " | ".join(langs) + " |", "|---" * (len(langs) + 2) + "|"]
        for r in t["table2"]:
            for d in r["differences"]:
                by = d.get("by_language", {})
                out.append(f"| {r['name']} | {d['against']} | " + " | ".join(_diff(by[lang]) if lang in by else "-" for lang in langs) + " |")
    if t.get("figure6"):
        out += ["", "**Figure 6: training time per epoch** (each run trained alone)", "", "| input | s per step | s per epoch |",
                "|---|---|---|"]
        out += [f"| {r['name']} | {r['s_per_step']:.3f} | {r['epoch_s']:.1f} |" for r in t["figure6"]]
    elif t.get("timings_removed"):
        out += ["", f"**Figure 6: training time per epoch**: not shown. {t['timings_removed']}"]
    return "\n".join(out) + "\n"


def plot_figure6(t: dict, path: str | Path) -> Path:
    """Figure 6 as bars: seconds per training epoch of each input."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = t["figure6"]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(rows)), 3.2))
    ax.bar(range(len(rows)), [r["epoch_s"] for r in rows], color=["#777" if "k-means" in r["name"] else "#3a7" if r["name"] == "continuous"
                                                                   else "#37a" for r in rows])
    ax.set_xticks(range(len(rows)), [r["name"].replace(", α", "\nα") for r in rows], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("seconds per epoch")
    ax.set_title("Figure 6: training time per epoch", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    from ..io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def copy_logs(outs: list[str | Path], directory: str | Path, seeds: list[int]) -> list[Path]:
    """Every run's training log (``metrics.jsonl``) gzipped into ``DIRECTORY/<comparison>_<system>_seed<S>.jsonl.gz``
    (byte-reproducible: no timestamp in the gzip header)."""
    import gzip

    from ..io import atomic_path
    from .discrete_asr import run_dir

    directory = Path(directory)
    _distinct_names(outs)
    _writable_dir(directory, "--logs")
    written = []
    for out in map(Path, outs):
        for name, r in _load(out)["rows"].items():
            for s in seeds:
                run = run_dir(out, _row_spec(name, r), s)
                path = directory / f"{out.name}_{run.parent.name}_seed{s}.jsonl.gz"
                with atomic_path(path) as tmp, open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as z:
                    z.write((run / "metrics.jsonl").read_bytes())
                written.append(path)
    return written


def write_tables(outs: list[str | Path], prefix: str | Path, logs: str | Path | None = None) -> dict:
    """``PREFIX.json``, ``PREFIX.md``, ``PREFIX_figure6.png`` (only where every timed run trained alone: otherwise
    an earlier call's is removed) and ``PREFIX_errors.json.gz`` (every run's per-utterance
    dev and test errors: :mod:`speechrq.studies.evidence` recomputes the tables from them) from the comparisons
    ``outs``; with ``logs``, every run's training log gzipped there (:func:`copy_logs`)."""
    if str(prefix).endswith(("/", "\\")) or Path(prefix).is_dir():
        raise SpeechrqError(f"--prefix {prefix}: a folder; give a path without suffix inside one (e.g. {Path(prefix) / 'tables'})")
    prefix = Path(prefix)
    _writable_dir(prefix.parent, "--prefix")
    if logs is not None:
        _distinct_names(outs)
        _writable_dir(Path(logs), "--logs")
    t = rpq_tables(outs)
    from .evidence import archive_path, row_errors, write_archive

    evidence = {}
    for out in map(Path, outs):
        for name, r in _load(out)["rows"].items():
            if name in evidence:
                raise SpeechrqError(f"asr tables: two comparisons hold a row named {name!r} ({evidence[name]['comparison']} and "
                                    f"{out.name}); the tables name rows alone, so give comparisons whose rows differ")
            evidence[name] = {"comparison": out.name, "quantizer": r["quantizer"], "input": r["input"],
                              "splits": row_errors(out, _row_spec(name, r), t["training_seeds"], ["dev", t["test_split"]])}
    try:
        if logs is not None:
            copy_logs(outs, logs, t["training_seeds"])
        # the per-utterance errors behind every number and interval, beside the JSON (`speechrq.studies.evidence`)
        write_archive(archive_path(prefix.with_suffix(".json")), evidence, t["training_seeds"], t["test_split"])
        atomic_write_json(prefix.with_suffix(".json"), t)
        atomic_write_text(prefix.with_suffix(".md"), format_tables(t))
        figure = prefix.parent / f"{prefix.name}_figure6.png"
        if t.get("figure6"):
            plot_figure6(t, figure)
        else:  # no time reported: an earlier call's figure is not left beside these tables
            figure.unlink(missing_ok=True)
    except OSError as e:
        raise SpeechrqError(f"{e.filename or prefix}: cannot write ({e.strerror})") from None
    return t


def _distinct_names(outs: list) -> None:
    names = [Path(o).resolve().name for o in outs]
    if len(set(names)) < len(names):
        raise SpeechrqError(f"--logs: the comparisons {', '.join(map(str, outs))} share a folder name; their logs would overwrite "
                            "each other (rename one)")


def _writable_dir(directory: Path, flag: str) -> None:
    """Make ``directory`` (and its parents), or say in one line why it cannot be."""
    import os

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SpeechrqError(f"{flag}: {e.filename or directory}: cannot make the folder ({e.strerror})") from None
    if not os.access(directory, os.W_OK):
        raise SpeechrqError(f"{flag}: {directory}: not writable")


__all__ = ["copy_logs", "format_tables", "lr_peak", "plot_figure6", "rpq_tables", "write_tables"]
