"""The documentation's results pages and the README's headline table, rendered from the shipped JSON (speechrq.studies.results_pages)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from speechrq import formats as schemas
from speechrq.studies.results_pages import HEADLINE_BEGIN, HEADLINE_END, PAGES, headline_table, render, update_readme, write_pages

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_results_page_renders_a_table_from_its_json_and_names_its_command(page):
    text = render(page, DOCS)
    assert text.startswith(f"---\nhide:\n  - toc\n---\n\n# {page.title}\n") and page.command in text and f"({'../' + page.source})" in text
    assert re.search(r"^\|.*\|$", text, re.M), "no table"
    for extra in (page.figure, page.logs):
        assert extra is None or (DOCS / extra).exists(), extra


def test_a_number_changed_in_the_json_changes_the_page(tmp_path):
    """The pages are renderings, not copies: edit a measurement and the page follows."""
    page = next(p for p in PAGES if p.name == "bench_passes")
    shutil.copy(DOCS / page.source, tmp_path / page.source)
    before = render(page, tmp_path)
    d = json.loads((tmp_path / page.source).read_text())
    d["rows"][0]["seconds"] = 1234.5
    (tmp_path / page.source).write_text(json.dumps(d))
    after = render(page, tmp_path)
    assert "1234.5" in after and "1234.5" not in before


def test_write_pages_writes_every_page_and_an_index(tmp_path):
    for p in PAGES:
        for name in (p.source, p.figure, p.logs):
            if name:
                (shutil.copytree if (DOCS / name).is_dir() else shutil.copy)(DOCS / name, tmp_path / name)
    written = write_pages(tmp_path)
    assert sorted(w.name for w in written) == sorted([f"{p.name}.md" for p in PAGES] + ["index.md"])
    index = (tmp_path / "results" / "index.md").read_text()
    assert all(f"({p.name}.md)" in index for p in PAGES)


def test_the_readme_headline_table_agrees_with_the_json():
    """Fails when a shipped study's JSON changes and the README's table was not rendered again (`make docs` does it)."""
    readme = (ROOT / "README.md").read_text()
    assert HEADLINE_BEGIN in readme and HEADLINE_END in readme
    block = readme[readme.index(HEADLINE_BEGIN): readme.index(HEADLINE_END) + len(HEADLINE_END)]
    assert block == headline_table(DOCS)


def test_update_readme_rewrites_only_the_headline_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n\n{HEADLINE_BEGIN}\n| stale | 1 |\n{HEADLINE_END}\n\noutro\n")
    assert update_readme(readme, DOCS)
    text = readme.read_text()
    assert text.startswith("intro\n\n") and text.endswith("\n\noutro\n") and headline_table(DOCS) in text and "stale" not in text
    assert not update_readme(readme, DOCS)  # already current


# --- every rendered cell of every results table against its JSON (each expected cell computed here, from the JSON)

def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip()[1:-1].split("|")]


def md_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every markdown table of ``text``: (header cells, rows of cells)."""
    found, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            head, rows, i = _cells(lines[i]), [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            found.append((head, rows))
        else:
            i += 1
    return found


def md_table(text: str, first: str, *more: str) -> tuple[list[str], list[list[str]]]:
    """The one table whose header starts with the cells ``first, *more``."""
    want = [first, *more]
    hits = [t for t in md_tables(text) if t[0][:len(want)] == want]
    assert len(hits) == 1, (want, [t[0] for t in md_tables(text)])
    return hits[0]


def page(name: str):
    return next(p for p in PAGES if p.name == name)


def shipped(name: str) -> dict:
    return json.loads((DOCS / page(name).source).read_text())


def pm(mean: float, std: float) -> str:
    return f"{mean:.2f} ± {std:.2f}"


def ci(c: dict) -> str:
    return f"{c['difference']:+.2f} [{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}]"


def diff(d: dict | None) -> str:
    """A difference's cell: its interval, Holm's p where the table has a family rule (issue 35's tables), the verdict."""
    if not d:
        return ""
    return f"{ci(d['cer'])}" + (f" (Holm p {d['p_holm']:.3f})" if d.get("p_holm") is not None else "") + f" {d['verdict']}"


def test_bench_passes_every_cell_under_its_own_header():
    d = shipped("bench_passes")
    head, rows = md_table(render(page("bench_passes"), DOCS), "pass")
    cores = d["cores"]
    assert head == ["pass", "processes x threads", "frames", "seconds", "frames/s per process", "speed-up vs 1 x 1",
                    f"speed-up vs 1 x {cores}"]
    assert rows == [[r["pass"], f"{r['processes']} x {r['threads']}", str(r["frames"]), f"{r['seconds']:.1f}",
                     f"{r['frames_per_s_per_process']:.0f}", f"{r['speedup_vs_1x1']:.2f}", f"{r[f'speedup_vs_1x{cores}']:.2f}"]
                    for r in d["rows"]]
    # the two speed-up columns differ on the shipped rows, so a swap of the two is seen
    assert any(f"{r['speedup_vs_1x1']:.2f}" != f"{r[f'speedup_vs_1x{cores}']:.2f}" for r in d["rows"])


def test_input_kinds_every_cell_with_the_length_change_as_a_percentage():
    d = shipped("asr_input_kinds_tiny_bestrq")
    text = render(page("asr_input_kinds_tiny_bestrq"), DOCS)
    head, rows = md_table(text, "input")
    assert head == ["input", "CER", "WER", "input length against k-means units"]
    assert rows == [[name, f"{r['cer']:.2f}", f"{r['wer']:.2f}", f"{round(100 * r['length_change']):+d}%"] for name, r in d["rows"].items()]
    assert "-19%" in [r[3] for r in rows] and f"decoded on the {d['test_split']} split" in text
    assert d["note"] not in text and "length_change" not in text  # the JSON's own note is not printed raw


@pytest.mark.parametrize("name", ["asr_compare_seeds_tiny_bestrq", "asr_compare_tiny_bestrq"])
def test_compare_pages_every_cell(name):
    d = shipped(name)
    text = page(name).render(d)  # the formatter's cells; the page's tidying is tested below
    seeds = d.get("training_seeds", [0])
    spread = len(seeds) > 1
    timed = all("epoch_s" in r for r in d["rows"].values())
    head, rows = md_table(text, "input", "CER")
    assert head == ["input", "CER", "WER", *(["time per epoch (s)"] if timed else []), "input bits/s"]
    assert rows == [[n, pm(r["cer"], r["cer_std"]) if spread else f"{r['cer']:.2f}", pm(r["wer"], r["wer_std"]) if spread else f"{r['wer']:.2f}",
                     *([f"{r['epoch_s']:.1f}"] if timed else []), f"{r['bits_per_second']:.0f}"] for n, r in d["rows"].items()]
    assert f"{d['mode']} decoding, beam {d['beam']}, CTC weight {d['ctc_weight']}" in text
    if d.get("differences"):
        head, rows = md_table(text, "row", "against")
        assert head == ["row", "against", "ΔCER", "95% interval", "Holm p", "ΔWER", "verdict"]
        p_text = lambda p: "-" if p is None else f"{p:.3f}" if p >= 0.001 else "<0.001"  # noqa: E731
        assert rows == [[x["row"], x["baseline"], f"{x['cer']['difference']:+.2f}",
                         f"[{x['cer']['ci'][0]:+.2f}, {x['cer']['ci'][1]:+.2f}]" if x["cer"]["ci"] else "(one seed)",
                         p_text(x.get("p_holm")), f"{x['wer']['difference']:+.2f}", x["verdict"]] for x in d["differences"]]
    assert not timed or all(r.get("jobs", 1) == 1 for r in d["rows"].values())  # a time is shown only from runs trained alone


def test_a_comparison_without_times_drops_the_column_and_says_why():
    d = shipped("asr_compare_seeds_tiny_bestrq")
    assert not any("epoch_s" in r for r in d["rows"].values())
    text = page("asr_compare_seeds_tiny_bestrq").render(d)
    head, rows = md_table(text, "input", "CER")
    assert head == ["input", "CER", "WER", "input bits/s"] and len(rows) == len(d["rows"])
    assert f"Times per epoch: not shown. {d['timings_removed']}" in text and "side by side (`--jobs`)" not in text


def test_a_comparison_with_times_shows_them():
    """A future comparison, its runs trained one at a time, with its times per epoch: every cell under its header; the
    same times from runs trained side by side are not shown."""
    for name in ("asr_compare_seeds_tiny_bestrq", "asr_compare_tiny_bestrq"):
        d = shipped(name)
        del d["timings_removed"]
        for i, r in enumerate(d["rows"].values()):
            r["epoch_s"], r["jobs"] = 9.0 + i, 1
        schemas.compare_page(d, f"{name}.json")
        text = page(name).render(d)
        head, rows = md_table(text, "input", "CER")
        assert head[3] == "time per epoch (s)" and [r[3] for r in rows] == [f"{9.0 + i:.1f}" for i in range(len(d["rows"]))]
        assert "not shown" not in text
        next(iter(d["rows"].values()))["jobs"] = 2
        head, _ = md_table(page(name).render(d), "input", "CER")
        assert "time per epoch (s)" not in head


def _check_rpq_tables(t: dict, text: str) -> None:
    head, rows = md_table(text, "input", "k")
    assert head == ["input", "k", "CER", "WER", "Δ against the smallest k"]
    assert rows == [[r["input"], str(r["k"]), pm(r["cer"], r["cer_std"]), pm(r["wer"], r["wer_std"]), diff(r.get("against_smallest_k"))]
                    for r in t["table1"]]
    deltas = [f"Δ against {b}" for b in t["baselines"]]
    head, rows = md_table(text, "input", "CER", "WER", *deltas)
    assert head == ["input", "CER", "WER", *deltas, "Δ against the smallest M"]
    assert rows == [[r["name"], pm(r["cer"], r["cer_std"]), pm(r["wer"], r["wer_std"]), *[diff(x) for x in r["differences"]],
                     diff(r.get("against_smallest_M"))] for r in t["table2"]]
    assert f"**Table II: PQ and RPQ (α = {t['alpha']:g}) by M**" in text
    head, rows = md_table(text, "method")
    assert head == ["method", "CER", "WER", "bits/s", *deltas]
    assert rows == [[r["name"], pm(r["cer"], r["cer_std"]), pm(r["wer"], r["wer_std"]), f"{r['bits_per_second']:.0f}",
                     *[diff(x) for x in r["differences"]]] for r in t["table3"]]
    if t["table4"]:
        on_dev = all("cer_dev" in r for r in t["table4"])  # issue 35's tables choose the best α on dev and show dev CER
        head, rows = md_table(text, "α")
        assert head == ["α", *(["dev CER"] if on_dev else []), "CER", "WER", "Δ against the best α"]
        assert f"**Table IV: RPQ (M = {t['table4'][0]['M']}) by α** (the best α chosen on {'dev' if on_dev else 'test'} CER" in text
        assert rows == [[f"{r['alpha']:g}", *([f"{r['cer_dev']:.2f}"] if on_dev else []), pm(r["cer"], r["cer_std"]),
                         pm(r["wer"], r["wer_std"]), "best" if r.get("best") else diff(r.get("against_best"))] for r in t["table4"]]
    head, rows = md_table(text, "row", "warm-up steps")
    assert head == ["row", "warm-up steps", "peak step", "steps per epoch", "peak epoch", "CER"]
    assert rows == [[r["name"], str(r["warmup_steps"]), str(r["peak_step"]), str(r["steps_per_epoch"]), f"{r['peak_epoch']:.2f}",
                     pm(r["cer"], r["cer_std"])] for r in t["table7"]]
    assert f"(training seed {t['training_seeds'][0]};" in text
    langs = sorted({lang for r in t["table1"] + t["table2"] for lang in r.get("cer_by_language", {})})
    if langs:
        head, rows = md_table(text, "input", *langs)
        assert head == ["input", *langs, "mean"]
        assert rows == [[r["name"], *[pm(r["cer_by_language"][g]["cer"], r["cer_by_language"][g]["cer_std"]) if g in r.get("cer_by_language", {}) else "-" for g in langs],
                         pm(r["cer_language_mean"], r["cer_language_mean_std"]) if r.get("cer_by_language") else "-"]
                        for r in t["table1"] + t["table2"]]
        head, rows = md_table(text, "input", "against", *langs)
        assert rows == [[r["name"], x["against"], *[diff(x["by_language"][g]) if g in x.get("by_language", {}) else "-" for g in langs]]
                        for r in t["table2"] for x in r["differences"]]
    if t.get("figure6"):
        head, rows = md_table(text, "input", "s per step")
        assert head == ["input", "s per step", "s per epoch"]
        assert rows == [[r["name"], f"{r['s_per_step']:.3f}", f"{r['epoch_s']:.1f}"] for r in t["figure6"]]
    else:
        assert "| s per step |" not in text and f"**Figure 6: training time per epoch**: not shown. {t['timings_removed']}" in text


@pytest.mark.parametrize("name", ["rpq_tables_mel", "ml_tables"])
def test_rpq_tables_pages_every_cell(name):
    t = shipped(name)
    _check_rpq_tables(t, page(name).render(t))


def test_rpq_tables_with_figure6_every_cell():
    """A future run's tables, with their times: Figure 6's rows are rendered under their headers."""
    t = shipped("rpq_tables_mel")
    t["figure6"] = [{"name": "k-means (k=500)", "s_per_step": 0.25, "epoch_s": 13.5, "jobs": 1},
                    {"name": "RPQ (M=32, α=0.125)", "s_per_step": 0.2612, "epoch_s": 14.1, "jobs": 1}]
    text = page("rpq_tables_mel").render(t)
    _check_rpq_tables(t, text)
    assert "side by side" not in text


def test_the_shipped_tables_hold_no_shared_core_timing():
    """Figure 6's times and the Latent-RQ study's training times were measured on shared cores (some runs trained twice at
    once): they are not shipped, and each page says why in one line."""
    for name in ("rpq_tables_mel", "ml_tables"):
        t = shipped(name)
        assert "figure6" not in t and not any("s_per_step" in r for k in ("table1", "table2", "table3", "table4") for r in t[k])
        assert "one process per run folder" in t["timings_removed"]
        assert not (DOCS / f"{name}_figure6.png").exists() and page(name).figure is None
    s = shipped("latent_study")
    assert "time_ratio_same_steps" not in s["convergence"]
    assert not any(k in c for c in s["convergence"]["per_seed"].values() for k in ("minutes", "base_minutes"))
    text = render(page("latent_study"), DOCS)
    assert not re.search(r"\d min|\dx\b", text) and f"Training times: not shown. {s['timings_removed']}" in text


def test_latent_study_page_every_cell():
    s = shipped("latent_study")
    text = page("latent_study").render(s)
    unit = {"pr": "PR PER ↓", "ft": "FT PER ↓", "sid": "SID acc ↑", "er": "ER acc ↑"}
    head, rows = md_table(text, "arm")
    assert head == ["arm", *[c for t in s["tasks"] for c in (unit[t], f"Δ {t.upper()}")]]
    want = []
    for name, arm in s["arms"].items():
        cells = [name]
        for t in s["tasks"]:
            c = arm.get(t)
            v = c and c.get("vs_base")
            cells += ["", ""] if c is None else [pm(c["mean"], c["std"]),
                                                  f"{v['mean']:+.2f} [{v['ci95'][0]:+.2f}, {v['ci95'][1]:+.2f}]"
                                                  + (f" Holm p {v['p_holm']:.3f}" if v.get("p_holm") is not None else "")
                                                  + f" {v['verdict']}" if v else "base"]
        want.append(cells)
    assert rows == want
    for step, g in s["stage_gains"].items():
        v = g["vs_base"]
        assert f"- step {step}: {g['mean']:+.2f} ± {g['std']:.2f} [{v['ci95'][0]:+.2f}, {v['ci95'][1]:+.2f}]" in text
    for seed, c in s["convergence"]["per_seed"].items():
        points = ", ".join(f"{k}: {v:.2f}" for k, v in sorted(c["points"].items(), key=lambda kv: int(kv[0])))
        reached = f"step {c['step']}" if c["step"] else "never in the budget"
        assert f"- seed {seed}: {reached} (BEST-RQ {c['base_final']:.2f}; points {points})" in text
    rank = s["theta_ranking"]
    keys = sorted({k for n, v in rank.items() if not n.startswith("_") for k in v}, key=lambda k: (k == "reference", k))
    head, rows = md_table(text, "source")
    assert head == ["source", *[f"θ seed {k}" if k != "reference" else "reference" for k in keys]]
    assert rows == [[n, *[" / ".join([*("-" if per[k][w] is None else f"{per[k][w]:.1f}" for w in ("phones", "speakers")),
                                       f"{per[k]['agreement']:.3f}"]) if k in per else "" for k in keys]]
                    for n, per in rank.items() if not n.startswith("_")]


def test_units_report_page_every_cell():
    d = shipped("units_report_tiny_bestrq")
    text = render(page("units_report_tiny_bestrq"), DOCS)
    head, rows = md_table(text, "kind")
    assert head == ["kind", "M", "alpha", "NMSE", "used", "entropy bits", "bits/s", "compression", "purity", "PNMI"]
    assert rows == [[r["kind"], str(r["M"]), "-" if r["alpha"] is None else f"{r['alpha']:g}", f"{r['nmse']:.3f}", f"{r['used']:.2f}",
                     f"{r['entropy_bits']:.2f}", f"{r['bits_per_second']:.0f}", f"{r['compression']:.0f}x", f"{r['phone_purity']:.3f}",
                     f"{r['pnmi']:.3f}"] for r in d["rows"]]
    head, rows = md_table(text, "M", "alpha", "measured")
    rpq = [r for r in d["rows"] if r["kind"] == "rpq"]
    assert len(head) == 7 and rows == [[str(r["M"]), f"{r['alpha']:g}", f"{r['ratio_measured']:.3f}", f"{r['ratio_theory']:.3f}",
                                        "-" if r["rho_measured"] is None else f"{r['rho_measured']:.3f}",
                                        "-" if r["ratio_theory_coverage"] is None else f"{r['ratio_theory_coverage']:.3f}",
                                        f"{r['coverage_mean']:.1f}"] for r in rpq]


def test_ml_probes_page_every_cell():
    d = shipped("ml_probes")
    text = page("ml_probes").render(d)
    heads = {"pr": "PR PER ↓", "lid": "LID acc ↑"}
    head, rows = md_table(text, "model", heads[d["tasks"][0]])
    assert head == ["model", *[heads[t] for t in d["tasks"]], "Avg ↑"]
    assert rows == [[n, *[("-" if t not in m["tasks"] else f"{m['tasks'][t]['test']:.2f}"
                           + (f" ± {m['tasks'][t]['test_std']:.2f}" if m["tasks"][t].get("seed_tests") else "")) for t in d["tasks"]],
                     "-" if m["avg"] is None else f"{m['avg']:.2f}"] for n, m in d["models"].items()]
    langs = sorted({g for m in d["models"].values() for t in m["tasks"].values() for g in t.get("by_language") or {}})
    head, rows = md_table(text, "model", "task")
    assert head == ["model", "task", *langs]
    assert rows == [[n, heads[t], *[f"{m['tasks'][t]['by_language'][g]:.2f}" for g in langs]]
                    for n, m in d["models"].items() for t in d["tasks"] if m["tasks"].get(t, {}).get("by_language")]


def _check_quality(d: dict, text: str) -> None:
    for task, h in d["tasks"].items():
        metric = h["metric"].upper()
        timed = all("minutes" in c for c in h["curve"])
        head, rows = md_table(text, "step", *(["training min"] if timed else []), metric)
        assert head == ["step", *(["training min"] if timed else []), metric, f"margin over {h['stronger_baseline']}", "beyond noise"]
        assert rows == [[str(c["step"]), *([f"{c['minutes']:.1f}"] if timed else []), pm(c["error"], c["std"]), f"{c['margin']:+.2f}",
                         "yes" if c["beyond_noise"] else "no"] for c in h["curve"]]
        base = ", ".join(f"{b} {v['error']:.2f} ± {v['std']:.2f}" for b, v in h["baselines"].items())
        assert f"{task}: {metric}; baselines {base} (stronger: {h['stronger_baseline']})" in text
        f = h["first_beyond_noise"]
        assert ("never beyond noise in this budget" if not f else
                f"first beyond noise: step {f['step']} after {f['minutes']:.1f} training minutes (margin {f['margin']:+.2f})" if "minutes" in f
                else f"first beyond noise: step {f['step']} (margin {f['margin']:+.2f})") in text
        assert (f"Training minutes: not shown. {d['timings_removed']}" in text) if not timed else "not shown" not in text


@pytest.mark.parametrize("name", ["quality_tiny_4x1024", "quality_tiny_bestrq"])
def test_quality_pages_every_cell(name):
    d = shipped(name)
    _check_quality(d, render(page(name), DOCS))


def test_quality_with_minutes_every_cell():
    """A future run's quality benchmark, with its minutes: they are rendered in their column and sentence."""
    d = shipped("quality_tiny_bestrq")
    del d["timings_removed"]
    for h in d["tasks"].values():
        for i, c in enumerate(h["curve"]):
            c["minutes"] = 1.25 * (i + 1)
        if h["first_beyond_noise"]:
            h["first_beyond_noise"]["minutes"] = 2.5
    schemas.quality(d, "quality.json")
    text = page("quality_tiny_bestrq").render(d)
    _check_quality(d, text)
    assert "| step | training min |" in text and "after 2.5 training minutes" in text


def _check_sweep(d: dict, text: str) -> None:
    scores, points = d["scores"], d["points"]
    ranked = sorted((n for n in points if n in scores), key=lambda n: scores[n]["per"])
    timed = all("minutes" in points[n] for n in ranked)
    head, rows = md_table(text, "point")
    assert head == ["point", "overrides", "steps", *(["training min"] if timed else []), "masked share", "masked acc", "PER"]
    assert rows == [[n, " ".join(f"`{o}`" for o in points[n]["overrides"]) or "(base)", str(points[n]["max_steps"]),
                     *([f"{points[n]['minutes']:.1f}"] if timed else []), f"{points[n]['masked_fraction']:.2f}", f"{points[n]['acc']:.3f}",
                     pm(scores[n]["per"], scores[n]["std"])] for n in ranked] + [
        [n, "baseline", "-", *(["-"] if timed else []), "-", "-", pm(scores[n]["per"], scores[n]["std"])]
        for n in sorted(n for n in scores if n not in points)]
    assert (f"Training minutes and step-time ratios: not shown. {d['timings_removed']}" in text) if not timed else "not shown" not in text
    assert ("set from its step-time ratio, so it too comes from those shared-core timings" in text) == (not timed)


def test_sweep_page_every_cell_best_first():
    _check_sweep(shipped("sweep_tiny"), render(page("sweep_tiny"), DOCS))


def test_sweep_with_minutes_every_cell():
    """A future sweep, with its minutes: the column is rendered."""
    d = shipped("sweep_tiny")
    del d["timings_removed"]
    for i, r in enumerate(d["points"].values()):
        r["minutes"] = 3.0 + i
    schemas.sweep(d, "sweep.json")
    text = page("sweep_tiny").render(d)
    _check_sweep(d, text)
    assert "| training min |" in text


def test_timings_are_absent_only_where_the_file_says_why():
    from speechrq.errors import SpeechrqError

    q, s = shipped("quality_tiny_bestrq"), shipped("sweep_tiny")
    del q["timings_removed"], s["timings_removed"]
    with pytest.raises(SpeechrqError, match=r"tasks.pr.curve\[0\]: missing key 'minutes'"):
        schemas.quality(q, "quality.json")
    with pytest.raises(SpeechrqError, match=r"points.base: missing key 'minutes'"):
        schemas.sweep(s, "sweep.json")


def test_the_shipped_benchmarks_hold_no_shared_core_timing():
    """The reference run's quality minutes, the sweep's minutes and step-time ratios and both Table II comparisons' times
    were measured on shared cores: they are not shipped, and each page says why in one line."""
    q = shipped("quality_tiny_bestrq")
    assert not any("minutes" in c for h in q["tasks"].values() for c in [*h["curve"], h["first_beyond_noise"] or {}, h.get("best") or {}])
    s = shipped("sweep_tiny")
    assert not any(k in r for r in s["points"].values() for k in ("minutes", "step_time_ratio"))
    for name in ("asr_compare_seeds_tiny_bestrq", "asr_compare_tiny_bestrq"):
        c = shipped(name)
        assert not any(k in x for r in c["rows"].values() for x in [r, *(r.get("seeds") or {}).values()] for k in ("epoch_s", "s_per_step"))
        text = render(page(name), DOCS)
        assert "time per epoch" not in text and f"Times per epoch: not shown. {c['timings_removed']}" in text
    for d in (q, s):
        assert "one process per run folder" in d["timings_removed"]
    assert "minutes" in shipped("quality_tiny_4x1024")["tasks"]["pr"]["curve"][0]  # that run ran alone on the 2 cores


def test_demo_phases_page_every_cell():
    d = shipped("demo_phases")
    text = render(page("demo_phases"), DOCS)

    def wall(seconds: float) -> str:
        m, s = divmod(int(round(seconds)), 60)
        return f"{m} min {s:02d} s" if m else f"{s} s"

    head, rows = md_table(text, "phase")
    assert head == ["phase", "wall time"]
    assert rows == [[p["name"], wall(p["seconds"]) + ("" if p["exit"] == 0 else f" (exit {p['exit']})")] for p in d["phases"]] + [
        ["total", wall(d["total_seconds"])]]
    assert f"took {wall(d['install_seconds'])}." in text and f"took {wall(d['second_run_seconds'])}." in text


# --- a hand-edited JSON: one line naming the file and the key, exit 2 (python -m speechrq.studies.results_pages)

def _path_text(path: list) -> str:
    out = ""
    for k in path:
        out = f"{out}[{k}]" if isinstance(k, int) else (f"{out}.{k}" if out else str(k))
    return out


def _at(d, path: list):
    for k in path:
        d = d[k]
    return d


def _first(d: dict) -> str:
    return next(iter(d))


# (page, path of a number the page shows, path of a key it reads, path of a list or an object it reads)
EDITS = [
    ("demo_phases", ["phases", 0, "seconds"], ["total_seconds"], ["phases"]),
    ("latent_study", ["arms", "BEST-RQ", "pr", "mean"], ["arms", "BEST-RQ"], ["arms"]),
    ("rpq_tables_mel", ["table1", 0, "cer"], ["table7", 0, "peak_epoch"], ["table2"]),
    ("ml_tables", ["table2", 0, "differences", 0, "cer", "difference"], ["baselines"], ["table1"]),
    ("ml_probes", ["models", "fbank", "tasks", "pr", "test"], ["models", "fbank", "avg"], ["models"]),
    ("asr_compare_seeds_tiny_bestrq", ["rows", "PQ (M=2)", "wer"], ["rows", "PQ (M=2)", "cer_std"], ["differences"]),
    ("asr_compare_tiny_bestrq", ["rows", "PQ (M=2)", "bits_per_second"], ["test_split"], ["rows"]),
    ("asr_input_kinds_tiny_bestrq", ["rows", "dedup", "length_change"], ["rows", "k-means"], ["rows"]),
    ("units_report_tiny_bestrq", ["rows", 0, "nmse"], ["rows", 0, "kind"], ["rows"]),
    ("quality_tiny_4x1024", ["tasks", "pr", "curve", 0, "minutes"], ["tasks", "pr", "metric"], ["tasks", "pr", "curve"]),
    ("quality_tiny_bestrq", ["tasks", "pr", "baselines", "fbank", "error"], ["tasks", "pr", "stronger_baseline"], ["tasks"]),
    ("sweep_tiny", ["scores", "base", "per"], ["points", "base", "acc"], ["points"]),
    ("bench_passes", ["rows", 0, "speedup_vs_1x1"], ["rows", 0, "speedup_vs_1x2"], ["rows"]),
    ("real_speech", ["scores", "sid", "real", "mean"], ["scores", "sid", "real", "std_over"], ["seeds"]),
]


def _edited_docs(tmp_path: Path, name: str, edit) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    for p in PAGES:
        shutil.copy(DOCS / p.source, docs / p.source)
    d = json.loads((docs / page(name).source).read_text())
    edit(d)
    (docs / page(name).source).write_text(json.dumps(d))
    return docs


def test_every_page_has_its_edits():
    assert sorted(e[0] for e in EDITS) == sorted(p.name for p in PAGES)


@pytest.mark.parametrize("how", ["a number as a string", "a key removed", "a list for an object or an object for a list"])
@pytest.mark.parametrize("name,number,key,container", EDITS, ids=[e[0] for e in EDITS])
def test_a_hand_edited_json_is_one_line_naming_the_file_and_key(tmp_path, capsys, name, number, key, container, how):
    from speechrq.studies.results_pages import main

    if how == "a number as a string":
        def edit(d):
            _at(d, number[:-1])[number[-1]] = "n/a"
        said = f"{_path_text(number)}: expected a number, got 'n/a'"
    elif how == "a key removed":
        def edit(d):
            del _at(d, key[:-1])[key[-1]]
        said = (f"{_path_text(key[:-1])}: " if key[:-1] else "") + f"missing key {key[-1]!r}"
    else:
        def edit(d):
            c = _at(d, container[:-1])
            v = c[container[-1]]
            c[container[-1]] = {str(i): x for i, x in enumerate(v)} if isinstance(v, list) else list(v.values())
        v = _at(shipped(name), container)
        said = f"{_path_text(container)}: expected {'a list, got an object' if isinstance(v, list) else 'an object, got a list'}"
    docs = _edited_docs(tmp_path, name, edit)
    assert main([str(docs)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{docs / page(name).source}: {said}" in err, err
    assert not (docs / "results").exists()  # nothing written: every page is checked before any is


def test_the_readme_headline_reads_checked_json(tmp_path):
    from speechrq.errors import SpeechrqError

    docs = _edited_docs(tmp_path, "rpq_tables_mel", lambda d: d["table2"][0].update(cer="43.4"))
    with pytest.raises(SpeechrqError, match=r"rpq_tables_mel.json: table2\[0\].cer: expected a number, got '43.4'"):
        headline_table(docs)


# --- the rendered page: tables that use the page's width, nothing degenerate, figures drawn from the JSON

from speechrq.studies.results_pages import WIDE, draw_figures, results_index, tidy_tables  # noqa: E402


@pytest.mark.parametrize("p", PAGES, ids=[p.name for p in PAGES])
def test_no_rendered_table_has_one_row_or_a_column_without_information(p):
    """A table with one row, a column no row fills or a column every row shares compares nothing: the rendered page
    has none (each is a sentence instead)."""
    text = render(p, DOCS)
    assert WIDE in text
    for head, rows in md_tables(text):
        assert len(rows) >= 2, (p.name, head)
        for j in range(1, len(head)):
            column = {r[j] for r in rows}
            assert column - {"", "-"} and len(column) > 1, (p.name, head[j], column)


def test_the_degenerate_tables_of_the_shipped_pages_are_sentences_saying_why():
    ml = render(page("ml_tables"), DOCS)
    assert "Only one row was measured here, so this table has nothing to compare: input units; k 500;" in ml  # Table I
    assert "Only one row was measured here, so this table has nothing to compare: α 0.125;" in ml  # Table IV
    assert "Column Δ against the smallest M left out: no row has a value (each kind was measured at one M)." in ml
    t7 = shipped("rpq_tables_mel")["table7"][0]
    mel = render(page("rpq_tables_mel"), DOCS)
    assert (f"Every row (all {len(shipped('rpq_tables_mel')['table7'])}) has warm-up steps {t7['warmup_steps']}, peak step "
            f"{t7['peak_step']}, steps per epoch {t7['steps_per_epoch']} and peak epoch {t7['peak_epoch']:.2f}: nothing differs") in mel
    probes = render(page("ml_probes"), DOCS)
    assert "Column Avg ↑ left out: no row has a value (SUPERB's Avg averages ASR, SID, IC and ER" in probes
    assert "| model | PR PER ↓ | LID acc ↑ |" in probes


def test_a_wide_table_is_split_into_values_and_differences_with_two_line_cells():
    s = shipped("latent_study")
    text = render(page("latent_study"), DOCS)
    unit = {"pr": "PR PER ↓", "ft": "FT PER ↓", "sid": "SID acc ↑", "er": "ER acc ↑"}
    head, rows = md_table(text, "arm", unit[s["tasks"][0]])
    assert head == ["arm", *[unit[t] for t in s["tasks"]]] and [r[0] for r in rows] == list(s["arms"])
    head, rows = md_table(text, "arm", f"Δ {s['tasks'][0].upper()}")
    assert head == ["arm", *[f"Δ {t.upper()}" for t in s["tasks"]]]
    best = next(n for n in s["arms"] if "ranked best" in n)
    v = s["arms"][best]["pr"]["vs_base"]
    assert rows[list(s["arms"]).index(best)][1] == (f"{v['mean']:+.2f} [{v['ci95'][0]:+.2f}, {v['ci95'][1]:+.2f}]<br>"
                                                     f"Holm p {v['p_holm']:.3f} {v['verdict']}")


def test_tidy_tables_on_small_cases():
    one = "x\n\n| a | b |\n|---|---|\n| r | 1.5 |\n\ny"
    assert tidy_tables(one) == "x\n\nOnly one row was measured here, so this table has nothing to compare: a r; b 1.5.\n\ny"
    const = "| a | b | c |\n|---|---|---|\n| r | 1 | 7 |\n| s | 2 | 7 |"
    assert tidy_tables(const) == "| a | b |\n|---|---|\n| r | 1 |\n| s | 2 |\n\nIn every row, c 7."
    empty = "| a | b | c |\n|---|---|---|\n| r | 1 | - |\n| s | 2 |  |"
    assert tidy_tables(empty, {"c": "why"}) == "| a | b |\n|---|---|\n| r | 1 |\n| s | 2 |\n\nColumn c left out: no row has a value (why)."
    fine = "| a | b |\n|---|---|\n| r | 1 |\n| s | 2 |"
    assert tidy_tables(fine) == fine


def test_the_results_index_opens_with_the_claims_table_of_the_readme():
    from speechrq.studies.headline import format_headline, headline_rows

    index = results_index(DOCS)
    table = format_headline(headline_rows(DOCS))
    assert table in index and table in headline_table(DOCS)  # the same code, not a copy
    assert index.index("## The papers' claims, measured here") < index.index(table) < index.index("## Every results page")


def test_home_renders_the_claims_table_at_build_time():
    from speechrq.studies.headline import format_headline, headline_rows
    from speechrq.studies.prose_numbers import fill

    home = (DOCS / "index.md").read_text()
    assert "{{ headline }}" in home and "| paper |" not in home  # a placeholder, not a copy
    assert format_headline(headline_rows(DOCS)) in fill(home, DOCS)


def test_every_figure_is_drawn_from_its_json(tmp_path):
    """Each shipped figure has its plot function, and drawing again from the shipped JSON gives the shipped PNG (the
    figures are current); a figure that changed is rewritten, one that did not is left alone."""
    figured = [p for p in PAGES if p.figure]
    assert figured and all(p.plot for p in figured)
    for p in figured:
        shutil.copy(DOCS / p.source, tmp_path / p.source)
    first = draw_figures(tmp_path)
    assert sorted(x.name for x in first) == sorted(p.figure for p in figured)
    assert draw_figures(tmp_path) == []
    for p in figured:
        assert (tmp_path / p.figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / p.figure).read_bytes() == (DOCS / p.figure).read_bytes(), f"{p.figure}: stale, run make docs"
