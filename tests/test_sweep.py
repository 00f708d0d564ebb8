"""``speechrq bench sweep``: recipe points trained for the same wall clock, probed once, tabulated; bad sweep files refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import tiny_pretrain_config

from speechrq.cli import main
from speechrq.config import ConfigError
from speechrq.studies.sweep import read_sweep


@pytest.mark.slow
def test_a_sweep_trains_each_point_for_the_same_wall_clock_and_reuses_what_it_finished(pretrain_corpus, tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny_pretrain_config(pretrain_corpus, tmp_path / "unused")))
    spec = {"config": str(tmp_path / "tiny.yaml"), "set": ["quantizer.codebook_dim=8"], "steps": 6,
            "points": {"base": [], "8 x 512": ["quantizer.num_codebooks=8", "quantizer.codebook_size=512"],
                       "pinned": ["optim.max_steps=3"]}}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(spec))
    args = ["bench", "sweep", str(tmp_path / "sweep.yaml"), "--corpus", str(pretrain_corpus), "--out", str(tmp_path / "s"),
            "--probe-seeds", "2", "--epochs", "1", "--quiet"]
    assert main(args) == 0
    report = json.loads((tmp_path / "s" / "sweep.json").read_text())
    rows = report["points"]
    assert rows["base"]["max_steps"] == 6 and rows["pinned"]["max_steps"] == 3
    # `set` changes the base recipe, and so every point
    for name in ("base", "8 x 512"):
        assert yaml.safe_load((tmp_path / "s" / "runs" / name.replace(" ", "_") / "config.yaml").read_text())["quantizer"]["codebook_dim"] == 8
    # a point trains the base's wall clock: its steps follow its measured step-time ratio (whether the bigger
    # heads cost more per step is a timing, which belongs in `make bench`, not in a test sharing the cores)
    ratio = rows["8 x 512"]["step_time_ratio"]
    assert ratio > 0 and rows["8 x 512"]["max_steps"] == max(1, round(6 / ratio))
    assert set(report["scores"]) == {"base", "8 x 512", "pinned", "random-init-tiny", "fbank"}
    assert all(0 < r["masked_fraction"] < 1 for r in rows.values())
    table = (tmp_path / "s" / "sweep.md").read_text()
    assert table.count("\n| ") == 1 + 5 and "random-init-tiny | baseline" in table
    assert report["baselines"]["random-init-tiny"]["preset"] == "tiny" and "random-init-tiny: the tiny preset" in table
    assert "before issue 35" not in table
    mtime = (tmp_path / "s" / "runs" / "base" / "metrics.jsonl").stat().st_mtime_ns
    assert main(args) == 0  # everything reused
    assert (tmp_path / "s" / "runs" / "base" / "metrics.jsonl").stat().st_mtime_ns == mtime


@pytest.mark.parametrize("spec,message", [
    ({"points": {"a": []}}, "keys config, set .optional., steps, points"),
    ({"config": "x.yaml", "set": "lr=1", "points": {"a": []}}, "set: a list of KEY=VALUE"),
    ({"config": "x.yaml", "steps": 0, "points": {"a": []}}, "steps: a positive integer"),
    ({"config": "x.yaml", "points": {"a": ["lr"]}}, "KEY=VALUE"),
    ({"config": "x.yaml", "points": {"a/b": []}}, "without '/'"),
])
def test_bad_sweep_files_are_refused_with_the_key_named(spec, message, tmp_path):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=message):
        read_sweep(tmp_path / "s.yaml")


def test_a_sweep_page_made_before_issue_35_says_how_its_baselines_were_made():
    from speechrq.studies.sweep import format_sweep

    old = json.loads((Path(__file__).parents[1] / "docs" / "sweep_tiny.json").read_text())
    assert "baselines" not in old and "Baselines made before issue 35" in format_sweep(old)
