"""benchmarks/gpu_check.py on a CPU: the smoke run's lines, exit status and JSON (its CUDA paths need a GPU)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
LINE = re.compile(r"^(\w+): (PASS|FAIL|SKIP)  (.+) \[\d+\.\d s\]$")


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_smoke_subset_on_cpu(tmp_path):
    """The checks that need no corpus: the CPU ones pass, the GPU-only ones skip after a dry run of their code."""
    checks = ["device", "peak", "pretrain_bf16", "latent_ratio", "ddp_nccl", "decode_gpu"]
    out = tmp_path / "gpu_check.json"
    proc = run("--device", "cpu", "--smoke", "--checks", ",".join(checks), "--json", str(out))
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert [line.split(":")[0] for line in lines] == checks + ["total"]
    status = {}
    for line in lines[:-1]:
        m = LINE.match(line)
        assert m, line
        status[m.group(1)] = m.group(2)
    assert all(status[c] == "PASS" for c in ("device", "peak", "pretrain_bf16", "latent_ratio")), proc.stdout
    assert status["ddp_nccl"] == status["decode_gpu"] == "SKIP"
    assert "dry run of the same code on the CPU ok" in proc.stdout
    assert lines[-1].startswith("total: PASS  4 passed, 0 failed, 2 skipped")
    results = {r["check"]: r for r in json.loads(out.read_text())["results"]}
    assert results["pretrain_bf16"]["metrics"]["s_per_step"] > 0
    assert 0 < results["pretrain_bf16"]["metrics"]["mfu"] < 1
    assert results["latent_ratio"]["metrics"]["ratio"] > 0


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the machine has CUDA")
def test_cuda_asked_without_cuda_fails():
    """--device cuda where torch sees none: every check a FAIL line, exit status 1."""
    proc = run("--device", "cuda", "--checks", "device,peak")
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("device: FAIL  --device cuda but torch sees no CUDA device")
    assert lines[1].startswith("peak: FAIL")
    assert lines[2].startswith("total: FAIL  0 passed, 2 failed")
