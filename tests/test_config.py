"""The typed YAML config system: every user mistake is one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechrq.config import ConfigError, config_to_dict, diff_configs, load_config, parse_override
from speechrq.pretrain.config import PretrainConfig


def write(tmp_path, text: str):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


GOOD = "out_dir: exp/x\ndata:\n  corpus: exp/c\noptim:\n  lr: 3e-4\n  max_steps: 100\n  warmup_steps: 10\n"


def test_loads_types_defaults_and_yaml_floats(tmp_path):
    cfg = load_config(PretrainConfig, write(tmp_path, GOOD))
    assert cfg.optim.lr == pytest.approx(3e-4)  # "3e-4" is a string to PyYAML
    assert cfg.optim.max_steps == 100 and cfg.masking.prob == 0.4 and cfg.masking.mode == "fraction"
    assert cfg.optim.betas == (0.9, 0.98)
    assert config_to_dict(cfg)["optim"]["betas"] == [0.9, 0.98]


@pytest.mark.parametrize("text, expected", [
    ("optim:\n  lrr: 1\n", "unknown key 'optim.lrr'"),
    ("optim:\n  lr: fast\n", "optim.lr: expected a number, got 'fast'"),
    ("optim:\n  max_steps: 1.5\n", "optim.max_steps: expected an integer"),
    ("masking:\n  mode: middle\n", "masking.mode: expected one of 'fraction', 'start'"),
    ("train:\n  deterministic: 1\n", "train.deterministic: expected true or false"),
    ("optim:\n  betas: [0.9]\n", "optim.betas: expected a list of 2 values"),
    ("optim:\n  warmup_steps: 500\n  max_steps: 100\n", "optim.warmup_steps: must be in [0, max_steps=100]"),
    ("model:\n  preset: huge\n", "model.preset: 'huge' is not one of"),
    ("masking:\n  prob: 1.5\n", "masking.prob: must be in (0, 1]"),
    ("data:\n  corpus: ''\n", "data.corpus: required"),
    ("data: [1, 2]\n", "data: expected a mapping"),
    ("- a\n- b\n", "expected a mapping of keys at the top level"),
    ("optim: {lr: 1\n", "not valid YAML at line"),
    ("optim:\n  lr: .nan\n", "optim.lr: expected a finite number, got nan"),
    ("optim:\n  clip_norm: .inf\n", "optim.clip_norm: expected a finite number, got inf"),
    ("masking:\n  prob: .NaN\n", "masking.prob: expected a finite number"),
    ("targets:\n  cache_max_gb: -.inf\n", "targets.cache_max_gb: expected a finite number"),
])
def test_bad_configs_are_one_line_errors(tmp_path, text, expected):
    base = "out_dir: x\n" + ("" if text.startswith(("data", "-")) else "data:\n  corpus: c\n")
    path = write(tmp_path, base + text if not text.startswith("-") else text)
    with pytest.raises(ConfigError) as e:
        load_config(PretrainConfig, path)
    msg = str(e.value)
    assert expected in msg and "\n" not in msg and msg.startswith(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(PretrainConfig, tmp_path / "nope.yaml")


def test_overrides(tmp_path):
    path = write(tmp_path, GOOD)
    cfg = load_config(PretrainConfig, path, ["optim.lr=1e-3", "masking.mode=start", "model.dropout=null", "train.seed=5"])
    assert cfg.optim.lr == 1e-3 and cfg.masking.mode == "start" and cfg.model.dropout is None and cfg.train.seed == 5
    with pytest.raises(ConfigError, match="unknown key 'optim.nope'"):
        load_config(PretrainConfig, path, ["optim.nope=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("optim.lr")
    with pytest.raises(ConfigError, match="'lr' is not a mapping"):
        load_config(PretrainConfig, path, ["optim.lr.x=1"])


def test_diff_configs():
    a = {"optim": {"lr": 1, "max_steps": 5}, "seed": 0}
    b = {"optim": {"lr": 2, "max_steps": 5}, "seed": 0, "new": 1}
    assert diff_configs(a, b) == ["new", "optim.lr"]


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).resolve().parents[1] / "configs" / "pretrain").glob("*.yaml")))
def test_every_shipped_pretrain_config_loads(name):
    from speechrq.pretrain.config import PretrainConfig

    cfg = load_config(PretrainConfig, Path(__file__).resolve().parents[1] / "configs" / "pretrain" / name)
    assert cfg.target_layers()
