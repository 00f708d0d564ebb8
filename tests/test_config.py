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


# ---------------------------------------------------------------- a key given twice (issue 34.6)

@pytest.mark.parametrize("text, expected", [
    # the case: the later lr would have trained, without a word
    ("out_dir: x\ndata:\n  corpus: c\noptim:\n  lr: 2.0e-3\n  max_steps: 100\n  lr: 9.0\n", "line 7: key 'lr' given twice (first at line 5)"),
    # a second optim: block would have replaced the first whole
    ("out_dir: x\ndata:\n  corpus: c\noptim:\n  lr: 2.0e-3\ntrain:\n  seed: 1\noptim:\n  max_steps: 100\n",
     "line 8: key 'optim' given twice (first at line 4)"),
    ("out_dir: x\ndata: {corpus: c, corpus: d}\n", "line 2: key 'corpus' given twice (first at line 2)"),  # one flow line
    ("out_dir: x\ndata:\n  corpus: c\nout_dir: y\n", "line 4: key 'out_dir' given twice (first at line 1)"),
    ("out_dir: x\ndata:\n  corpus: c\nmodel:\n  preset: tiny\n  dropout: 0.1\n  \"dropout\": 0.2\n",
     "line 7: key 'dropout' given twice (first at line 6)"),  # quoted or not, the same key
])
def test_a_config_key_given_twice_is_refused_naming_file_line_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(PretrainConfig, path)
    assert str(e.value) == f"{path}: {expected}"


def test_the_same_key_in_different_mappings_and_yaml_merge_keys_are_allowed(tmp_path):
    from speechrq.config import read_yaml

    path = write(tmp_path, "a:\n  lr: 1\nb:\n  lr: 2\nbase: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\nl: [{k: 1}, {k: 2}]\n")
    assert read_yaml(path) == {"a": {"lr": 1}, "b": {"lr": 2}, "base": {"x": 1, "y": 2}, "c": {"x": 3, "y": 2}, "l": [{"k": 1}, {"k": 2}]}
    with pytest.raises(ConfigError, match=r"line 2: key 'x' given twice \(first at line 1\)"):
        read_yaml(write(tmp_path, "c: {<<: {x: 1}, x: 2,\n     x: 3}\n"))


def test_the_cli_refuses_a_config_key_given_twice_in_one_line(tmp_path, capsys):
    from speechrq.cli import main

    path = write(tmp_path, GOOD.replace("exp/x", str(tmp_path / "run")) + "  lr: 9.0\n")
    assert main(["pretrain", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"speechrq: error: {path}: line 8: key 'lr' given twice (first at line 5)\n"
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_a_sweep_file_with_a_key_given_twice_is_refused(tmp_path):
    from speechrq.studies.sweep import read_sweep

    path = tmp_path / "s.yaml"
    path.write_text("config: c.yaml\nsteps: 10\npoints:\n  a: [optim.lr=1e-3]\n  a: [optim.lr=2e-3]\n")
    with pytest.raises(ConfigError, match=rf"^{path}: line 5: key 'a' given twice \(first at line 4\)$"):
        read_sweep(path)


def test_set_given_the_same_key_twice_keeps_the_later_and_help_says_so(tmp_path, capsys):
    from speechrq.cli import main

    path = write(tmp_path, GOOD)
    cfg = load_config(PretrainConfig, path, ["optim.lr=1e-3", "train.seed=4", "optim.lr=2e-3"])
    assert cfg.optim.lr == 2e-3 and cfg.train.seed == 4  # the command-line convention: the later wins
    cfg = load_config(PretrainConfig, path, ["optim={lr: 5.0e-4, max_steps: 50, warmup_steps: 5}", "optim.lr=1e-3"])
    assert cfg.optim.lr == 1e-3 and cfg.optim.max_steps == 50
    with pytest.raises(ConfigError, match=r"^--set 'optim=\{lr: 1, lr: 2\}': line 1: key 'lr' given twice \(first at line 1\)$"):
        parse_override("optim={lr: 1, lr: 2}")  # a mapping given as a value is a config too
    for argv in (["pretrain", "--help"], ["asr", "train", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert "the same key twice: the later wins" in " ".join(capsys.readouterr().out.split())


def test_every_shipped_yaml_file_gives_each_key_once():
    from speechrq.config import read_yaml

    root = Path(__file__).resolve().parents[1]
    files = [p for d in ("configs", "benchmarks") for p in (root / d).rglob("*.y*ml")]
    assert files
    for p in files:
        read_yaml(p)


def test_a_json_file_with_a_key_given_twice_is_refused_naming_file_and_key(tmp_path):
    from speechrq.checkpoint import read_meta
    from speechrq.errors import SpeechrqError
    from speechrq.io import read_json

    path = tmp_path / "settings.json"
    path.write_text('{"settings": {"lr": 0.002, "steps": 5, "lr": 9.0}, "rows": []}')
    with pytest.raises(SpeechrqError) as e:
        read_json(path)
    assert str(e.value) == f"{path}: key 'lr' given twice in one object; keep one"
    path.write_text('{"a": 1, "b": {"a": 2}, "c": [{"a": 3}, {"a": 4}]}')
    assert read_json(path) == {"a": 1, "b": {"a": 2}, "c": [{"a": 3}, {"a": 4}]}  # the same key in different objects
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "meta.json").write_text('{"step": 5, "config": {"optim": {"lr": 1}}, "step": 6}')
    with pytest.raises(SpeechrqError, match=r"meta\.json: key 'step' given twice"):
        read_meta(tmp_path / "ckpt")
