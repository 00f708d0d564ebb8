"""The command line: --help everywhere, user mistakes as one line with exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from speechrq.cli import main


def _run(*args):
    return subprocess.run([sys.executable, "-m", "speechrq.cli", *args], capture_output=True, text=True)


def _every_command(parser=None, prefix=()):
    """Every command path of the parser, found by walking its sub-parsers (a new sub-command is covered by itself)."""
    import argparse

    from speechrq.cli import build_parser

    parser = parser or build_parser()
    yield list(prefix)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _every_command(sub, (*prefix, name))


def test_the_walk_finds_every_command():
    paths = [" ".join(p) for p in _every_command()]
    assert {"pretrain", "evaluate", "bench pretrain", "data import", "features stats"} <= set(paths)


@pytest.mark.parametrize("args", list(_every_command()), ids=lambda a: " ".join(a) or "speechrq")
def test_help_everywhere(args):
    r = _run(*args, "--help")
    assert r.returncode == 0 and "usage: speechrq" in r.stdout


def test_user_mistakes_are_one_line(tmp_path, capsys):
    assert main(["data", "import", "folder", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"speechrq: error: {tmp_path / 'nowhere'}: no such directory"
    assert main(["synth", str(tmp_path / "c"), "--speakers", "1"]) == 2
    assert "--speakers" in capsys.readouterr().err
    assert main(["data", "summary", str(tmp_path)]) == 2
    assert "no cuts_*.jsonl manifest" in capsys.readouterr().err
    r = _run("data", "import", "mp3zoo", str(tmp_path), str(tmp_path / "o"))
    assert r.returncode == 2 and "invalid choice" in r.stderr and "Traceback" not in r.stderr


def test_synth_then_stats_then_summary_reuse_their_work(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["synth", str(out), "--hours", "0.01", "--speakers", "4", "--workers", "2", "--quiet"]) == 0
    first = capsys.readouterr().out
    assert "phone alignments" in first and "total" in first
    assert main(["synth", str(out), "--hours", "0.01", "--speakers", "4", "--quiet"]) == 0
    assert "already complete, reusing it" in capsys.readouterr().out
    assert main(["features", "stats", str(out), "--quiet"]) == 0
    assert (out / "feature_stats.json").exists()
    assert main(["features", "stats", str(out), "--quiet"]) == 0
    assert "reusing it" in capsys.readouterr().out
    assert main(["data", "summary", str(out)]) == 0
    assert "speakers" in capsys.readouterr().out


def _help_text(*path: str) -> str:
    """A sub-command's --help, whitespace collapsed (argparse wraps lines anywhere)."""
    from speechrq.cli import build_parser

    parser = build_parser()
    for name in path:
        parser = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices[name]
    return " ".join(parser.format_help().split())


@pytest.mark.parametrize("path", [("evaluate",), ("units", "fit"), ("units", "encode"), ("units", "report"), ("asr", "decode"),
                                  ("asr", "transcribe")], ids=" ".join)
def test_every_command_that_reads_audio_at_inference_quotes_the_encoders_minimum(path):
    """The help quotes the numbers the code enforces (speechrq.encoders: a checkpoint's, a standard Hugging Face front end's)."""
    from speechrq.encoders.frozen import MIN_SAMPLES, describe_samples
    from speechrq.encoders.hf import hf_min_samples

    text = _help_text(*path)
    assert f"{describe_samples(MIN_SAMPLES)[:-1]} at 16 kHz) for a speechrq checkpoint" in text
    assert f"{describe_samples(hf_min_samples({}))} for a standard Hugging Face" in text


def test_import_from_a_relative_source_then_stats_from_another_directory(tmp_path):
    """Issue 21.4, as a user ran it: `data import folder relsrc out` kept every file but stored paths nobody could read, and
    `features stats` ended in a RuntimeError. The corpus is also read after being moved."""
    import numpy as np
    import soundfile as sf

    for name in ("speaker one/take 1.wav", "speaker one/take 2.wav", "b/c.flac"):
        (tmp_path / "relsrc" / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / "relsrc" / name, (0.1 * np.sin(np.arange(8000) / 5.0)).astype(np.float32), 16000)

    def run(cwd, *args):
        return subprocess.run([sys.executable, "-m", "speechrq", *args], capture_output=True, text=True, cwd=cwd)

    r = run(tmp_path, "data", "import", "folder", "relsrc", "out", "--quiet", "--workers", "1")
    assert r.returncode == 0 and "3 files kept, 0 skipped" in r.stdout, r.stderr
    (tmp_path / "out").rename(tmp_path / "moved")
    (tmp_path / "cwd").mkdir()
    r = run(tmp_path / "cwd", "features", "stats", "../moved", "--quiet")
    assert r.returncode == 0 and "from 3 utterances" in r.stdout, r.stderr
