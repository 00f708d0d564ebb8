"""The headline: each paper's central claims, measured here, in one table a speech researcher reads correctly.

Each row (the README's table and the top of ``DEMO/report.md``) gives:

- the **arm the paper proposes** (Latent-RQ: the paper's design, middle layers of θ refreshed at 20/50/80% of the
  budget; RPQ: M = 32, α = 0.125), never an ablation, and
- the **strongest baseline the paper names** (BEST-RQ; for RPQ the k-means row with the lowest *dev* CER among raw,
  de-duplicated and de-dup + BPE units), with the paper's own baseline beside it when it is another row;
- the metric and its direction (↓ lower is better, ↑ higher), the absolute change with its 95% interval and the
  relative change;
- the **data** it was measured on (synthetic speech, named as such);
- the verdict after the table's family rule (:mod:`speechrq.studies.significance`);
- one row per setting a claim was measured in (log-Mel, multilingual log-Mel, a narrow encoder layer), each with
  its own verdict, never only the best.
"""

from __future__ import annotations

from pathlib import Path

from .verdicts import seeded

DEMO_DATA = "synthetic English (espeak-ng, 32 voices, 1 h)"
ML_DATA = "synthetic, 6 languages (espeak-ng, 48 voices, 3 h)"
# source JSON -> (setting, data)
SETTINGS = {
    "rpq_tables_mel.json": ("320-d stacked log-Mel", DEMO_DATA),
    "ml_tables.json": ("320-d stacked log-Mel, 6 languages", ML_DATA),
    "asr_compare_seeds_tiny_bestrq.json": ("layer 2 of the tiny BEST-RQ reference (narrow)", DEMO_DATA),
}
PAPER_OPERATING_POINT = (32, 0.125)


def _delta_text(delta: float, ci: list[float] | None, base: float, d: dict | None = None) -> tuple[str, str]:
    """``(change [interval]; Holm p over N comparisons, relative change)`` of a difference ``d`` with its family: an
    interval that excludes zero with a Holm p above 0.05 is within noise once the table's other comparisons are counted.
    A table made before issue 35 (bootstrap intervals, each judged alone) says so."""
    interval = f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else " (one seed: no interval)"
    d = d or {}
    if d.get("p_holm") is not None and d.get("family"):
        p = f"; Holm p {d['p_holm']:.3f} over {d['family']['size']} comparisons"
    elif ci and "p" not in (d.get("cer") or d):
        p = "; bootstrap, judged alone (made before issue 35)"
    else:
        p = ""
    return f"{delta:+.2f}{interval}{p}", f"{100 * delta / base:+.1f}%" if base else "-"


def latent_rows(study: dict) -> list[dict]:
    """The paper's design against BEST-RQ at equal steps (PR, SID), and the strong-θ pair (the reference continued)."""
    rows = []
    from .latent_study import PAPER_ARM

    arm, pairs = study["paper_arm"], []
    if arm:
        # the arm's name says "paper's design" where it is; an older study's arm was the schedule on other layers
        what = "" if PAPER_ARM in arm else "; an ablation: the paper's schedule on the ranked-best layers, not its middle layers"
        pairs.append((arm, "BEST-RQ", f"Latent-RQ ({arm}{what}) beats BEST-RQ at {study['steps']} steps"))
    strong = next((a for a in study["arms"] if a.startswith("reference") and "Latent-RQ" in a), None)
    if strong:
        more = f" for {study['reference_steps']} steps" if study.get("reference_steps") else ""  # older studies: not recorded
        pairs.append((strong, study["base"][strong], f"with a strong θ (the 4000-step reference continued{more}), Latent-RQ "
                      "targets beat Mel targets"))
    for arm, base, claim in pairs:
        for task, metric in (("pr", "PER ↓ (phone probe; the paper reports ASR WER)"), ("sid", "SID accuracy ↑")):
            cell, ref = study["arms"].get(arm, {}).get(task), study["arms"].get(base, {}).get(task)
            if not cell or not ref or not cell.get("vs_base"):
                continue
            v = cell["vs_base"]  # improvement, positive = better: in the metric's own units, a change
            sign = -1.0 if task == "pr" else 1.0
            delta, ci = sign * v["mean"], sorted(sign * x for x in v["ci95"]) if v.get("ci95") else None
            change, rel = _delta_text(delta, ci, ref["mean"], v)
            rows.append({"paper": "Latent-RQ", "claim": claim, "metric": metric, "data": DEMO_DATA + f"; {len(study['seeds'])} "
                         "pre-training seeds", "measured": f"{cell['mean']:.2f} ± {cell['std']:.2f} against {base} "
                         f"{ref['mean']:.2f} ± {ref['std']:.2f}", "change": change, "relative": rel, "verdict": seeded(v)})
    return rows


def _strongest(baselines: list[dict]) -> tuple[dict, str]:
    """The k-means row with the lowest dev CER (the test CER of tables made before dev was decoded, said so)."""
    if all("cer_dev" in b for b in baselines):
        return min(baselines, key=lambda b: b["cer_dev"]), "lowest dev CER"
    return min(baselines, key=lambda b: b["cer"]), "lowest test CER: chosen on test, a table made before issue 35"


def rpq_rows(tables: dict, source: str) -> list[dict]:
    """RPQ at the paper's operating point (and PQ at the largest M) against the strongest k-means row, from an
    ``asr tables`` JSON; the paper's baseline beside it."""
    setting, data = SETTINGS.get(source, (source, "see its page"))
    k_rows = {r["name"]: r for r in tables["table1"]}
    baselines = [k_rows[b] | {"index": i} for i, b in enumerate(tables["baselines"]) if b in k_rows]
    if not baselines:
        return []
    best, why = _strongest(baselines)
    paper_base = next((b for b in baselines if "paper's baseline" in b["name"]), None)
    top_m = max((r["M"] for r in tables["table2"] if r["kind"] == "rpq"), default=None)
    arms = [r for r in tables["table2"] if r["kind"] == "rpq" and (r["M"], r["alpha"]) == PAPER_OPERATING_POINT]
    arms = arms or [r for r in tables["table2"] if r["kind"] == "rpq" and r["M"] == top_m]
    pq_m = max((r["M"] for r in tables["table2"] if r["kind"] == "pq"), default=None)
    arms += [r for r in tables["table2"] if r["kind"] == "pq" and r["M"] == pq_m]
    rows = []
    for arm in arms:
        d = arm["differences"][best["index"]]
        change, rel = _delta_text(d["cer"]["difference"], d["cer"].get("ci"), best["cer"], d)
        beside = ""
        if paper_base is not None and paper_base is not best:
            p = arm["differences"][paper_base["index"]]
            c = p["cer"]
            beside = (f"; against the paper's baseline (de-dup + unit BPE) {paper_base['cer']:.2f}: {c['difference']:+.2f}"
                      + (f" [{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}]" if c.get("ci") else "") + f", {seeded(p)}")
        label = "RPQ" if arm["kind"] == "rpq" else "PQ"
        rows.append({"paper": "RPQ", "claim": f"{arm['name']} units beat k-means units for ASR ({setting})", "metric": "CER ↓",
                     "data": data + f"; {len(tables['training_seeds'])} seeds", "measured": f"{label} {arm['cer']:.2f} ± "
                     f"{arm['cer_std']:.2f} against {best['name']} {best['cer']:.2f} ± {best['cer_std']:.2f} (strongest: {why})"
                     + beside, "change": change, "relative": rel, "verdict": seeded(d)})
    for kind, label in (("rpq", "RPQ"), ("pq", "PQ")):  # Table II's second claim: more streams help
        top = max((r for r in tables["table2"] if r["kind"] == kind and r.get("against_smallest_M")), key=lambda r: r["M"], default=None)
        if top is None:
            continue
        d = top["against_smallest_M"]
        small = next(r for r in tables["table2"] if r["name"] == d["against"])
        change, rel = _delta_text(d["cer"]["difference"], d["cer"].get("ci"), small["cer"], d)
        rows.append({"paper": "RPQ", "claim": f"{label} gets better as M grows ({setting})", "metric": "CER ↓",
                     "data": data + f"; {len(tables['training_seeds'])} seeds", "measured": f"{top['name']} {top['cer']:.2f} ± "
                     f"{top['cer_std']:.2f} against {small['name']} {small['cer']:.2f} ± {small['cer_std']:.2f}",
                     "change": change, "relative": rel, "verdict": seeded(d)})
    return rows


def compare_rows(report: dict, source: str) -> list[dict]:
    """The same claim from an ``asr compare`` JSON (a narrow layer): each RPQ row against the strongest k-means row."""
    setting, data = SETTINGS.get(source, (source, "see its page"))
    diffs = report.get("differences") or []
    names = list(dict.fromkeys(d["baseline"] for d in diffs))
    if not names:
        return []
    best, why = _strongest([report["rows"][n] | {"name": n} for n in names])
    rows = []
    for d in (d for d in diffs if d["baseline"] == best["name"] and d["row"].startswith("RPQ")):
        change, rel = _delta_text(d["cer"]["difference"], d["cer"].get("ci"), best["cer"], d)
        arm = report["rows"][d["row"]]
        rows.append({"paper": "RPQ", "claim": f"{d['row']} units beat k-means units for ASR ({setting})", "metric": "CER ↓",
                     "data": data + f"; {len(report.get('training_seeds', [0]))} seeds", "measured": f"RPQ {arm['cer']:.2f} ± "
                     f"{arm.get('cer_std', 0):.2f} against {best['name']} {best['cer']:.2f} ± {best.get('cer_std', 0):.2f} "
                     f"(strongest: {why})", "change": change, "relative": rel, "verdict": seeded(d)})
    return rows


def headline_rows(docs: str | Path) -> list[dict]:
    """Every headline row from the shipped JSON in ``docs`` (each checked by its schema)."""
    from .. import formats
    from ..schema import load

    docs = Path(docs)
    rows = latent_rows(load(docs / "latent_study.json", formats.latent_study))
    for name in ("rpq_tables_mel.json", "ml_tables.json"):
        if (docs / name).exists():
            rows += rpq_rows(load(docs / name, formats.rpq_tables), name)
    name = "asr_compare_seeds_tiny_bestrq.json"
    if (docs / name).exists():
        rows += compare_rows(load(docs / name, formats.compare_page), name)
    return rows


def format_headline(rows: list[dict]) -> str:
    """The markdown table of :func:`headline_rows`."""
    lines = ["| paper | claim | metric | data | measured here | change [95% interval] | relative | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['paper']} | {r['claim']} | {r['metric']} | {r['data']} | {r['measured']} | {r['change']} | {r['relative']} | "
              f"**{r['verdict']}** |" for r in rows]
    return "\n".join(lines)
