"""Numbers in the documentation's prose, read from the studies' JSON when the documentation is built.

A sentence such as "RPQ at M = 32 is better than raw k-means by {{ mel.rpq32_a0.125.vs.kmeans500 }} CER" names its
number by a key; :func:`numbers` computes every key from the JSON in ``docs/`` (the files the results pages render),
so the prose cannot drift from its measurement, and a new study's JSON updates the sentences that cite it.

Two forms, one set of keys:

- ``{{ KEY }}`` in a documentation page, replaced when the site is built (the mkdocs hook ``docs/_hooks/prose.py``
  calls :func:`fill`). ``{{ headline }}`` is the claims table (:mod:`speechrq.studies.headline`).
- ``<!--n:KEY-->VALUE<!--/n-->`` in the README, which GitHub shows as written: VALUE is the key's value, written there
  by ``python -m speechrq.studies.results_pages docs --readme README.md`` (:func:`refresh`), and
  ``tests/test_docs_numbers.py`` fails when one is stale.

An unknown key is an error naming it (the build stops), never an empty string. Keys, by source:

- ``latent.ARM.TASK`` (``latent_study.json``): ``"mean ± std"``; ``.mean``, ``.std``; ``.d`` the difference to the
  arm's base (positive = better), ``.dci`` with its 95% interval, ``.ci``, ``.abs`` (its size), ``.verdict``,
  ``.p`` (Holm's p), ``.seed.S`` (one pre-training seed's score). ARM is one of :data:`LATENT_ARMS`, TASK ``pr``,
  ``sid``, ``er``, ``ft``. ``latent.gain.STEP`` the paper's design's PR gain at a stage end;
  ``latent.reference_steps`` the steps the strong-θ pair continues the reference; ``latent.conv.S.arm`` / ``.base``
  the convergence points; ``latent.rank.SOURCE.S.phones`` (SOURCE ``mel``, ``layer-1``, ``layer0``, ...; S a
  seed or ``ref``) and ``latent.rank.corr.S`` (κ against phones, Spearman); ``latent.pr.auto_minus_best``.
- ``mel.ROW`` and ``ml.ROW`` (``rpq_tables_mel.json``, ``ml_tables.json``): ``"cer ± std"``; ``.cer``, ``.wer``,
  ``.wer_pm``, ``.bits``; ``.vs.OTHER`` the CER difference to another row with its interval (``.d``, ``.abs``,
  ``.verdict``, ``.wer`` for WER's); ``.lang.G`` a language's CER, ``.vs.OTHER.G`` its difference. ROW is
  :func:`row_key` of the row's name: ``kmeans500``, ``kmeans500_dedup``, ``kmeans500_bpe``, ``pq8``, ``rpq32_a0.125``,
  ``rvq2``, ``continuous``. ``.vs_best``: Table IV's difference to the best α. ``mel.best_alpha``, ``mel.t7.peak_step``
  (and ``steps_per_epoch``, ``peak_epoch``).
- ``A.minus.B``: the CER of row key A minus row key B (signed), e.g. ``mel.kmeans500_bpe.minus.mel.kmeans500``.
- ``narrow.ROW`` (``asr_compare_seeds_tiny_bestrq.json``, the same suffixes, ``.seed.S``; ``narrow.max_std``) and
  ``narrow1.ROW`` (one seed: ``.cer``, ``.wer``).
- ``kinds.INPUT.cer`` / ``.length`` (``asr_input_kinds_tiny_bestrq.json``).
- ``units.KIND.M[.aALPHA].FIELD`` (``units_report_tiny_bestrq.json``), e.g. ``units.rpq.32.a0.125.ratio_measured``,
  ``units.kmeans.1.pnmi``; ``units.rpq.pnmi_range_a>=0.5`` and ``units.rpq.nmse_range_a>=0.5``.
- ``mlprobe.MODEL.TASK`` (``ml_probes.json``) and ``mlprobe.vs.A.B.TASK`` (the mean over A's runs minus B's, Welch
  95% interval).
- ``ref.loss``, ``ref.acc``, ``ref.chance``, ``ref.used``, ``ref.mb``: the shipped reference checkpoint's last training
  record (``assets/reference/tiny_bestrq/metrics.jsonl.gz``) and the size of its weights.
- ``quality4x1024.TASK...`` and ``qualityref.TASK...`` (``quality_*.json``), ``sweep.POINT`` (``sweep_tiny.json``, POINT the point's name through :func:`slug`),
  ``phases.PHASE`` (``demo_phases.json``: one of :data:`PHASES`, ``total``, ``install``, ``second_run``),
  ``passes.drop_range`` (``bench_passes.json``).
- ``real.TASK.SYSTEM`` and ``real.TASK.A-B`` (``real_speech.json``, TASK ``sid`` or ``sex``): a system's score and a
  paired difference with its interval (the suffixes of :func:`_real_speech`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

MINUS = "\u2212"

# the Latent-RQ study's arms: key -> how its name is found (a pattern of the name)
LATENT_ARMS = {
    "bestrq": r"^BEST-RQ$",
    "best": r"ranked best",
    "lr": r"lr continues",
    "nostd": r"no standardisation",
    "paper": r"paper's design",  # the paper's middle layers on its 20/50/80% schedule (the headline arm)
    "bestsched": r"paper schedule",  # an ablation of studies before issue 35: that schedule on the ranked-best layers
    "middle": r"middle",
    "auto": r"layers auto",
    "refbest": r"^reference \+ \d+ BEST-RQ",
    "reflatent": r"^reference \+ \d+ Latent-RQ",
}

# the demo's phases (demo_phases.json): key -> a pattern of the phase's name
PHASES = {"corpus": r"^corpus", "stats": r"^feature statistics", "stage0": r"stage 0", "stage1": r"stage 1", "probes": r"^probes",
          "curves": r"curves", "asr": r"discrete-unit ASR", "report": r"^report"}

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.\-+>=]+)\s*\}\}")
README_NUMBER = re.compile(r"<!--n:([A-Za-z0-9_.\-+>=]+)-->(.*?)<!--/n-->", re.S)


def sgn(x: float, digits: int = 2) -> str:
    """``+3.83`` / ``−0.98`` (a typographic minus, as the prose writes it)."""
    s = f"{x:+.{digits}f}"
    return s.replace("-", MINUS)


def num(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}".replace("-", MINUS)


def pm(mean: float, std: float, digits: int = 2) -> str:
    return f"{num(mean, digits)} ± {std:.{digits}f}"


def interval(ci) -> str:
    return f"[{sgn(ci[0])}, {sgn(ci[1])}]"


def row_key(name: str) -> str:
    """A row's key from its name: ``"k-means (k=500), de-duplicated"`` -> ``kmeans500_dedup``, ``"RPQ (M=32, α=0.125)"``
    -> ``rpq32_a0.125``, ``"RVQ (V=2)"`` -> ``rvq2``."""
    low = name.lower()
    if m := re.match(r"k-means \(k=(\d+)\)", low):
        tail = "_bpe" if "bpe" in low else "_dedup" if "de-dup" in low else ""
        return f"kmeans{m.group(1)}{tail}"
    if m := re.match(r"rpq \(m=(\d+), α=([\d.]+)\)", low):
        return f"rpq{m.group(1)}_a{float(m.group(2)):g}"
    if m := re.match(r"(pq|rvq) \((?:m|v)=(\d+)\)", low):
        return f"{m.group(1)}{m.group(2)}"
    if low in ("k-means", "dedup", "bpe", "continuous"):
        return {"k-means": "kmeans"}.get(low, low)
    return re.sub(r"[^a-z0-9.]+", "_", low).strip("_")


def _difference(out: dict, key: str, d: dict, verdict: str | None = None, p=None) -> None:
    """The keys of one difference ``{"difference", "ci"}`` (CER or a probe's), under ``key``."""
    x, ci = d["difference"], d.get("ci")
    out[key] = f"{sgn(x)} {interval(ci)}" if ci else sgn(x)
    out[f"{key}.d"] = sgn(x)
    out[f"{key}.abs"] = num(abs(x))
    if ci:
        out[f"{key}.ci"] = interval(ci)
    if verdict:
        out[f"{key}.verdict"] = verdict
    if p is not None:
        out[f"{key}.p"] = f"{p:.3f}"


def _latent(d: dict) -> dict[str, str]:
    out: dict[str, str] = {"latent.steps": str(d["steps"]), "latent.seeds": str(len(d["seeds"]))}
    if d.get("reference_steps"):
        out["latent.reference_steps"] = str(d["reference_steps"])
    names = {}
    for key, pattern in LATENT_ARMS.items():
        hits = [n for n in d["arms"] if re.search(pattern, n)]
        if len(hits) == 1:
            names[key] = hits[0]
            out[f"latent.{key}.name"] = hits[0]
    for key, name in names.items():
        for task, c in d["arms"][name].items():
            base = f"latent.{key}.{task}"
            out[base] = pm(c["mean"], c["std"])
            out[f"{base}.mean"], out[f"{base}.std"] = num(c["mean"]), f"{c['std']:.2f}"
            for seed, v in (c.get("per_seed") or {}).items():
                out[f"{base}.seed.{seed}"] = num(v)
            if (v := c.get("vs_base")):
                out[f"{base}.dci"] = f"{sgn(v['mean'])} {interval(v['ci95'])}"
                out[f"{base}.d"], out[f"{base}.abs"], out[f"{base}.verdict"] = sgn(v["mean"]), num(abs(v["mean"])), v["verdict"]
                out[f"{base}.ci"] = interval(v["ci95"])
                if v.get("p_holm") is not None:
                    out[f"{base}.p"] = f"{v['p_holm']:.3f}"
                if v.get("family"):
                    out["latent.family"] = str(v["family"]["size"])
    if "auto" in names and "best" in names:
        a, b = d["arms"][names["auto"]]["pr"]["vs_base"]["mean"], d["arms"][names["best"]]["pr"]["vs_base"]["mean"]
        out["latent.pr.auto_minus_best"] = num(abs(a - b))
    for step, g in (d.get("stage_gains") or {}).items():
        out[f"latent.gain.{step}"] = sgn(g["mean"])
    for seed, c in (d.get("convergence") or {}).get("per_seed", {}).items():
        out[f"latent.conv.{seed}.base"] = num(c["base_final"])
        final = str(max(int(k) for k in c["points"]))
        out[f"latent.conv.{seed}.arm"] = num(c["points"][final])
        out[f"latent.conv.{seed}.step"] = str(c["step"]) if c["step"] else "never"
    for source, per in (d.get("theta_ranking") or {}).items():
        if source == "_agreement_vs_labels":
            for seed, c in per.items():
                s = "ref" if seed == "reference" else seed
                for what, v in c.items():
                    if v is not None:
                        out[f"latent.rank.corr.{s}.{what}"] = sgn(v)
            continue
        if source.startswith("_"):
            continue
        src = source.lower().replace("layer ", "layer").replace(" ", "")
        for seed, c in per.items():
            s = "ref" if seed == "reference" else seed
            for what in ("phones", "speakers"):
                if c.get(what) is not None:
                    out[f"latent.rank.{src}.{s}.{what}"] = num(c[what], 1)
            out[f"latent.rank.{src}.{s}.kappa"] = f"{c['agreement']:.3f}"
    return out


def _rows(prefix: str, rows: list[dict], out: dict) -> None:
    """``prefix.ROW`` keys of table rows (``name`` or ``input``, ``cer``, ``cer_std``, ...) and their differences."""
    for r in rows:
        key = f"{prefix}.{row_key(r.get('name') or r['input'])}"
        if "cer_std" in r:
            out[key] = pm(r["cer"], r["cer_std"])
            out[f"{key}.wer_pm"] = pm(r["wer"], r["wer_std"])
        else:
            out[key] = num(r["cer"])
        out[f"{key}.cer"], out[f"{key}.wer"] = num(r["cer"]), num(r["wer"])
        if "bits_per_second" in r:
            out[f"{key}.bits"] = f"{r['bits_per_second']:.0f}"
        for g, c in (r.get("cer_by_language") or {}).items():
            out[f"{key}.lang.{g}"] = pm(c["cer"], c["cer_std"]) if "cer_std" in c else num(c["cer"])
        if r.get("against_best"):
            _difference(out, f"{key}.vs_best", r["against_best"]["cer"], r["against_best"].get("verdict"))
        diffs = list(r.get("differences") or []) + [r[k] for k in ("against_smallest_k", "against_smallest_M", "against_best") if r.get(k)]
        for x in diffs:
            other = f"{key}.vs.{row_key(x.get('against') or x.get('baseline'))}"
            _difference(out, other, x["cer"], x.get("verdict"), x.get("p_holm"))
            if x.get("wer"):
                _difference(out, f"{other}.wer", x["wer"])
            for g, c in (x.get("by_language") or {}).items():
                _difference(out, f"{other}.{g}", c["cer"], c.get("verdict"))


def _tables(prefix: str, d: dict) -> dict[str, str]:
    out: dict[str, str] = {f"{prefix}.alpha": f"{d['alpha']:g}", f"{prefix}.seeds": str(len(d["training_seeds"]))}
    _rows(prefix, d["table1"] + d["table2"] + d["table3"] + d["table4"], out)
    best = [r for r in d["table4"] if r.get("best")]
    if best:
        out[f"{prefix}.best_alpha"] = f"{best[0]['alpha']:g}"
    t7 = d.get("table7") or []
    for k in ("warmup_steps", "peak_step", "steps_per_epoch", "peak_epoch"):
        values = {r[k] for r in t7}
        if len(values) == 1:
            v = values.pop()
            out[f"{prefix}.t7.{k}"] = f"{v:.2f}" if isinstance(v, float) else str(v)
    return out


def _compare(prefix: str, d: dict) -> dict[str, str]:
    out: dict[str, str] = {}
    rows = [dict(r, name=n) for n, r in d["rows"].items()]
    _rows(prefix, rows, out)
    spreads = [r["cer_std"] for r in rows if "cer_std" in r]
    if spreads:
        out[f"{prefix}.max_std"] = num(max(spreads))
    for r in rows:
        for seed, c in (r.get("seeds") or {}).items():
            if isinstance(c, dict) and "cer" in c:
                out[f"{prefix}.{row_key(r['name'])}.seed.{seed}"] = num(c["cer"])
    for x in d.get("differences") or []:
        other = f"{prefix}.{row_key(x['row'])}.vs.{row_key(x['baseline'])}"
        _difference(out, other, x["cer"], x.get("verdict"), x.get("p_holm"))
    return out


def _kinds(d: dict) -> dict[str, str]:
    out = {}
    for name, r in d["rows"].items():
        k = row_key(name)
        out[f"kinds.{k}.cer"] = num(r["cer"])
        out[f"kinds.{k}.length"] = f"{100 * r['length_change']:+.0f}%".replace("-", MINUS)
        out[f"kinds.{k}.shorter"] = f"{-100 * r['length_change']:.0f}%"
    return out


def _units(d: dict) -> dict[str, str]:
    out = {"units.k": str(d["settings"]["k"]), "units.eval_frames": str(d["settings"]["eval_frames"]),
           "units.train_frames": str(d["settings"]["train_frames"]), "units.rows": str(len(d["rows"]))}
    for r in d["rows"]:
        key = f"units.{r['kind']}.{r['M']}" + (f".a{r['alpha']:g}" if r["kind"] == "rpq" else "")
        for field, v in r.items():
            if isinstance(v, float) and field not in ("alpha",):
                out[f"{key}.{field}"] = f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    rpq = [r for r in d["rows"] if r["kind"] == "rpq"]
    wide = [r for r in rpq if r["alpha"] >= 0.5]
    if wide:
        out["units.rpq.pnmi_range_a>=0.5"] = f"{min(r['pnmi'] for r in wide):.2f} to {max(r['pnmi'] for r in wide):.2f}"
        out["units.rpq.nmse_range_a>=0.5"] = f"{min(r['nmse'] for r in wide):.2f} to {max(r['nmse'] for r in wide):.2f}"
    kmeans = next((r for r in d["rows"] if r["kind"] == "kmeans"), None)
    if wide and kmeans:  # the smallest M from which every RPQ row with α >= 0.5 rebuilds frames better than k-means
        ms = sorted({r["M"] for r in wide})
        better = [m for m in ms if all(r["nmse"] < kmeans["nmse"] for r in wide if r["M"] >= m)]
        if better:
            out["units.rpq.beats_kmeans_from_m_a>=0.5"] = str(better[0])
    for m in sorted({r["M"] for r in rpq}):
        at = [r for r in rpq if r["M"] == m]
        out[f"units.rpq.{m}.best_alpha"] = f"{min(at, key=lambda r: r['nmse'])['alpha']:g}"
        for r in at:
            out[f"units.rpq.{m}.a{r['alpha']:g}.rho_theory"] = f"{r['alpha'] / (2 - r['alpha']):.3f}"
    ratios = [r for r in rpq if r.get("ratio_theory_coverage") is not None]
    if ratios:
        out["units.rpq.coverage_fits"] = str(len(ratios))
        out["units.rpq.coverage_max_error"] = f"{max(abs(r['ratio_measured'] - r['ratio_theory_coverage']) for r in ratios):.3f}"
        below = [r for r in rpq if r["alpha"] < 1]
        factors = [r["ratio_measured"] / r["ratio_theory"] for r in below if r["ratio_theory"]]
        out["units.rpq.theory_factor_range"] = f"{min(factors):.1f} to {max(factors):.0f}"
    return out


def _ml_probes(d: dict) -> dict[str, str]:
    from .significance import seed_difference

    out = {}
    models = d["models"]
    groups: dict[str, list[str]] = {}
    for name in models:
        group = re.sub(r"_seed\d+", "", name).split("@")[0]
        groups.setdefault(group, []).append(name)
        groups.setdefault(name, [name])
    for name, m in models.items():
        for task, c in m["tasks"].items():
            out[f"mlprobe.{name}.{task}"] = pm(c["test"], c["test_std"]) if c.get("seed_tests") else num(c["test"])
    for a, members_a in groups.items():
        for b, members_b in groups.items():
            if a == b:
                continue
            for task in d["tasks"]:
                xa = [v for n in members_a for v in (models[n]["tasks"].get(task, {}).get("seed_tests") or [])]
                xb = [v for n in members_b for v in (models[n]["tasks"].get(task, {}).get("seed_tests") or [])]
                if len(xa) > 1 and len(xb) > 1:
                    _difference(out, f"mlprobe.vs.{a}.{b}.{task}", seed_difference(xb, xa, paired=False))
    return out


def _quality(prefix: str, d: dict) -> dict[str, str]:
    out = {}
    for task, h in d["tasks"].items():
        key = f"{prefix}.{task}"
        for b, v in h["baselines"].items():
            out[f"{key}.{b}"] = pm(v["error"], v["std"])
        f = h["first_beyond_noise"]
        if f:
            out[f"{key}.first_step"] = str(f["step"])
            if "minutes" in f:
                out[f"{key}.first_minutes"] = f"{f['minutes']:.1f}"
        for c in h["curve"]:
            out[f"{key}.at.{c['step']}"] = pm(c["error"], c["std"])
            out[f"{key}.margin.{c['step']}"] = num(abs(c["margin"]))
            if "minutes" in c:
                out[f"{key}.minutes.{c['step']}"] = f"{c['minutes']:.1f}"
        last = h["curve"][-1]
        out[f"{key}.final"] = num(last["error"])
    return out


def slug(name: str) -> str:
    """``"codebooks 4x1024"`` -> ``codebooks-4x1024``: a name with spaces as a key."""
    return re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-")


def _sweep(d: dict) -> dict[str, str]:
    out = {}
    for n, s in d["scores"].items():
        out[f"sweep.{slug(n)}"] = num(s["per"])
        out[f"sweep.{slug(n)}.pm"] = pm(s["per"], s["std"])
    for n, p in d["points"].items():
        out[f"sweep.{slug(n)}.steps"] = str(p["max_steps"])
        out[f"sweep.{slug(n)}.masked"] = f"{100 * p['masked_fraction']:.0f}%"
    base = d["scores"].get("fbank")
    if base:
        for n, s in d["scores"].items():
            out[f"sweep.{slug(n)}.margin"] = num(base["per"] - s["per"])
    return out


def _phases(d: dict) -> dict[str, str]:
    from ..phases import minutes

    out = {"phases.total": minutes(d["total_seconds"]), "phases.total_min": f"{d['total_seconds'] / 60:.0f}"}
    for key, pattern in PHASES.items():
        hits = [p for p in d["phases"] if re.search(pattern, p["name"])]
        if len(hits) == 1:
            out[f"phases.{key}"] = minutes(hits[0]["seconds"])
    if d.get("install_seconds") is not None:
        out["phases.install"] = minutes(d["install_seconds"])
        out["phases.with_install_min"] = f"{(d['total_seconds'] + d['install_seconds']) / 60:.0f}"
    if d.get("second_run_seconds") is not None:
        out["phases.second_run"] = minutes(d["second_run_seconds"])
    return out


def _passes(d: dict) -> dict[str, str]:
    """``passes.*`` (``bench_passes.json``): the per-process throughput lost when two single-thread processes share the
    machine, against one alone, per pass and as a range."""
    out, drops = {}, []
    for name in dict.fromkeys(r["pass"] for r in d["rows"]):
        rows = {(r["processes"], r["threads"]): r for r in d["rows"] if r["pass"] == name}
        if (1, 1) in rows and (2, 1) in rows:
            drop = 100 * (1 - rows[(2, 1)]["frames_per_s_per_process"] / rows[(1, 1)]["frames_per_s_per_process"])
            out[f"passes.{slug(name)}.drop"] = f"{drop:.0f}%"
            drops.append(drop)
    if drops:
        out["passes.drop_range"] = f"{min(drops):.0f}-{max(drops):.0f}%"
    return out


def _real_speech(d: dict) -> dict[str, str]:
    """``real.TASK.SYSTEM`` (``real_speech.json``): ``"mean ± std"``, ``.mean``; ``real.TASK.A-B``: the paired difference
    with its interval (``.d``, ``.abs``, ``.ci``, ``.verdict``, ``.p``: Holm's), SYSTEM, A and B one of ``real``,
    ``synth``, ``random-init``, ``fbank``."""
    out = {}
    for task, row in d["scores"].items():
        for system, s in row.items():
            out[f"real.{task}.{system}"] = pm(s["mean"], s["std"])
            out[f"real.{task}.{system}.mean"] = num(s["mean"])
    for task, row in d["comparisons"].items():
        for c in row.values():
            if c["vs"]:
                v = c["vs"]
                _difference(out, f"real.{task}.{c['a']}-{c['b']}", {"difference": v["mean"], "ci": v["ci95"]}, v["verdict"], v.get("p_holm"))
    return out


REFERENCE = "assets/reference/tiny_bestrq"  # beside docs/: the shipped checkpoint and its training log


def _reference(root: Path) -> dict[str, str]:
    """``ref.*``: the shipped reference checkpoint's last training record (its ``metrics.jsonl.gz``) and files."""
    import gzip

    folder = root / REFERENCE
    log, ckpt = folder / "metrics.jsonl.gz", folder / "checkpoints" / "step_00004000"
    if not log.exists():
        return {}
    with gzip.open(log, "rt") as f:
        last = [json.loads(line) for line in f if line.strip()][-1]
    meta = json.loads((ckpt / "meta.json").read_text())
    size = meta["config"]["quantizer"]["codebook_size"]
    used = last["usage_run.used"]
    return {"ref.step": str(last["step"]), "ref.loss": f"{last['loss']:.3f}", "ref.acc": f"{last['acc']:.3f}",
            "ref.chance": f"{1 / size:.5f}", "ref.used": f"{100 * min(used):.0f}-{100 * max(used):.0f}%",
            "ref.mb": f"{(ckpt / 'model.safetensors').stat().st_size / 1e6:.1f}"}


DOCS = Path(__file__).resolve().parents[3] / "docs"  # the repository's docs/, where the studies' JSON is shipped
# studies registered before they have run (their JSON is shipped once a queued run has made it): each is a source, and
# has a results page among results_pages.PAGES, only once its JSON is in DOCS (until then `make docs` writes a page
# saying it has not run yet)
PENDING = {"real_speech.json"}


def shipped(name: str) -> bool:
    """Whether the JSON ``name`` of docs/ counts as shipped: every JSON but a :data:`PENDING` one not made yet."""
    return name not in PENDING or (DOCS / name).exists()


# JSON in docs/ -> what it gives
SOURCES: dict[str, Callable[[dict], dict[str, str]]] = {
    "latent_study.json": _latent,
    "rpq_tables_mel.json": lambda d: _tables("mel", d),
    "ml_tables.json": lambda d: _tables("ml", d),
    "asr_compare_seeds_tiny_bestrq.json": lambda d: _compare("narrow", d),
    "asr_compare_tiny_bestrq.json": lambda d: _compare("narrow1", d),
    "asr_input_kinds_tiny_bestrq.json": _kinds,
    "units_report_tiny_bestrq.json": _units,
    "ml_probes.json": _ml_probes,
    "quality_tiny_4x1024.json": lambda d: _quality("quality4x1024", d),
    "quality_tiny_bestrq.json": lambda d: _quality("qualityref", d),
    "sweep_tiny.json": _sweep,
    "demo_phases.json": _phases,
    "bench_passes.json": _passes,
    "real_speech.json": _real_speech,
}
SOURCES = {name: make for name, make in SOURCES.items() if shipped(name)}


# JSON in docs/ -> the name of its validator in speechrq.formats (the one its results page uses; a test holds them equal)
CHECKS = {"latent_study.json": "latent_study", "rpq_tables_mel.json": "rpq_tables", "ml_tables.json": "rpq_tables",
          "asr_compare_seeds_tiny_bestrq.json": "compare_page", "asr_compare_tiny_bestrq.json": "compare_page",
          "asr_input_kinds_tiny_bestrq.json": "input_kinds", "units_report_tiny_bestrq.json": "units_report",
          "ml_probes.json": "eval_results", "quality_tiny_4x1024.json": "quality", "quality_tiny_bestrq.json": "quality",
          "sweep_tiny.json": "sweep", "demo_phases.json": "demo_phases", "bench_passes.json": "bench_passes",
          "real_speech.json": "real_speech"}
CHECKS = {name: check for name, check in CHECKS.items() if shipped(name)}


def _load(docs: Path, name: str) -> dict:
    """A JSON of ``docs``, checked by the validator its results page uses (a hand-edited number is one line)."""
    from .. import formats
    from ..schema import load

    return load(docs / name, getattr(formats, CHECKS[name]))


_CACHE: dict[tuple, dict[str, str]] = {}


def numbers(docs: str | Path) -> dict[str, str]:
    """Every key of every source, computed from the JSON in ``docs`` (cached per file contents)."""
    docs = Path(docs)
    stamp = tuple((n, (docs / n).stat().st_mtime_ns, (docs / n).stat().st_size) for n in SOURCES if (docs / n).exists())
    cache_key = (str(docs.resolve()), stamp)
    if cache_key not in _CACHE:
        out: dict[str, str] = {}
        for name, make in SOURCES.items():
            if (docs / name).exists():
                out.update(make(_load(docs, name)))
        out.update(_reference(docs.resolve().parent))
        _CACHE.clear()
        _CACHE[cache_key] = out
    return _CACHE[cache_key]


def value(key: str, docs: str | Path) -> str:
    """One key's text; an unknown key is a :class:`~speechrq.errors.SpeechrqError` naming it and its nearest keys."""
    if key == "headline":
        from .headline import format_headline, headline_rows

        return format_headline(headline_rows(docs))
    found = numbers(docs)
    if key not in found and (m := re.fullmatch(r"(.+)\.minus\.(.+)", key)) and all(f"{k}.cer" in found for k in m.groups()):
        # the CER of one row minus another's (of the same or another source), signed
        a, b = (float(found[f"{k}.cer"].replace(MINUS, "-")) for k in m.groups())
        return sgn(a - b)
    if key not in found:
        from difflib import get_close_matches

        from ..errors import SpeechrqError

        near = get_close_matches(key, list(found), n=3, cutoff=0.6)
        raise SpeechrqError(f"unknown number {key!r} in the documentation's prose" + (f" (did you mean {', '.join(near)}?)" if near else
                                                                                      f": no such key in the JSON of {docs}"))
    return found[key]


def fill(text: str, docs: str | Path) -> str:
    """``{{ KEY }}`` placeholders replaced by their values (the documentation pages, at build time)."""
    return PLACEHOLDER.sub(lambda m: value(m.group(1), docs), text)


def refresh(text: str, docs: str | Path) -> str:
    """``<!--n:KEY-->VALUE<!--/n-->`` spans with VALUE rewritten to the key's current value (the README)."""
    return README_NUMBER.sub(lambda m: f"<!--n:{m.group(1)}-->{value(m.group(1), docs)}<!--/n-->", text)


def stale(text: str, docs: str | Path) -> list[tuple[str, str, str]]:
    """``(key, written, current)`` for every README span whose value is not the key's current one."""
    return [(m.group(1), m.group(2), v) for m in README_NUMBER.finditer(text) if (v := value(m.group(1), docs)) != m.group(2)]
