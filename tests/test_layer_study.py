"""Table 2 layer study: one branch per target-layer set from the same stage-0 checkpoint."""

from __future__ import annotations

import pytest
from conftest import tiny_pretrain_config

from speechrq.checkpoint import read_meta
from speechrq.config import config_from_dict
from speechrq.errors import SpeechrqError
from speechrq.studies.layer_study import layer_study, parse_layer_sets
from speechrq.pretrain.config import PretrainConfig
from speechrq.pretrain.stages import branch_parent
from speechrq.pretrain.trainer import train


def test_parse_layer_sets():
    assert parse_layer_sets("1;2;1,2") == [[1], [2], [1, 2]]
    assert parse_layer_sets(" -1 ; 0,3 ;") == [[-1], [0, 3]]
    with pytest.raises(SpeechrqError, match="'1,x'"):
        parse_layer_sets("1;1,x")
    with pytest.raises(SpeechrqError, match="no layer set"):
        parse_layer_sets(" ; ")


def test_layer_study_branches_and_skips_finished(pretrain_corpus, tmp_path):
    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(pretrain_corpus, tmp_path / "stage0", optim={"max_steps": 4}))
    parent = train(cfg, progress=False)
    finals = layer_study(parent, [[1], [0, 2]], steps=2, out=tmp_path / "ev", progress=False)
    assert list(finals) == ["layers 1", "layers 0,2"]
    for layers, ckpt in zip([[1], [0, 2]], finals.values()):
        meta = read_meta(ckpt)
        assert meta["step"] == 6 and meta["config"]["targets"]["layers"] == layers
        assert meta["stage"] == 1 and meta["history"][-1]["start"] == 4
        assert branch_parent(meta) == str(parent) and branch_parent(read_meta(parent)) is None
    before = {k: (v / "model.safetensors").stat().st_mtime_ns for k, v in finals.items()}
    again = layer_study(parent, [[1], [0, 2]], steps=2, out=tmp_path / "ev", progress=False)
    assert again == finals and {k: (v / "model.safetensors").stat().st_mtime_ns for k, v in again.items()} == before
