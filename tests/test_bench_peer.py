"""benchmarks/bench_peer.py end to end at a tiny size: one process a side, the malloc setting of each side recorded."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_peer.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_bad_arguments_are_one_line_errors():
    for args, word in ((["--preset", "huge"], "not a preset"), (["--rounds", "0"], "at least 1")):
        proc = run(*args)
        assert proc.returncode == 2 and word in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("conformer", "vector_quantize_pytorch")),
                    reason="the peer is not installed (pip install 'speechrq[bench]', make bench does it)")
def test_both_sides_step_in_their_own_processes_and_the_ratio_is_theirs(tmp_path):
    out = tmp_path / "peer.json"
    proc = run("--batch-seconds", "4", "--num-codebooks", "2", "--codebook-size", "64", "--rounds", "2", "--steps", "1",
               "--peer-keeps-freed-memory", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    d = json.loads(out.read_text())
    assert d["heads"] == "2x64" and d["batch_audio_s"] >= 4
    assert d["speechrq_keeps_freed_memory"] is d["peer_keeps_freed_memory"] is (sys.platform == "linux")
    assert d["ratio"] == pytest.approx(d["speechrq_s_per_step"] / d["peer_s_per_step"])
    assert "one process a side" in proc.stdout and "x the peer's" in proc.stdout
