"""``speechrq bench latent`` (the seeded Latent-RQ study) and ``speechrq report`` (every claim with its verdict)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import tiny_pretrain_config

from speechrq.cli import main
from speechrq.studies.latent_study import paired, summarize
from speechrq.studies.report import AGAINST, HELD, NOISE, UNKNOWN, demo_report, verdict


def test_paired_interval_and_its_direction():
    base = {0: 40.0, 1: 42.0, 2: 41.0}
    better = {0: 38.0, 1: 40.5, 2: 39.0}  # lower PER: improvements 2.0, 1.5, 2.0
    d = paired(better, base, lower_is_better=True)
    assert d["mean"] == pytest.approx(5.5 / 3) and d["n"] == 3
    half = 4.303 * 0.288675 / 3**0.5  # t(0.975, 2) * sd / sqrt(n)
    assert d["ci95"] == pytest.approx([5.5 / 3 - half, 5.5 / 3 + half], abs=1e-4) and d["verdict"] == "better"
    assert paired(base, better, lower_is_better=True)["verdict"] == "worse"
    assert paired({0: 1.0, 1: 3.0}, {0: 2.0, 1: 2.0}, lower_is_better=False)["verdict"] == "within noise"
    assert paired({0: 1.0}, {0: 2.0}, True) is None  # one seed: no interval
    s = summarize({0: 1.0, 1: 3.0})
    assert s["mean"] == 2.0 and s["std"] == pytest.approx(2**0.5)


def test_verdicts_follow_the_numbers_in_either_direction():
    assert verdict(2.0, 0.5, 3.5) == HELD
    assert verdict(-2.0, -3.5, -0.5) == AGAINST
    assert verdict(0.5, -1.0, 2.0) == NOISE
    assert verdict(1.0, noise=0.5) == HELD and verdict(-1.0, noise=0.5) == AGAINST and verdict(0.2, noise=0.5) == NOISE
    assert verdict(1.0) == UNKNOWN


@pytest.mark.slow
def test_bench_latent_trains_every_arm_per_seed_and_the_report_reads_it(pretrain_corpus, tmp_path, capsys):
    parent = tiny_pretrain_config(pretrain_corpus, tmp_path / "unused")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(parent))
    latent = tiny_pretrain_config(pretrain_corpus, tmp_path / "unused", targets={"layers": [1, 2], "stats_utterances": 8})
    (tmp_path / "latent.yaml").write_text(yaml.safe_dump(latent))
    out = tmp_path / "study"
    # a "strong" reference: 4 BEST-RQ steps, continued by the study with Mel and with its own latent targets
    assert main(["pretrain", str(tmp_path / "tiny.yaml"), "--set", "optim.max_steps=4", "--set", "train.checkpoint_every=4",
                 "--set", f"out_dir={tmp_path / 'ref'}", "--quiet"]) == 0
    reference = tmp_path / "ref" / "checkpoints" / "step_00000004"
    args = ["bench", "latent", "--config", str(tmp_path / "tiny.yaml"), "--latent-config", str(tmp_path / "latent.yaml"),
            "--corpus", str(pretrain_corpus), "--out", str(out), "--seeds", "0,1", "--steps", "10", "--best-layers=-1,0",
            "--tasks", "pr,sid", "--probe-seeds", "1", "--epochs", "1", "--quiet",
            "--arms", "Latent-RQ layers [1, 2], paper's design (20/50/80%);Latent-RQ layers [-1, 0] (ranked best, branch 50%);"
                      "Latent-RQ layers auto (branch 50%)", "--reference", str(reference), "--reference-steps", "10"]
    assert main(args) == 0
    report = json.loads((out / "study.json").read_text())
    assert len(report["arms"]) == 6 and report["best_layers"] == [-1, 0] and report["middle_layers"] == [1, 2]
    # the strong-θ pair continues the reference for --reference-steps, with its own Figure 3 points (every fifth)
    strong = [a for a in report["arms"] if a.startswith("reference")]
    assert strong == ["reference + 10 BEST-RQ steps", "reference + 10 Latent-RQ steps, layers [-1, 0]"]
    assert report["base"][strong[1]] == strong[0] and report["reference_steps"] == 10
    for name in strong:
        assert sorted(report["curves"][name], key=int) == ["6", "8", "10", "12"] and set(report["curves"][name]["6"]) == {"0", "1"}
        assert all(p.endswith("step_00000014") for p in report["runs"][name].values())
        cfg = yaml.safe_load((Path(report["runs"][name]["1"]).parents[1] / "config.yaml").read_text())
        assert cfg["quantizer"]["seed"] == latent["quantizer"]["seed"] and cfg["train"]["seed"] == 1  # the reference's quantizer
    assert report["paper_arm"] == "Latent-RQ layers [1, 2], paper's design (20/50/80%)"
    # each pre-training seed draws its own projections and codebooks, and the parent's config says so
    for seed in (0, 1):
        saved = yaml.safe_load((out / f"seed{seed}" / "bestrq" / "config.yaml").read_text())
        assert saved["quantizer"]["seed"] == 1234 + seed and saved["train"]["seed"] == seed
    cells = [row["pr"]["vs_base"] for row in report["arms"].values() if "vs_base" in row["pr"]]
    assert all(c["family"]["size"] == 8 and c["p_holm"] >= c["p"] for c in cells)  # (3 arms + strong θ) x 2 probes: one family
    for name, row in report["arms"].items():
        assert set(row) == {"pr", "sid"} and row["pr"]["n"] == 2, name
        assert ("vs_base" in row["pr"]) == (name not in ("BEST-RQ", strong[0])), name  # the bases have none
    # every arm ends at the budget; branches start where they say; the paper schedule refreshes twice after its branch
    hist = report["histories"]
    paper = report["paper_arm"]
    assert [h["start"] for h in hist[paper]["0"]] == [0, 2, 5, 8]
    auto = next(n for n in hist if "auto" in n)
    assert "layer_scores" in hist[auto]["1"][-1]
    assert all(json.loads(json.dumps(p)).endswith("step_00000010") for name, runs in report["runs"].items() for p in runs.values()
               if not name.startswith("reference"))
    assert set(report["theta_ranking"]["Mel"]) == {"0", "1", "reference"} and report["stage_gains"] and report["convergence"]["per_seed"]
    assert (out / "study.png").stat().st_size > 5000 and "| arm |" in (out / "study.md").read_text()
    # a second call reuses every run: no checkpoint is rewritten
    ckpt = out / "seed0" / "bestrq" / "checkpoints" / "step_00000010" / "model.safetensors"
    mtime = ckpt.stat().st_mtime_ns
    assert main(args) == 0 and ckpt.stat().st_mtime_ns == mtime
    # a finished seed is kept whole in its record: on a new machine with only the records and the runs' metrics.jsonl
    # (no checkpoint, no probe), the study is the same and nothing is trained or probed again
    import shutil

    study = (out / "study.json").read_text()
    for gone in [*out.glob("seed*/*/checkpoints"), *out.glob("seed*/eval*")]:
        shutil.rmtree(gone)
    assert main(args) == 0 and (out / "study.json").read_text() == study
    assert not list(out.glob("seed*/*/checkpoints")) and not list(out.glob("seed*/eval*"))
    # a record made by other settings is not reused: seed 1's is made again (here: trained again, its checkpoints gone)
    record = json.loads((out / "seed1" / "seed.json").read_text())
    (out / "seed1" / "seed.json").write_text(json.dumps({**record, "made_by": {**record["made_by"], "version": "0.0.1"}}))
    shutil.rmtree(out / "seed1" / "bestrq")
    assert main(args) == 0 and (out / "seed1" / "bestrq" / "checkpoints").is_dir() and not (out / "seed0" / "bestrq" / "checkpoints").exists()
    assert json.loads((out / "seed1" / "seed.json").read_text())["made_by"] == record["made_by"]
    # a record edited by hand is one line naming the file and key
    (out / "seed0" / "seed.json").write_text(json.dumps({**json.loads((out / "seed0" / "seed.json").read_text()), "scores": []}))
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "seed0/seed.json" in err and "scores" in err and len(err.strip().splitlines()) == 1
    # an arm name that does not exist is refused, naming it
    assert main([*args, "--ft-arms", "no such arm"]) == 2
    assert "no such arm" in capsys.readouterr().err
    # the report reads the study and names a verdict for each Latent-RQ claim
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "latent_study.json").write_text((out / "study.json").read_text())
    text = demo_report(tmp_path / "demo", docs)
    for claim in ("on phone recognition", "on SID", "grow with the stages", "middle layers", "separate phones", "fewer steps"):
        row = next(line for line in text.splitlines() if claim in line)
        assert row.count("**") == 2, row


def test_the_report_renders_the_shipped_rpq_results_with_verdicts(tmp_path):
    docs = Path(__file__).resolve().parents[1] / "docs"
    text = demo_report(tmp_path / "demo", docs)  # a demo folder without outputs: the shipped JSONs still give their rows
    rows = {claim: next((line for line in text.splitlines() if claim in line), None)
            for claim in ("PQ and RPQ units beat k-means units for ASR (Table II; docs run)", "eq. 13 with eq. 17", "a moderate α",
                          "de-duplication and BPE")}
    assert all(rows.values()), rows
    assert "α 0.125 0.169" in rows["a moderate α"]
    assert "**held (one fit per point)**" in rows["a moderate α"]  # NMSE at M = 32 is lowest at α = 0.125 (shipped report)
    docs_run = rows["PQ and RPQ units beat k-means units for ASR (Table II; docs run)"]
    assert "60.22" in docs_run and "not established" in docs_run and "all worse here" in docs_run
    # the demo folder has no comparison: its claim is said to be missing, not left out
    assert "| PQ and RPQ units beat k-means units for ASR (Table II; demo run) | - | - | **not measured** |" in text
    assert "**against (eq. 17's ρ); eq. 13's form with the measured ρ and coverage: held**" in rows["eq. 13 with eq. 17"]
    # the wide-source tables (docs/rpq_tables_mel.json): the paper's operating point against raw k-means, from its interval
    # read off the shipped JSON: RPQ M = 32, α = 0.125 against the raw k-means row (not the de-dup + BPE one beside it)
    mel = json.loads((docs / "rpq_tables_mel.json").read_text())
    d = next(r for r in mel["table2"] if r["kind"] == "rpq" and r["M"] == 32 and r["alpha"] == 0.125)[
        "differences"][mel["baselines"].index("k-means (k=500)")]
    c = d["cer"]
    expected = {"better": HELD, "worse": AGAINST, "within noise": NOISE}[d["verdict"]]
    point = next(line for line in text.splitlines() if "paper's operating point" in line and "against k-means (k=500))" in line)
    assert f"{c['difference']:+.2f} [{c['ci'][0]:+.2f}, {c['ci'][1]:+.2f}]" in point and f"**{expected}**" in point
    assert "**does not apply here" in next(line for line in text.splitlines() if "(Table VII)" in line)


def test_the_rpq_claim_follows_the_verdicts_in_either_direction(tmp_path):
    """With training seeds, each k-means row is a claim of its own: held, against or within noise as the intervals say;
    with one seed nothing is established, whatever the utterance intervals show."""
    import json

    def compare(cis: list[tuple[float, float]], seeds: list[int]) -> dict:
        rows = {"k-means (k=500)": {"cer": 60.0}, "PQ (M=2)": {"cer": 58.0}, "RPQ (M=8, α=0.25)": {"cer": 59.0}}
        diffs = [{"row": row, "baseline": "k-means (k=500)", "cer": {"difference": (lo + hi) / 2, "ci": [lo, hi], "utterances": 300},
                  "verdict": "better" if hi < 0 else "worse" if lo > 0 else "within noise"}
                 for row, (lo, hi) in zip(("PQ (M=2)", "RPQ (M=8, α=0.25)"), cis)]
        return {"training_seeds": seeds, "rows": rows, "differences": diffs}

    def claim(c: dict) -> str:
        (tmp_path / "demo" / "asr").mkdir(parents=True, exist_ok=True)
        (tmp_path / "demo" / "asr" / "compare.json").write_text(json.dumps(c))
        text = demo_report(tmp_path / "demo", tmp_path / "no-docs")
        return next(line for line in text.splitlines() if "demo run; against k-means (k=500)" in line)

    assert "**held**" in claim(compare([(-3.0, -1.0), (-2.0, -0.5)], [0, 1, 2]))
    assert "**against**" in claim(compare([(1.0, 3.0), (0.5, 2.0)], [0, 1, 2]))
    assert "**not at this scale (within noise)**" in claim(compare([(-1.0, 1.0), (-2.0, 0.5)], [0, 1, 2]))
    assert "mixed: PQ (M=2) better, RPQ (M=8, α=0.25) within noise" in claim(compare([(-3.0, -1.0), (-2.0, 0.5)], [0, 1, 2]))
    one = claim(compare([(-3.0, -1.0), (-2.0, -0.5)], [0]))
    assert "not established" in one and "one training seed" in one and "[-3.00, -1.00]" in one
