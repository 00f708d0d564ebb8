"""The shipped reference checkpoint (``make reference``): the one the README names, and trained.

It is the tiny encoder after 4000 BEST-RQ steps on the demo corpus (seed 0). Here it is
probed on a corpus it never saw (the test corpus, seed 7): a linear phone recognition probe
on it beats the same probe on a random initialisation of the same shape by a wide margin
(measured on this corpus: 40.9 ± 3.1 vs 83.5 ± 0.9 PER over 2 probe seeds).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from speechrq.checkpoint import load_model_state, read_meta
from speechrq.cli import main
from speechrq.io import file_sha256

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "assets" / "reference" / "tiny_bestrq" / "checkpoints" / "step_00004000"
MARGIN = 20.0  # PER points the reference must beat random init by


def test_the_shipped_reference_is_the_one_the_docs_and_makefile_name():
    sha = file_sha256(REFERENCE / "model.safetensors")
    readme = (ROOT / "docs" / "guide" / "setup.md").read_text()  # "The reference checkpoint"
    assert sha in readme
    assert "REFERENCE := " + str(REFERENCE.relative_to(ROOT)) in (ROOT / "Makefile").read_text()
    meta = read_meta(REFERENCE)
    assert meta["step"] == 4000 and meta["config"]["model"]["preset"] == "tiny" and meta["stage"] == 0
    assert not any(k.startswith("heads.") for k in load_model_state(REFERENCE))
    assert (REFERENCE / "model.safetensors").stat().st_size < 6_000_000  # small enough to ship
    assert re.search(r"optim\.max_steps=4000", readme)


@pytest.mark.slow
def test_the_reference_beats_random_init_on_phone_recognition(pretrain_corpus, tmp_path):
    # pretrain_corpus: the baselines read the corpus's feature_stats.json, made here as every other test makes it
    tiny_corpus = pretrain_corpus
    out = tmp_path / "ev"
    assert main(["evaluate", str(REFERENCE), "--random-baseline", "--corpus", str(tiny_corpus), "--tasks", "pr", "--probe-seeds", "2",
                 "--no-target-analysis", "--out", str(out), "--quiet"]) == 0
    models = json.loads((out / "results.json").read_text())["models"]
    ref, rnd = models["tiny_bestrq@4000"]["tasks"]["pr"], models["random-init"]["tasks"]["pr"]
    margin = rnd["test"] - ref["test"]
    assert margin >= MARGIN, f"reference {ref['test']:.2f} vs random init {rnd['test']:.2f} PER"
    assert margin > ref["test_std"] + rnd["test_std"]  # beyond the probe-seed spread
