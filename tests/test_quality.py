"""``speechrq bench quality``: a short pre-training probed every N steps against both baselines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import tiny_pretrain_config

from speechrq.cli import main
from speechrq.studies.quality import headline


def _model(step, test, std, dev=None):
    return {"step": step, "tasks": {"pr": {"test": test, "test_std": std, "dev": test if dev is None else dev, "metric": "per"}}}


def test_headline_finds_the_first_step_beyond_noise():
    results = {"models": {"run@100": _model(100, 50.0, 1.0), "run@200": _model(200, 44.0, 1.0), "run@300": _model(300, 40.0, 0.5),
                          "random-init": _model(None, 55.0, 1.0), "fbank": _model(None, 46.0, 1.5)}}
    h = headline(results, "run", "pr", {100: 1.0, 200: 2.0, 300: 3.0}, demo_step=200)
    assert h["stronger_baseline"] == "fbank"
    assert [c["margin"] for c in h["curve"]] == [-4.0, 2.0, 6.0]
    # step 200 is 2 points better, but the noise is 1.0 + 1.5: only step 300 is beyond it
    assert h["first_beyond_noise"]["step"] == 300 and h["first_beyond_noise"]["minutes"] == 3.0
    assert h["at_demo_step"]["margin"] == 2.0 and h["best"]["step"] == 300
    # the stronger baseline and the best step are chosen on dev, whatever test says
    results["models"]["random-init"] = _model(None, 55.0, 1.0, dev=40.0)
    results["models"]["run@200"] = _model(200, 44.0, 1.0, dev=30.0)
    h = headline(results, "run", "pr", {100: 1.0, 200: 2.0, 300: 3.0}, demo_step=200)
    assert h["stronger_baseline"] == "random-init" and h["best"]["step"] == 200


@pytest.mark.slow
def test_bench_quality_writes_json_and_png_and_reuses_the_run(pretrain_corpus, tmp_path, capsys):
    cfg = tiny_pretrain_config(pretrain_corpus, tmp_path / "unused")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "q"
    args = ["bench", "quality", str(tmp_path / "tiny.yaml"), "--corpus", str(pretrain_corpus), "--out", str(out), "--steps", "4",
            "--every", "2", "--probe-seeds", "2", "--epochs", "2", "--demo-step", "2", "--quiet"]
    assert main(args) == 0
    report = json.loads((out / "quality.json").read_text())
    pr = report["tasks"]["pr"]
    assert [c["step"] for c in pr["curve"]] == [2, 4] and set(pr["baselines"]) == {"random-init", "fbank"}
    assert all(c["minutes"] > 0 for c in pr["curve"]) and pr["at_demo_step"]["step"] == 2
    assert (out / "quality.png").stat().st_size > 5000
    assert report["baselines"]["random-init"]["preset"] == "tiny" and report["baselines"]["random-init"]["init_seeds"] == [0, 1, 2]
    page = capsys.readouterr().out
    assert "| step | training min |" in page and "random-init: the tiny preset" in page and "before issue 35" not in page
    ckpts = sorted(p.name for p in (out / "run" / "checkpoints").iterdir())
    mtimes = [(out / "run" / "checkpoints" / c / "model.safetensors").stat().st_mtime_ns for c in ckpts]
    assert main(args) == 0  # the finished run is reused, not retrained
    assert [(out / "run" / "checkpoints" / c / "model.safetensors").stat().st_mtime_ns for c in ckpts] == mtimes
    assert main([*args[:-1], "--every", "3", "--quiet"]) == 2
    assert "multiple of every" in capsys.readouterr().err


def test_a_quality_page_made_before_issue_35_says_how_its_baselines_were_made():
    from speechrq.studies.quality import format_quality

    old = json.loads((Path(__file__).parents[1] / "docs" / "quality_tiny_bestrq.json").read_text())
    assert "baselines" not in old
    assert "Made before issue 35" in format_quality(old) and "chosen on test" in format_quality(old)
