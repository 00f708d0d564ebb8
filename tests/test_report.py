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

from speechrq.cli import main
from speechrq.studies.report import demo_report

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
T95 = {2: 4.303}  # two-sided 95% t quantile for 2 degrees of freedom (3 seeds)
REPORT_SOURCES = ["latent_study.json", "rpq_tables_mel.json", "asr_compare_tiny_bestrq.json", "asr_compare_seeds_tiny_bestrq.json",
                  "units_report_tiny_bestrq.json", "asr_input_kinds_tiny_bestrq.json"]


def load(name: str) -> dict:
    return json.loads((DOCS / name).read_text())


def report_rows(text: str) -> dict[str, list[str]]:
    """The report's table as ``{claim: [paper, claim, number, noise, verdict, source]}``."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| paper |"):
            cells = [c.strip() for c in line.strip()[1:-1].split("|")]
            assert len(cells) == 6, line
            assert cells[1] not in rows, cells[1]
            rows[cells[1]] = cells
    return rows


def interval(mean: float, lo: float, hi: float, n: int) -> str:
    return f"{mean:+.2f} [{lo:+.2f}, {hi:+.2f}] (95%, {n} seeds)"


def paired(arm: dict, base: dict) -> tuple[float, float, float]:
    """Improvement of ``arm`` over ``base`` (lower is better), by seed: mean and 95% t-interval."""
    d = [base[s] - arm[s] for s in sorted(set(arm) & set(base))]
    mean, half = statistics.fmean(d), T95[len(d) - 1] * statistics.stdev(d) / math.sqrt(len(d))
    return mean, mean - half, mean + half


def decide(lo: float, hi: float) -> str:
    return "held" if lo > 0 else "against" if hi < 0 else "not at this scale (within noise)"


def ci(c: dict) -> str:
    return f"{c['difference']:+.2f} [{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}]"


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> dict[str, list[str]]:
    demo = tmp_path_factory.mktemp("demo")  # a demo folder without outputs: the shipped JSONs give their rows
    return report_rows(demo_report(demo, DOCS))


def test_latent_rows_every_cell(rows):
    s = load("latent_study.json")
    best, base = s["arms"][s["best_arm"]], s["arms"]["BEST-RQ"]
    for task, claim in (("pr", "Latent-RQ beats BEST-RQ on phone recognition (the paper: ASR/PR) at equal steps"),
                        ("sid", "Latent-RQ beats BEST-RQ on SID at equal steps")):
        cell, b, v = best[task], base[task], best[task]["vs_base"]
        assert rows[claim] == ["Latent-RQ", claim, f"{s['best_arm']}: {cell['mean']:.2f} ± {cell['std']:.2f} against BEST-RQ "
                               f"{b['mean']:.2f} ± {b['std']:.2f}", interval(v["mean"], *v["ci95"], v["n"]), f"**{decide(*v['ci95'])}**",
                               "docs/latent_study.json"]
        # the interval is the paired one over seeds (lower PER is better; SID accuracy higher)
        if task == "pr":
            assert [round(x, 6) for x in paired(cell["per_seed"], b["per_seed"])] == [round(x, 6) for x in (v["mean"], *v["ci95"])]
    claim = "middle layers of θ make the best targets (Table 2)"
    middle = next(a for n, a in s["arms"].items() if "(middle" in n)["pr"]
    mean, lo, hi = paired(best["pr"]["per_seed"], middle["per_seed"])  # the middle layers against the ranked-best ones
    mean, lo, hi = -mean, -hi, -lo
    assert rows[claim] == ["Latent-RQ", claim, f"PR with middle layers {s['middle_layers']}: {middle['mean']:.2f} ± {middle['std']:.2f}; "
                           f"with {s['best_layers']}: {best['pr']['mean']:.2f} ± {best['pr']['std']:.2f}", interval(mean, lo, hi, 3),
                           f"**{decide(lo, hi)}**", "docs/latent_study.json"]
    gains = s["stage_gains"]
    ends = sorted(gains, key=int)
    claim = "gains over BEST-RQ grow with the stages, then saturate (PR, paper schedule)"
    last = gains[ends[-1]]
    held = last["vs_base"]["ci95"][0] > 0 and last["mean"] > gains[ends[0]]["mean"]
    assert rows[claim] == ["Latent-RQ", claim, "PR gain at each stage end, " + "; ".join(
        f"step {e}: {gains[e]['mean']:+.2f} ± {gains[e]['std']:.2f}" for e in ends),
        "; ".join(interval(gains[e]["vs_base"]["mean"], *gains[e]["vs_base"]["ci95"], gains[e]["vs_base"]["n"]) for e in ends),
        "**held**" if held else "**against**" if last["vs_base"]["ci95"][1] < 0 else "**not at this scale (within noise)**",
        "docs/latent_study.json (stage_gains)"]
    claim = "Latent-RQ reaches BEST-RQ's quality in fewer steps (section 4.2)"
    per = s["convergence"]["per_seed"]
    reached = [p["step"] for p in per.values()]
    assert rows[claim][2] == (f"steps to BEST-RQ's PR at {s['steps']}: " + ", ".join("never" if r is None else str(r) for r in reached)
                              + " (per seed; probed at " + ", ".join(sorted(next(iter(per.values()))["points"], key=int)) + ")")
    assert rows[claim][3:5] == [f"{len(per)} pre-training seeds", "**against**" if all(r is None for r in reached) else rows[claim][4]]
    rank = s["theta_ranking"]
    seeds = [k for k in rank["Mel"] if k != "reference"]
    layers = [n for n in rank if n.startswith("layer ")]
    top = max(layers, key=lambda n: statistics.fmean(rank[n][k]["phones"] for k in seeds))
    mel = [rank["Mel"][k]["phones"] for k in seeds]
    tops = [rank[top][k]["phones"] for k in seeds]
    ref_top = max(layers, key=lambda n: rank[n]["reference"]["phones"])
    claim = "latent targets separate phones better than Mel targets (Figures 5, 6)"
    assert rows[claim][2] == (f"phone 5-NN, θ at the branch step: best layer ({top}) {statistics.fmean(tops):.1f} ± {statistics.stdev(tops):.1f} "
                              f"against Mel {statistics.fmean(mel):.1f} ± {statistics.stdev(mel):.1f}; the 4000-step reference: {ref_top} "
                              f"{rank[ref_top]['reference']['phones']:.1f} against Mel {rank['Mel']['reference']['phones']:.1f}")
    mean, lo, hi = paired({i: 0.0 for i in range(len(seeds))}, {i: t - m for i, (t, m) in enumerate(zip(tops, mel))})  # top − Mel
    assert rows[claim][3:5] == [interval(mean, lo, hi, len(seeds)), f"**{decide(lo, hi)}**"]


def test_rpq_rows_from_the_tables_every_cell(rows):
    t = load("rpq_tables_mel.json")
    noise = f"95% bootstrap over test utterances and {len(t['training_seeds'])} training seeds"
    src = "docs/rpq_tables_mel.json"
    verdicts = {"better": "held", "worse": "against", "within noise": "not at this scale (within noise)"}
    for i, base in enumerate(t["baselines"]):
        found = [r for r in t["table2"] if r["kind"] in ("pq", "rpq")]
        claim = f"PQ and RPQ units beat k-means units for ASR (Table II, wide source; against {base})"
        vs = [r["differences"][i]["verdict"] for r in found]
        v = verdicts[vs[0]] if len(set(vs)) == 1 else "mixed: " + ", ".join(f"{r['name']} {x}" for r, x in zip(found, vs))
        assert rows[claim] == ["RPQ", claim, "; ".join(f"{r['name']} {ci(r['differences'][i]['cer'])}" for r in found), noise,
                               f"**{v}**", src]
        point = next(r for r in found if r["kind"] == "rpq" and r["M"] == 32 and r["alpha"] == 0.125)
        d = point["differences"][i]
        claim = (f"RPQ at the paper's operating point (M = 32, α = 0.125) beats k-means (Table II, wide source; against {base})")
        assert d["against"] == base
        assert rows[claim] == ["RPQ", claim, f"{point['cer']:.2f} ± {point['cer_std']:.2f}: {ci(d['cer'])} CER", noise,
                               f"**{verdicts[d['verdict']]}**", src]
    for kind, label in (("pq", "PQ"), ("rpq", "RPQ")):
        top = max((r for r in t["table2"] if r["kind"] == kind), key=lambda r: r["M"])
        d = top["against_smallest_M"]
        claim = f"{label} gets better as M grows (Table II)"
        assert rows[claim] == ["RPQ", claim, f"{top['name']} − {d['against']}: {ci(d['cer'])} CER", noise, f"**{verdicts[d['verdict']]}**", src]
    best = next(r for r in t["table4"] if r.get("best"))
    others = [r for r in t["table4"] if not r.get("best")]
    claim = f"α = 0.125 is best for RPQ at M = {best['M']} (Table IV)"
    paper = next(r for r in t["table4"] if r["alpha"] == 0.125)
    v = ("held" if all(r["against_best"]["verdict"] == "worse" for r in others) else "not at this scale (within noise)") if paper is best \
        else "against" if paper["against_best"]["verdict"] == "worse" else "not at this scale (within noise)"
    assert rows[claim] == ["RPQ", claim, f"best α {best['alpha']:g} ({best['cer']:.2f}); " + ", ".join(
        f"α {r['alpha']:g} {ci(r['against_best']['cer'])}" for r in others), noise, f"**{v}**", src]
    larger = [r for r in t["table1"] if r.get("against_smallest_k")]
    claim = "k-means units get better as k grows to 2000 (Table I)"
    vs = {r["against_smallest_k"]["verdict"] for r in larger}
    assert rows[claim] == ["RPQ", claim, "; ".join(f"{r['input']} k = {r['k']}: {ci(r['against_smallest_k']['cer'])}" for r in larger),
                           noise, f"**{verdicts[vs.pop()] if len(vs) == 1 and 'within noise' not in vs else 'not at this scale (within noise)'}**",
                           src]
    claim = "more streams move the learning-rate peak to an earlier epoch (Table VII)"
    assert rows[claim][2] == "peak epoch " + ", ".join(f"{r['name']} {r['peak_epoch']:.2f}" for r in t["table7"][:3]) + ", ..."
    assert rows[claim][4].startswith("**does not apply here") == (len({round(r["peak_epoch"], 3) for r in t["table7"]}) == 1)


def test_rpq_rows_from_the_comparisons_units_and_input_kinds_every_cell(rows):
    c = load("asr_compare_tiny_bestrq.json")
    claim = "PQ and RPQ units beat k-means units for ASR (Table II; docs run)"
    km = c["rows"]["k-means (k=500)"]
    others = {k: v for k, v in c["rows"].items() if k.startswith(("PQ", "RPQ"))}
    gains = [km["cer"] - v["cer"] for v in others.values()]
    direction = "all worse here" if all(g < 0 for g in gains) else "all better here" if all(g > 0 for g in gains) else "mixed"
    assert rows[claim] == ["RPQ", claim, "; ".join(f"{k} {v['cer']:.2f}" for k, v in others.items()) + f" against k-means {km['cer']:.2f} (test CER)",
                           "one training seed each: not measured", f"**not established (no noise estimate); {direction}**",
                           "docs/asr_compare_tiny_bestrq.json"]
    c = load("asr_compare_seeds_tiny_bestrq.json")
    for base in dict.fromkeys(d["baseline"] for d in c["differences"]):
        found = [d for d in c["differences"] if d["baseline"] == base]
        claim = f"PQ and RPQ units beat k-means units for ASR (Table II; docs, training seeds run; against {base})"
        vs = {d["verdict"] for d in found}
        v = ({"better": "held", "worse": "against", "within noise": "not at this scale (within noise)"}[vs.pop()] if len(vs) == 1 else
             "mixed: " + ", ".join(f"{d['row']} {d['verdict']}" for d in found))
        assert rows[claim] == ["RPQ", claim, "; ".join(f"{d['row']} {c['rows'][d['row']]['cer']:.2f} ({ci(d['cer'])})" for d in found)
                               + f" against {base} {c['rows'][base]['cer']:.2f} (test CER)",
                               f"95% bootstrap over {found[0]['cer']['utterances']} test utterances and 3 training seeds", f"**{v}**",
                               "docs/asr_compare_seeds_tiny_bestrq.json"]
    u = load("units_report_tiny_bestrq.json")["rows"]
    rpq = [r for r in u if r["kind"] == "rpq"]
    far = [r["ratio_measured"] / r["ratio_theory"] for r in rpq if r["alpha"] < 1]
    cov = [abs(r["ratio_measured"] - r["ratio_theory_coverage"]) for r in rpq if r["ratio_theory_coverage"] is not None]
    gap = max(abs(r["ratio_measured"] - r["ratio_theory"]) for r in rpq)
    claim = "eq. 13 with eq. 17 gives RPQ's error against k-means'"
    assert rows[claim][2:5] == [f"measured / predicted {min(far):.1f}x to {max(far):.1f}x for α < 1 (largest gap {gap:.3f}); eq. 13 with "
                                f"the measured ρ and coverage within {max(cov):.3f} of all {len(cov)} measured ratios",
                                "one fit per point; tolerance 0.05", f"**{'held' if gap <= 0.05 else 'against'} (eq. 17's ρ); eq. 13's "
                                f"form with the measured ρ and coverage: {'held' if max(cov) <= 0.05 else 'against'}**"]
    top = max(r["M"] for r in u)
    by_alpha = {r["alpha"]: r["nmse"] for r in rpq if r["M"] == top}
    best = min(by_alpha, key=by_alpha.get)
    claim = "a moderate α is best (Table IV: α = 0.125 at M = 32)"
    assert rows[claim][2:5] == [f"NMSE at M = {top}: " + ", ".join(f"α {a:g} {by_alpha[a]:.3f}" for a in sorted(by_alpha)),
                                "one fit per point", f"**{'held' if min(by_alpha) < best < max(by_alpha) else 'against'} (one fit per point)**"]
    k = load("asr_input_kinds_tiny_bestrq.json")["rows"]
    claim = "de-duplication and BPE shorten the input and change accuracy little (Table VI)"
    assert rows[claim][2] == f"k-means {k['k-means']['cer']:.2f}; " + "; ".join(
        f"{n}: CER {k[n]['cer']:.2f} ({k[n]['cer'] - k['k-means']['cer']:+.2f}), length {round(100 * k[n]['length_change']):+d}%"
        for n in ("dedup", "bpe"))


def test_the_demo_rows_from_its_probes(tmp_path):
    demo = tmp_path / "demo"
    (demo / "eval").mkdir(parents=True)
    (demo / "eval" / "results.json").write_text(json.dumps({"models": {
        "stage0@1000": {"tasks": {"pr": {"test": 40.0, "test_std": 0.5}}}, "stage1@1000": {"tasks": {"pr": {"test": 38.5, "test_std": 0.25}}}}}))
    row = report_rows(demo_report(demo, tmp_path / "no-docs"))["the demo's own stage 1 against stage 0 at equal steps (PR)"]
    assert row[2:5] == ["stage1@1000 38.50 ± 0.25 against stage0@1000 40.00 ± 0.50", "probe seeds only: ± 0.75", "**held**"]


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
    seed = {"cer": 50.0, "wer": 70.0, "bits_per_second": 224.0, "s_per_step": 0.2, "jobs": 1}
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
