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
