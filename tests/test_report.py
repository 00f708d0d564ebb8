"""``speechrq report`` and the other readers of speechrq's result JSON: every claim row against the shipped JSON, and a
hand-edited JSON (a number as a string, a key removed, a list where an object was) answered in one line naming the file
and the key, exit 2 (speechrq.schema, speechrq.formats)."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path

import pytest
from pytest import approx
from scipy import stats

from speechrq.cli import main
from speechrq.studies.report import demo_report

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
REPORT_SOURCES = ["latent_study.json", "rpq_tables_mel.json", "asr_compare_tiny_bestrq.json", "asr_compare_seeds_tiny_bestrq.json",
                  "units_report_tiny_bestrq.json", "asr_input_kinds_tiny_bestrq.json"]
LOWER_IS_BETTER = {"pr", "ft"}  # the study's error rates; its accuracies (sid, er) are higher-is-better
# a difference's verdict (after its table's family rule) as the claim's
CLAIM = {"better": "held", "worse": "against", "within noise": "not at this scale (within noise)",
         "one seed: no verdict": "not established (no noise estimate): one training seed"}


def load(name: str) -> dict:
    return json.loads((DOCS / name).read_text())


def report_rows(text: str) -> dict[tuple[str, str], list[str]]:
    """The report's claims table (after "## Every claim", when the report has a headline) as
    ``{(claim, source): [paper, claim, number, noise, verdict, source]}``."""
    rows = {}
    for line in text.split("## Every claim", 1)[-1].splitlines():
        if line.startswith("| ") and not line.startswith("| paper |"):
            cells = [c.strip() for c in line.strip()[1:-1].split("|")]
            assert len(cells) == 6, line
            assert (cells[1], cells[5]) not in rows, cells[1]
            rows[cells[1], cells[5]] = cells
    return rows


def interval(mean: float, lo: float, hi: float, n: int, holm: tuple[float, int] | None = None) -> str:
    """The noise cell of a seeded difference; ``holm``: its Holm-adjusted p and the size of its family."""
    family = f"; Holm p {holm[0]:.3f} in a family of {holm[1]}" if holm else ""
    return f"{mean:+.2f} [{lo:+.2f}, {hi:+.2f}] (95% paired t, {n} seeds{family})"


def t_interval(d: list[float]) -> tuple[float, float, float, float]:
    """Mean of the per-seed differences ``d``, its 95% t-interval on n − 1 degrees of freedom and two-sided p."""
    n = len(d)
    mean, se = statistics.fmean(d), statistics.stdev(d) / math.sqrt(n)
    half = float(stats.t.ppf(0.975, n - 1)) * se
    return mean, mean - half, mean + half, float(2 * stats.t.sf(abs(mean) / se, n - 1))


def paired(arm: dict, base: dict, lower_is_better: bool = True) -> tuple[float, float, float, float]:
    """Improvement of ``arm`` over ``base`` (positive: better), paired by seed: mean, 95% t-interval and p."""
    sign = -1.0 if lower_is_better else 1.0
    return t_interval([sign * (arm[s] - base[s]) for s in sorted(set(arm) & set(base), key=int)])


def holm(ps: list[float]) -> list[float]:
    """Holm-adjusted p-values: the k-th smallest times (m − k + 1), made monotone, capped at 1."""
    out, running = [0.0] * len(ps), 0.0
    for rank, i in enumerate(sorted(range(len(ps)), key=ps.__getitem__)):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        out[i] = running
    return out


def decide(improvement: float, p: float) -> str:
    """A difference's verdict at a family-wise 5%: ``improvement`` > 0 is the paper's direction."""
    return "within noise" if p > 0.05 else "better" if improvement > 0 else "worse"


def ci(c: dict) -> str:
    return f"{c['difference']:+.2f} [{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}]"


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> dict[tuple[str, str], list[str]]:
    demo = tmp_path_factory.mktemp("demo")  # a demo folder without outputs: the shipped JSONs give their rows
    return report_rows(demo_report(demo, DOCS))


def test_the_study_json_intervals_and_holm_verdicts_follow_from_its_seeds():
    """Every ``vs_base`` of docs/latent_study.json: the paired t-interval over seeds, and Holm over its table (the arms
    against their base; the stage gains), recomputed here."""
    s = load("latent_study.json")
    cells = [(name, task, c) for name, arm in s["arms"].items() for task, c in arm.items() if c and c.get("vs_base")]
    ps = []
    for name, task, c in cells:
        mean, lo, hi, p = paired(c["per_seed"], s["arms"][s["base"][name]][task]["per_seed"], task in LOWER_IS_BETTER)
        v = c["vs_base"]
        assert [v["mean"], *v["ci95"], v["p"]] == approx([mean, lo, hi, p], rel=1e-6), (name, task)
        assert v["n"] == len(c["per_seed"]) and c["mean"] == approx(statistics.fmean(c["per_seed"].values()))
        ps.append(p)
    for (name, task, c), p in zip(cells, holm(ps)):
        v = c["vs_base"]
        assert (v["p_holm"], v["family"]["size"], v["verdict"]) == (approx(p, rel=1e-6), len(cells), decide(v["mean"], p)), (name, task)
    gains = s["stage_gains"]
    # the last stage end is the paper arm's PR against BEST-RQ: that very comparison of the arms table, one verdict;
    # the earlier stage ends are a family of their own
    budget = str(s["steps"])
    assert gains[budget]["vs_base"] == s["arms"][s["paper_arm"]]["pr"]["vs_base"]
    earlier = {e: g for e, g in gains.items() if e != budget}
    found = {e: t_interval([g["per_seed"][k] for k in sorted(g["per_seed"], key=int)]) for e, g in earlier.items()}
    for (e, (mean, lo, hi, p)), adjusted in zip(found.items(), holm([f[3] for f in found.values()])):
        v = gains[e]["vs_base"]
        assert [gains[e]["mean"], v["mean"], *v["ci95"], v["p"], v["p_holm"]] == approx([mean, mean, lo, hi, p, adjusted], rel=1e-6), e
        assert gains[e]["std"] == approx(statistics.stdev(gains[e]["per_seed"].values()))
        assert (v["family"]["size"], v["verdict"]) == (len(earlier), decide(mean, adjusted)), e
    assert gains[budget]["mean"] == approx(statistics.fmean(gains[budget]["per_seed"].values()))


def test_latent_rows_every_cell(rows):
    s = load("latent_study.json")
    src = "docs/latent_study.json"
    base = s["arms"]["BEST-RQ"]
    seen = set()
    # the paper's design is the claim's arm; the ranked-best layers (one branch at 50%) a second set of rows, named as an ablation
    # a study made before the paper's design (middle layers) was an arm: its schedule arm is named an ablation too
    paper_label = "" if "paper's design" in s["paper_arm"] else ", ablation: the paper's schedule on the ranked-best layers"
    for arm, label in ((s["paper_arm"], paper_label), (s["best_arm"], ", ablation: ranked-best layers, one branch at 50%")):
        for task, what in (("pr", "Latent-RQ beats BEST-RQ on phone recognition (PER ↓; the paper reports ASR WER) at equal steps"),
                           ("sid", "Latent-RQ beats BEST-RQ on SID (accuracy ↑) at equal steps")):
            claim = what + label
            cell, b = s["arms"][arm][task], base[task]
            v = cell["vs_base"]  # checked against the seeds and Holm above
            assert rows[claim, src] == ["Latent-RQ", claim, f"{arm}: {cell['mean']:.2f} ± {cell['std']:.2f} against BEST-RQ "
                                        f"{b['mean']:.2f} ± {b['std']:.2f}",
                                        interval(v["mean"], *v["ci95"], v["n"], (v["p_holm"], v["family"]["size"])),
                                        f"**{CLAIM[v['verdict']]}**", src]
            seen.add((claim, src))
    gains = s["stage_gains"]
    ends = sorted(gains, key=int)
    claim = f"gains over BEST-RQ grow with the stages, then saturate (PR, {s['paper_arm']})"
    first, last = gains[ends[0]], gains[ends[-1]]
    # the last stage's verdict after Holm over the stages: held when it is better and grew from the first; against when worse
    final = last["vs_base"]["verdict"]
    held = final == "better" and last["mean"] > first["mean"]
    assert rows[claim, src + " (stage_gains)"] == ["Latent-RQ", claim, "PR gain at each stage end, " + "; ".join(
        f"step {e}: {gains[e]['mean']:+.2f} ± {gains[e]['std']:.2f}" for e in ends),
        "; ".join(interval(g["mean"], *g["ci95"], g["n"], (g["p_holm"], g["family"]["size"])) for g in (gains[e]["vs_base"] for e in ends)),
        "**held**" if held else "**against**" if final == "worse" else "**not at this scale (within noise)**",
        src + " (stage_gains)"]
    seen.add((claim, src + " (stage_gains)"))
    claim = "middle layers of θ make the best targets (Table 2)"
    best = s["arms"][s["best_arm"]]["pr"]
    if middle := next((a for n, a in s["arms"].items() if "(middle" in n), None):
        # the middle layers against the ranked-best ones, one branch each, paired by seed: a comparison on its own
        mean, lo, hi, p = paired(middle["pr"]["per_seed"], best["per_seed"])
        middle = middle["pr"]
        assert rows[claim, src] == ["Latent-RQ", claim, f"PR with middle layers {s['middle_layers']}: {middle['mean']:.2f} ± "
                                    f"{middle['std']:.2f}; with {s['best_layers']}: {best['mean']:.2f} ± {best['std']:.2f}",
                                    interval(mean, lo, hi, len(set(middle["per_seed"]) & set(best["per_seed"]))),
                                    f"**{CLAIM[decide(mean, p)]}**", src]
    else:
        # the middle layers run only in the paper's design (another schedule): shown, not judged
        design = s["arms"][s["paper_arm"]]["pr"]
        assert rows[claim, src] == ["Latent-RQ", claim, f"not compared at one schedule: PR {design['mean']:.2f} ± {design['std']:.2f} "
                                    f"for {s['paper_arm']}, {best['mean']:.2f} ± {best['std']:.2f} for {s['best_arm']} (the arms "
                                    "differ in layers and schedule)", "-", "**not measured**", src]
    seen.add((claim, src))
    claim = "Latent-RQ reaches BEST-RQ's quality in fewer steps (section 4.2)"
    per = s["convergence"]["per_seed"]
    for p_ in per.values():  # the first probed step at or below BEST-RQ's final PR of that seed
        assert p_["step"] == min((int(k) for k, x in p_["points"].items() if x <= p_["base_final"]), default=None)
    reached = [p_["step"] for p_ in per.values()]
    v = ("held" if all(r is not None and r < s["steps"] for r in reached) else "against" if all(r is None for r in reached)
         else "not at this scale (within noise)")
    assert rows[claim, src + " (convergence)"] == [
        "Latent-RQ", claim, f"steps to BEST-RQ's PR at {s['steps']}: " + ", ".join("never" if r is None else str(r) for r in reached)
        + " (per seed; probed at " + ", ".join(sorted(next(iter(per.values()))["points"], key=int)) + ")",
        f"{len(per)} pre-training seeds", f"**{v}**", src + " (convergence)"]
    seen.add((claim, src + " (convergence)"))
    rank = s["theta_ranking"]
    seeds = [k for k in rank["Mel"] if k != "reference"]
    layers = [n for n in rank if n.startswith("layer ")]
    top = max(layers, key=lambda n: statistics.fmean(rank[n][k]["phones"] for k in seeds))
    mel = [rank["Mel"][k]["phones"] for k in seeds]
    tops = [rank[top][k]["phones"] for k in seeds]
    ref_top = max(layers, key=lambda n: rank[n]["reference"]["phones"])
    claim = "latent targets separate phones better than Mel targets (Figures 5, 6)"
    src_rank = src + " (theta_ranking; `speechrq targets rank`, same N codebooks per source)"
    mean, lo, hi, p = t_interval([t - m for t, m in zip(tops, mel)])  # best layer − Mel, paired by seed (higher is better)
    assert rows[claim, src_rank] == ["Latent-RQ", claim,
                                     f"phone 5-NN, θ at the branch step: best layer ({top}) {statistics.fmean(tops):.1f} ± "
                                     f"{statistics.stdev(tops):.1f} against Mel {statistics.fmean(mel):.1f} ± {statistics.stdev(mel):.1f}; "
                                     f"the 4000-step reference: {ref_top} {rank[ref_top]['reference']['phones']:.1f} against Mel "
                                     f"{rank['Mel']['reference']['phones']:.1f}", interval(mean, lo, hi, len(seeds)),
                                     f"**{CLAIM[decide(mean, p)]}**", src_rank]
    seen.add((claim, src_rank))
    # the demo has no probes here: its own claim is said to be missing, and no other Latent-RQ row is there
    demo = ("the demo's own stage 1 against stage 0 at equal steps (PR)", "DEMO/eval/results.json")
    assert rows[demo] == ["Latent-RQ", demo[0], "-", "-", "**not measured**", demo[1]]
    assert {k for k, r in rows.items() if r[0] == "Latent-RQ"} == seen | {demo}


def table_noise(t: dict) -> str:
    """The noise column of an ``asr tables`` JSON's claims; before issue 35 each verdict is its own bootstrap
    interval's (checked here), after it a t-interval's with Holm within each table (checked on ``p_holm``)."""
    diffs = [d for table in ("table1", "table2", "table4") for r in t[table]
             for d in [*r.get("differences", []), *(r[k] for k in ("against_smallest_k", "against_smallest_M", "against_best") if r.get(k))]]
    seeds = len(t["training_seeds"])
    if t.get("interval") or any("p" in d["cer"] for d in diffs):
        for d in diffs:
            assert d["verdict"] == decide(-d["cer"]["difference"], d["p_holm"]), d
        return f"95% t over {seeds} seeds (each its own quantizer draw) and the test utterances; {t['family_rule']}"
    for d in diffs:
        lo, hi = d["cer"]["ci"]
        assert d["verdict"] == ("better" if hi < 0 else "worse" if lo > 0 else "within noise"), d
    return (f"95% bootstrap over test utterances and {seeds} training seeds, each interval on its own (made before issue 35: one "
            "quantizer draw for every seed)")


@pytest.mark.parametrize("name,setting", [("rpq_tables_mel.json", "wide source"), ("ml_tables.json", "multilingual log-Mel")])
def test_rpq_rows_from_the_tables_every_cell(rows, name, setting):
    t = load(name)
    src = f"docs/{name}"
    where = "" if setting == "wide source" else f", {setting}"
    noise = table_noise(t)
    assert len(t["training_seeds"]) > 1  # with one seed every claim here would be "not established"
    seen = set()
    found = [r for r in t["table2"] if r["kind"] in ("pq", "rpq")]
    for i, base in enumerate(t["baselines"]):
        claim = f"PQ and RPQ units beat k-means units for ASR (Table II, {setting}; against {base})"
        vs = [r["differences"][i]["verdict"] for r in found]
        assert all(r["differences"][i]["against"] == base for r in found)
        v = CLAIM[vs[0]] if len(set(vs)) == 1 else "mixed: " + ", ".join(f"{r['name']} {x}" for r, x in zip(found, vs))
        assert rows[claim, src] == ["RPQ", claim, "; ".join(f"{r['name']} {ci(r['differences'][i]['cer'])}" for r in found), noise,
                                    f"**{v}**", src]
        seen.add((claim, src))
        point = next(r for r in found if r["kind"] == "rpq" and r["M"] == 32 and r["alpha"] == 0.125)
        d = point["differences"][i]
        claim = f"RPQ at the paper's operating point (M = 32, α = 0.125) beats k-means (Table II, {setting}; against {base})"
        assert rows[claim, src] == ["RPQ", claim, f"{point['cer']:.2f} ± {point['cer_std']:.2f}: {ci(d['cer'])} CER", noise,
                                    f"**{CLAIM[d['verdict']]}**", src]
        seen.add((claim, src))
    for kind, label in (("pq", "PQ"), ("rpq", "RPQ")):
        claim = f"{label} gets better as M grows (Table II{where})"
        grown = [r for r in t["table2"] if r["kind"] == kind and r.get("against_smallest_M")]
        if not grown:  # one M measured: no claim
            assert (claim, src) not in rows
            continue
        top = max(grown, key=lambda r: r["M"])
        assert top["M"] == max(r["M"] for r in t["table2"] if r["kind"] == kind)
        d = top["against_smallest_M"]
        assert rows[claim, src] == ["RPQ", claim, f"{top['name']} − {d['against']}: {ci(d['cer'])} CER", noise,
                                    f"**{CLAIM[d['verdict']]}**", src]
        seen.add((claim, src))
    if len(t["table4"]) > 1:
        best = next(r for r in t["table4"] if r.get("best"))
        others = [r for r in t["table4"] if not r.get("best")]
        claim = f"α = 0.125 is best for RPQ at M = {best['M']} (Table IV{where})"
        paper = next(r for r in t["table4"] if r["alpha"] == 0.125)
        v = ("held" if all(r["against_best"]["verdict"] == "worse" for r in others) else "not at this scale (within noise)") \
            if paper is best else "against" if paper["against_best"]["verdict"] == "worse" else "not at this scale (within noise)"
        chosen = "dev CER" if all("cer_dev" in r for r in t["table4"]) else "test CER: a table made before issue 35"
        assert rows[claim, src] == ["RPQ", claim, f"best α {best['alpha']:g} ({best['cer']:.2f}; chosen on {chosen}); " + ", ".join(
            f"α {r['alpha']:g} {ci(r['against_best']['cer'])}" for r in others), noise, f"**{v}**", src]
        seen.add((claim, src))
    else:  # one α measured: nothing to compare
        assert not any(k[1] == src and "(Table IV" in k[0] for k in rows)
    larger = [r for r in t["table1"] if r.get("against_smallest_k")]
    claim = f"k-means units get better as k grows to 2000 (Table I{where})"
    if larger:
        vs = {r["against_smallest_k"]["verdict"] for r in larger}
        v = CLAIM[vs.pop()] if len(vs) == 1 and "within noise" not in vs else "not at this scale (within noise)"
        assert rows[claim, src] == ["RPQ", claim, "; ".join(f"{r['input']} k = {r['k']}: {ci(r['against_smallest_k']['cer'])}"
                                                            for r in larger), noise, f"**{v}**", src]
        seen.add((claim, src))
    else:
        assert (claim, src) not in rows
    claim = f"more streams move the learning-rate peak to an earlier epoch (Table VII{where})"
    assert rows[claim, src][2:4] == ["peak epoch " + ", ".join(f"{r['name']} {r['peak_epoch']:.2f}" for r in t["table7"][:3]) + ", ...",
                                     "exact (steps counted)"]
    assert rows[claim, src][4].startswith("**does not apply here") == (len({round(r["peak_epoch"], 3) for r in t["table7"]}) == 1)
    seen.add((claim, src))
    assert {k for k in rows if k[1] == src} == seen


def test_rpq_rows_from_the_comparisons_units_and_input_kinds_every_cell(rows):
    c = load("asr_compare_tiny_bestrq.json")
    claim = "PQ and RPQ units beat k-means units for ASR (Table II; docs run)"
    km = c["rows"]["k-means (k=500)"]
    others = {k: v for k, v in c["rows"].items() if k.startswith(("PQ", "RPQ"))}
    gains = [km["cer"] - v["cer"] for v in others.values()]
    direction = "all worse here" if all(g < 0 for g in gains) else "all better here" if all(g > 0 for g in gains) else "mixed"
    src = "docs/asr_compare_tiny_bestrq.json"
    assert rows[claim, src] == ["RPQ", claim, "; ".join(f"{k} {v['cer']:.2f}" for k, v in others.items()) + f" against k-means {km['cer']:.2f} "
                                "(test CER)", "one training seed each: not measured", f"**not established (no noise estimate); {direction}**", src]
    c = load("asr_compare_seeds_tiny_bestrq.json")
    src = "docs/asr_compare_seeds_tiny_bestrq.json"
    assert len(c["training_seeds"]) > 1 and all("p" in d["cer"] for d in c["differences"])
    for d in c["differences"]:  # each verdict is Holm's over the table's comparisons, in the direction of the difference
        significant = d["p_holm"] <= 0.05
        assert d["verdict"] == ("better" if significant and d["cer"]["difference"] < 0 else "worse" if significant else "within noise"), d
        assert d["family"]["size"] == len(c["differences"])
    noise = (f"95% t over {len(c['training_seeds'])} seeds (each its own quantizer draw) and the test utterances; "
             "Holm within each table at a family-wise error of 5%")
    for base in dict.fromkeys(d["baseline"] for d in c["differences"]):
        found = [d for d in c["differences"] if d["baseline"] == base and d["row"].startswith(("PQ", "RPQ"))]
        claim = f"PQ and RPQ units beat k-means units for ASR (Table II; docs, training seeds run; against {base})"
        vs = {d["verdict"] for d in found}
        v = CLAIM[vs.pop()] if len(vs) == 1 else "mixed: " + ", ".join(f"{d['row']} {d['verdict']}" for d in found)
        assert rows[claim, src] == ["RPQ", claim, "; ".join(f"{d['row']} {c['rows'][d['row']]['cer']:.2f} ({ci(d['cer'])})" for d in found)
                                    + f" against {base} {c['rows'][base]['cer']:.2f} (test CER)",
                                    f"{noise} ({found[0]['cer']['utterances']} test utterances)", f"**{v}**", src]
    u = load("units_report_tiny_bestrq.json")["rows"]
    rpq = [r for r in u if r["kind"] == "rpq"]
    far = [r["ratio_measured"] / r["ratio_theory"] for r in rpq if r["alpha"] < 1]
    cov = [abs(r["ratio_measured"] - r["ratio_theory_coverage"]) for r in rpq if r["ratio_theory_coverage"] is not None]
    gap = max(abs(r["ratio_measured"] - r["ratio_theory"]) for r in rpq)
    claim = "eq. 13 with eq. 17 gives RPQ's error against k-means'"
    assert rows[claim, "docs/units_report_tiny_bestrq.json"][2:5] == [f"measured / predicted {min(far):.1f}x to {max(far):.1f}x for α < 1 (largest gap {gap:.3f}); eq. 13 with "
                                f"the measured ρ and coverage within {max(cov):.3f} of all {len(cov)} measured ratios",
                                "one fit per point; tolerance 0.05", f"**{'held' if gap <= 0.05 else 'against'} (eq. 17's ρ); eq. 13's "
                                f"form with the measured ρ and coverage: {'held' if max(cov) <= 0.05 else 'against'}**"]
    top = max(r["M"] for r in u)
    by_alpha = {r["alpha"]: r["nmse"] for r in rpq if r["M"] == top}
    best = min(by_alpha, key=by_alpha.get)
    claim = "a moderate α is best (Table IV: α = 0.125 at M = 32)"
    assert rows[claim, "docs/units_report_tiny_bestrq.json"][2:5] == [f"NMSE at M = {top}: " + ", ".join(f"α {a:g} {by_alpha[a]:.3f}" for a in sorted(by_alpha)),
                                "one fit per point", f"**{'held' if min(by_alpha) < best < max(by_alpha) else 'against'} (one fit per point)**"]
    k = load("asr_input_kinds_tiny_bestrq.json")["rows"]
    claim = "de-duplication and BPE shorten the input and change accuracy little (Table VI)"
    assert rows[claim, "docs/asr_input_kinds_tiny_bestrq.json"][2] == f"k-means {k['k-means']['cer']:.2f}; " + "; ".join(
        f"{n}: CER {k[n]['cer']:.2f} ({k[n]['cer'] - k['k-means']['cer']:+.2f}), length {round(100 * k[n]['length_change']):+d}%"
        for n in ("dedup", "bpe"))


def test_the_demo_rows_from_its_probes(tmp_path):
    demo = tmp_path / "demo"
    (demo / "eval").mkdir(parents=True)
    (demo / "eval" / "results.json").write_text(json.dumps({"models": {
        "stage0@1000": {"tasks": {"pr": {"test": 40.0, "test_std": 0.5}}}, "stage1@1000": {"tasks": {"pr": {"test": 38.5, "test_std": 0.25}}}}}))
    row = report_rows(demo_report(demo, tmp_path / "no-docs"))["the demo's own stage 1 against stage 0 at equal steps (PR)",
                                                               "DEMO/eval/results.json"]
    assert row[2:5] == ["stage1@1000 38.50 ± 0.25 against stage0@1000 40.00 ± 0.50", "probe seeds only: ± 0.75", "**held**"]


def test_the_headline_comes_first_one_row_per_headline_claim(tmp_path):
    from speechrq.studies.headline import headline_rows

    text = demo_report(tmp_path, DOCS)
    assert text.index("## Headline") < text.index("## Every claim")
    section = text.split("## Headline", 1)[1].split("## Every claim", 1)[0]
    cells = [[c.strip() for c in line.strip()[1:-1].split("|")] for line in section.splitlines()
             if line.startswith("| ") and not line.startswith("| paper |")]
    expected = headline_rows(DOCS)
    assert len(cells) == len(expected) > 0 and all(len(c) == 8 for c in cells)
    assert cells == [[r["paper"], r["claim"], r["metric"], r["data"], r["measured"], r["change"], r["relative"], f"**{r['verdict']}**"]
                     for r in expected]
    # the paper's arm against BEST-RQ, from the study's JSON: the change in the metric's own units (PER: lower is better)
    s = load("latent_study.json")
    for task, sign in (("pr", -1.0), ("sid", 1.0)):
        cell, base = s["arms"][s["paper_arm"]][task], s["arms"]["BEST-RQ"][task]
        v = cell["vs_base"]
        lo, hi = sorted(sign * x for x in v["ci95"])
        row = next(c for c in cells if c[4] == f"{cell['mean']:.2f} ± {cell['std']:.2f} against BEST-RQ {base['mean']:.2f} ± {base['std']:.2f}")
        assert row[5:] == [f"{sign * v['mean']:+.2f} [{lo:+.2f}, {hi:+.2f}]; Holm p {v['p_holm']:.3f} over {v['family']['size']} comparisons",
                           f"{100 * (cell['mean'] - base['mean']) / base['mean']:+.1f}%",
                           f"**{CLAIM[v['verdict']]}**"]


# --- hand-edited JSON: `speechrq report` says which file and key, in one line, exit 2

def _docs(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in REPORT_SOURCES:
        shutil.copy(DOCS / name, docs / name)
    return docs


def _edit(path: Path, change) -> None:
    d = json.loads(path.read_text())
    change(d)
    path.write_text(json.dumps(d))


def _set(keys: list, value):
    def change(d):
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return change


def _delete(keys: list):
    def change(d):
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]
    return change


BEST = "Latent-RQ layers [-1, 0] (ranked best, branch 50%)"
REPORT_EDITS = [  # (file, change, what the one line says after the file's name)
    ("latent_study.json", _set(["arms", "BEST-RQ", "pr", "mean"], "n/a"), "arms.BEST-RQ.pr.mean: expected a number, got 'n/a'"),
    ("latent_study.json", _delete(["arms", "BEST-RQ"]), "arms: missing key 'BEST-RQ'"),
    ("latent_study.json", _delete(["arms", BEST]), f"arms: missing key '{BEST}' (named by best_arm)"),
    ("latent_study.json", lambda d: d.update(arms=list(d["arms"].values())), "arms: expected an object, got a list"),
    ("latent_study.json", _set(["arms", BEST, "sid", "vs_base", "ci95"], [0.1]), f"arms.{BEST}.sid.vs_base.ci95: expected a list of 2 items, got 1"),
    ("latent_study.json", _delete(["theta_ranking", "layer 2", "1"]), "theta_ranking.layer 2: missing key '1' (a seed of Mel's)"),
    ("latent_study.json", _set(["stage_gains", "500", "std"], None), "stage_gains.500.std: expected a number, got null"),
    ("latent_study.json", _set(["convergence", "per_seed", "0", "points"], [38.8]), "convergence.per_seed.0.points: expected an object, got a list"),
    ("rpq_tables_mel.json", _set(["table2", 0, "cer"], "58.1"), "table2[0].cer: expected a number, got '58.1'"),
    ("rpq_tables_mel.json", lambda d: d["table2"][3]["differences"].pop(), "table2[3].differences: expected one per baseline (2), got 1"),
    ("rpq_tables_mel.json", lambda d: [r.pop("best", None) for r in d["table4"]], "table4: no row marked best"),
    ("rpq_tables_mel.json", _delete(["table7", 2, "peak_epoch"]), "table7[2]: missing key 'peak_epoch'"),
    ("rpq_tables_mel.json", _set(["training_seeds"], {"0": 0}), "training_seeds: expected a list, got an object"),
    ("asr_compare_tiny_bestrq.json", _set(["rows", "PQ (M=4)", "cer"], "64.08"), "rows.PQ (M=4).cer: expected a number, got '64.08'"),
    ("asr_compare_seeds_tiny_bestrq.json", _delete(["rows", "k-means (k=500)"]), "rows: missing key 'k-means (k=500)' (named by differences[0].baseline)"),
    ("asr_compare_seeds_tiny_bestrq.json", _delete(["differences", 1, "cer", "utterances"]), "differences[1].cer: missing key 'utterances'"),
    ("units_report_tiny_bestrq.json", _set(["rows", 30, "nmse"], "0.17"), "rows[30].nmse: expected a number, got '0.17'"),
    ("units_report_tiny_bestrq.json", _delete(["rows", 30, "ratio_theory"]), "rows[30]: missing key 'ratio_theory' (an RPQ row)"),
    ("asr_input_kinds_tiny_bestrq.json", _delete(["rows", "k-means"]), "rows: missing key 'k-means'"),
    ("asr_input_kinds_tiny_bestrq.json", _set(["rows", "bpe", "length_change"], "-38%"), "rows.bpe.length_change: expected a number, got '-38%'"),
]


@pytest.mark.parametrize("name,change,said", REPORT_EDITS, ids=[f"{e[0]}:{e[2][:40]}" for e in REPORT_EDITS])
def test_report_on_a_hand_edited_json_is_one_line_naming_file_and_key(tmp_path, capsys, name, change, said):
    docs = _docs(tmp_path)
    (tmp_path / "demo").mkdir()
    _edit(docs / name, change)
    assert main(["report", str(tmp_path / "demo"), "--docs", str(docs)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{docs / name}: {said}" in err, err
    assert not (tmp_path / "demo" / "report.md").exists()


def test_report_on_the_demos_own_edited_outputs(tmp_path, capsys):
    demo = tmp_path / "demo"
    (demo / "eval").mkdir(parents=True)
    (demo / "asr").mkdir()
    for files, said in (({"eval/results.json": {"models": {"stage0@1000": {"tasks": {"pr": {"test": "n/a", "test_std": 0.1}}}}}},
                         "eval/results.json: models.stage0@1000.tasks.pr.test: expected a number, got 'n/a'"),
                        ({"asr/compare.json": {"rows": [{"cer": 1.0}]}}, "asr/compare.json: rows: expected an object, got a list")):
        for f in ("eval/results.json", "asr/compare.json"):
            (demo / f).unlink(missing_ok=True)
        for f, d in files.items():
            (demo / f).write_text(json.dumps(d))
        assert main(["report", str(demo), "--docs", str(tmp_path / "no-docs")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{demo}/{said}" in err, err


# --- `speechrq asr tables` on an edited compare.json: one line, before any run is read

def _comparison(tmp_path: Path, change) -> Path:
    seed = {"cer": 50.0, "wer": 70.0, "cer_dev": 49.0, "bits_per_second": 224.0, "s_per_step": 0.2, "jobs": 1}  # dev decoded (issue 35)
    d = {"training_seeds": [0], "test_split": "dev", "rows": {"k-means (k=16)": {
        "input": "units", "quantizer": {"kind": "kmeans", "k": 16, "num_subspaces": 1}, "seeds": {"0": seed}}}}
    change(d)
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "compare.json").write_text(json.dumps(d))
    return out


@pytest.mark.parametrize("change,said", [
    (_set(["rows", "k-means (k=16)", "seeds", "0", "cer"], "n/a"), "rows.k-means (k=16).seeds.0.cer: expected a number, got 'n/a'"),
    (_delete(["rows", "k-means (k=16)", "seeds", "0", "bits_per_second"]), "rows.k-means (k=16).seeds.0: missing key 'bits_per_second'"),
    (_set(["rows", "k-means (k=16)", "quantizer"], ["kmeans", 16, 1]), "rows.k-means (k=16).quantizer: expected an object, got a list"),
    (_set(["rows", "k-means (k=16)", "quantizer", "k"], "16"), "rows.k-means (k=16).quantizer.k: expected an integer, got '16'"),
    (_delete(["test_split"]), "missing key 'test_split'"),
])
def test_asr_tables_on_a_hand_edited_comparison(tmp_path, capsys, change, said):
    out = _comparison(tmp_path, change)
    assert main(["asr", "tables", str(out), "--prefix", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out / 'compare.json'}: {said}" in err, err
    assert not (tmp_path / "t.json").exists()


def test_the_schema_names_the_path_and_what_it_got():
    from speechrq.errors import SpeechrqError
    from speechrq.schema import INT, NUMBER, REST, STRING, Each, ListOf, Maybe, check, opt

    schema = {"a": Each({"b": ListOf(NUMBER, 2)}), opt("c"): Maybe(INT), REST: STRING}
    assert check({"a": {"x": {"b": [1, 2.5]}}, "c": None, "d": "s"}, schema, "f.json")
    for value, said in (({"a": {"x": {"b": [1, "2"]}}}, "f.json: a.x.b[1]: expected a number, got '2'"),
                        ({"a": {"x": {}}}, "f.json: a.x: missing key 'b'"),
                        ({}, "f.json: missing key 'a'"),
                        ({"a": {"x": {"b": [1]}}}, "f.json: a.x.b: expected a list of 2 items, got 1"),
                        ({"a": {"x": {"b": [1, 2, 3]}}}, "f.json: a.x.b: expected a list of 2 items, got 3"),
                        ({"a": {"x": {"b": [True, 1]}}}, "f.json: a.x.b[0]: expected a number, got true"),
                        ({"a": {}, "c": 1.5}, "f.json: c: expected an integer, got 1.5"),
                        ({"a": {}, "d": 3}, "f.json: d: expected a string, got 3"),
                        ([], "f.json: expected an object, got a list")):
        with pytest.raises(SpeechrqError) as e:
            check(value, schema, "f.json")
        assert str(e.value) == said
    with pytest.raises(SpeechrqError, match=r"f.json: s.x: expected a whole number as the key"):
        check({"s": {"x": 1}}, {"s": Each(NUMBER, int_keys=True)}, "f.json")


# --- commands that read back a JSON they wrote earlier in their folder (a resumed units report, sweep)

def test_a_resumed_units_report_reads_its_report_json_checked(pretrain_corpus, tmp_path, capsys):
    out = tmp_path / "rep"
    argv = ["units", "report", "--encoder", str(pretrain_corpus / "feature_stats.json"), "--layer", "-1", "--corpus", str(pretrain_corpus),
            "--frames", "1500", "--k", "8", "--kinds", "kmeans", "--eval-frames", "500", "--niter", "2", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    kept = (out / "report.json").read_text()
    for change, said in ((_set(["rows", 0, "nmse"], "0.3"), "rows[0].nmse: expected a number, got '0.3'"),
                         (_delete(["rows", 0, "used"]), "rows[0]: missing key 'used'"),
                         (lambda d: d.update(rows={"0": d["rows"][0]}), "rows: expected a list, got an object")):
        (out / "report.json").write_text(kept)
        _edit(out / "report.json", change)
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{out / 'report.json'}: {said}" in err, err


def test_a_resumed_sweep_reads_its_sweep_json_checked(pretrain_corpus, tmp_path, capsys):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("config: configs/pretrain/tiny.yaml\nsteps: 10\npoints:\n  base: []\n")
    out = tmp_path / "sw"
    for report, said in (({"points": [{"overrides": []}]}, "points: expected an object, got a list"),
                         ({"points": {"base": {"overrides": "optim.lr=1e-3"}}}, "points.base.overrides: expected a list, got 'optim.lr=1e-3'"),
                         ({"points": {"base": {"overrides": [], "max_steps": "10"}}}, "points.base.max_steps: expected an integer, got '10'")):
        out.mkdir(exist_ok=True)
        (out / "sweep.json").write_text(json.dumps(report))
        capsys.readouterr()
        assert main(["bench", "sweep", str(sweep), "--corpus", str(pretrain_corpus), "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{out / 'sweep.json'}: {said}" in err, err
