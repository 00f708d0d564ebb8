"""The shipped configs and reference checkpoint by name (speechrq.resources), and ``speechrq configs list|show|copy``."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechrq.cli import build_parser, main
from speechrq.resources import (CONFIG_KINDS, REFERENCE, checkpoint_arg, config_arg, config_names, config_path, describe,
                                reference_checkpoint)

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_configs_are_the_clone_s_configs():
    """``configs/`` at the repository root is the package's folder: one set of files, addressable both ways."""
    for kind in CONFIG_KINDS:
        shipped = {p.name for p in (ROOT / "configs" / kind).glob("*.yaml")}
        assert shipped == {f"{n}.yaml" for n in config_names(kind)} and shipped
        for name in config_names(kind):
            assert config_path(kind, name).read_bytes() == (ROOT / "configs" / kind / f"{name}.yaml").read_bytes()
            assert describe(config_path(kind, name)), f"{kind}/{name}: no description comment"
    assert (reference_checkpoint() / "model.safetensors").is_file() and (reference_checkpoint() / "meta.json").is_file()


def test_a_name_resolves_and_a_path_that_exists_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pretrain = config_arg("pretrain")
    assert pretrain("tiny") == pretrain("tiny.yaml") == str(config_path("pretrain", "tiny"))
    assert config_arg("asr")("tiny") == str(config_path("asr", "tiny")) != pretrain("tiny")
    assert pretrain("nosuch") == "nosuch" and pretrain("sub/tiny") == "sub/tiny"  # not a name: left to the reader
    Path("tiny").write_text("out_dir: mine\n")
    assert pretrain("tiny") == "tiny"  # the user's file, not the shipped one
    assert checkpoint_arg(REFERENCE) == str(reference_checkpoint())
    Path(REFERENCE).mkdir()
    assert checkpoint_arg(REFERENCE) == REFERENCE
    assert checkpoint_arg("exp/run/checkpoints/step_00000010") == "exp/run/checkpoints/step_00000010"


def test_every_command_that_takes_a_config_or_a_checkpoint_takes_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = build_parser()
    assert p.parse_args(["pretrain", "tiny_latent"]).config == str(config_path("pretrain", "tiny_latent"))
    assert p.parse_args(["asr", "train", "tiny"]).config == str(config_path("asr", "tiny"))
    ref = str(reference_checkpoint())
    compare = p.parse_args(["asr", "compare", "tiny", "--encoder", REFERENCE, "--layer", "2", "--corpus", "c", "--out", "o"])
    assert compare.config == str(config_path("asr", "tiny")) and compare.encoder == ref
    assert p.parse_args(["units", "fit", "--encoder", REFERENCE, "--layer", "2", "--corpus", "c", "--kind", "kmeans",
                         "--out", "o"]).encoder == ref
    assert p.parse_args(["evaluate", REFERENCE, "exp/x", "--corpus", "c", "--out", "o"]).checkpoints == [ref, "exp/x"]
    assert p.parse_args(["pretrain", "tiny_latent", "--init-from", REFERENCE]).init_from == ref
    assert p.parse_args(["export", REFERENCE, "out"]).checkpoint == ref
    latent = p.parse_args(["bench", "latent", "--corpus", "c", "--out", "o", "--best-layers", "1,2"])
    assert (latent.config, latent.latent_config) == (str(config_path("pretrain", "tiny")), str(config_path("pretrain", "tiny_latent")))


def test_a_missing_config_is_one_line_that_points_at_the_names(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", "nosuch.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "speechrq: error: nosuch.yaml: no such config file (a shipped config's name works too: speechrq configs list)"


def test_configs_list_show_and_copy(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["configs", "list"]) == 0
    out = capsys.readouterr().out
    for kind in CONFIG_KINDS:
        for name in config_names(kind):
            assert f"  {name} " in out and describe(config_path(kind, name)) in out
    assert REFERENCE in out and str(reference_checkpoint()) in out

    assert main(["configs", "show", "small"]) == 0
    assert capsys.readouterr().out == config_path("pretrain", "small").read_text()
    assert main(["configs", "show", "asr/tiny"]) == 0
    assert capsys.readouterr().out == config_path("asr", "tiny").read_text()
    assert main(["configs", "show", "tiny"]) == 2  # a pre-training and an ASR config: which one?
    assert "pretrain/tiny or asr/tiny" in capsys.readouterr().err
    assert main(["configs", "show", "nosuch"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "nosuch: not a shipped config" in err and "tiny_latent_paper" in err

    assert main(["configs", "copy", "pretrain/tiny"]) == 0
    assert Path("tiny.yaml").read_bytes() == config_path("pretrain", "tiny").read_bytes()
    Path("tiny.yaml").write_text("out_dir: edited\n")
    assert main(["configs", "copy", "pretrain/tiny"]) == 2  # nothing overwritten without --force
    assert "already exists" in capsys.readouterr().err and Path("tiny.yaml").read_text() == "out_dir: edited\n"
    assert main(["configs", "copy", "pretrain/tiny", "--force"]) == 0
    assert Path("tiny.yaml").read_bytes() == config_path("pretrain", "tiny").read_bytes()
    Path("mine").mkdir()
    assert main(["configs", "copy", "tiny_latent", "mine"]) == 0 and (Path("mine") / "tiny_latent.yaml").is_file()
    # the copy is a config the trainer reads whole
    from speechrq.config import load_config
    from speechrq.pretrain.config import PretrainConfig

    assert load_config(PretrainConfig, "mine/tiny_latent.yaml") == load_config(PretrainConfig, config_path("pretrain", "tiny_latent"))


@pytest.mark.parametrize("kind", CONFIG_KINDS)
def test_every_shipped_config_loads_whole(kind):
    from speechrq.asr.config import ASRConfig
    from speechrq.config import load_config
    from speechrq.pretrain.config import PretrainConfig

    for name in config_names(kind):
        load_config(PretrainConfig if kind == "pretrain" else ASRConfig, config_path(kind, name))


def test_bad_names_and_destinations_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ("pretrain/../asr/tiny", "", "/etc/passwd", "nosuchkind/tiny"):
        assert main(["configs", "show", name]) == 2, name
        err = capsys.readouterr().err.strip()
        assert err.startswith("speechrq: error: ") and "\n" not in err, (name, err)
    assert main(["configs", "copy", "small", "missing/"]) == 2 and "missing/: no such folder" in capsys.readouterr().err
    assert not Path("missing").exists()
    assert main(["configs", "copy", "small", ""]) == 2 and "DEST: empty" in capsys.readouterr().err
    assert build_parser().parse_args(["pretrain", "pretrain/tiny"]).config == str(config_path("pretrain", "tiny"))
