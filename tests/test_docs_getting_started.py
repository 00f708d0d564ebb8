"""The Python snippet of docs/getting-started.md runs as written, on a corpus and a checkpoint this test makes."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import tiny_pretrain_config

PAGE = Path(__file__).resolve().parents[1] / "docs" / "getting-started.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def test_the_page_has_one_python_snippet_with_the_demo_paths():
    (code,) = python_blocks(PAGE.read_text())
    assert 'CORPUS = "exp/demo/corpus"' in code and 'CHECKPOINT = "exp/demo/stage0/checkpoints/step_00001000"' in code


def test_the_getting_started_snippet_runs(pretrain_corpus, tmp_path, monkeypatch, capsys):
    from speechrq.checkpoint import save_checkpoint, step_dir
    from speechrq.config import config_from_dict, config_to_dict
    from speechrq.features import FeatureStats
    from speechrq.pretrain.config import PretrainConfig
    from speechrq.pretrain.model import build_model

    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(pretrain_corpus, tmp_path / "run"))
    model = build_model(cfg, FeatureStats.load(pretrain_corpus / "feature_stats.json"))
    ckpt = save_checkpoint(step_dir(tmp_path / "run", 0), model.state_dict(), {}, {"config": config_to_dict(cfg), "step": 0})
    (code,) = python_blocks(PAGE.read_text())
    code = code.replace('"exp/demo/corpus"', repr(str(pretrain_corpus))).replace(
        '"exp/demo/stage0/checkpoints/step_00001000"', repr(str(ckpt)))
    monkeypatch.chdir(tmp_path)  # the snippet saves its quantizer under exp/units/
    exec(compile(code, str(PAGE), "exec"), {"__name__": "snippet"})
    out = capsys.readouterr().out
    assert re.search(r"\d+ states; layer 2: \d+ frames of \d+ dimensions", out), out
    assert re.search(r"units \(\d+, 4\) uint16; reconstruction NMSE 0\.\d{3}", out), out
    from speechrq.units import UnitQuantizer

    q = UnitQuantizer.load(tmp_path / "exp" / "units" / "first_rpq")
    assert q.spec.kind == "rpq" and q.num_streams == 4
