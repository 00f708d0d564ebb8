"""Shared fixtures: small corpora made by the tests themselves, once per session."""

from __future__ import annotations

import contextlib
import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest worker per core (pytest-xdist): each worker, and every process it starts, computes on
    # one thread, or two workers' thread pools would fight over the 2 cores (many times slower than either alone)
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_var] = "1"


@contextlib.contextmanager
def torch_threads(n: int = 1):
    """Torch on ``n`` threads inside the block (on a shared 2-core machine many threads are far slower), then as before."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """24 speakers, ~6 minutes of the embedded corpus (several shards, 2 workers)."""
    from speechrq.data.synth import SynthConfig, synthesize_corpus

    out = tmp_path_factory.mktemp("corpus") / "tiny"
    synthesize_corpus(out, SynthConfig(hours=0.1, speakers=24, seed=7, shard_size=96), workers=2, progress=False)
    return out


@pytest.fixture(scope="session")
def pretrain_corpus(tiny_corpus):
    """The tiny corpus with its global log-Mel statistics, as pre-training needs it."""
    from speechrq.features import corpus_stats

    corpus_stats(tiny_corpus, "train", max_utterances=200, progress=False)  # computed once, with the record of what made it
    return tiny_corpus


@pytest.fixture(scope="session")
def multilingual_corpus(tmp_path_factory):
    """English, Russian and Mandarin read sentences (~5 minutes, 6 speakers), with log-Mel statistics."""
    from speechrq.data.synth import SynthConfig, synthesize_corpus
    from speechrq.features import corpus_stats

    out = tmp_path_factory.mktemp("corpus") / "multilingual"
    synthesize_corpus(out, SynthConfig(hours=0.08, speakers=6, seed=5, command_share=0.0, languages="en,ru,cmn"), workers=2,
                      progress=False)
    corpus_stats(out, "train", max_utterances=200, progress=False)
    return out


def tiny_pretrain_config(corpus, out_dir, **sections) -> dict:
    """A pre-training config small enough for a test: tiny encoder, 4 x 256 codebooks, 8 s batches."""
    cfg = {
        "out_dir": str(out_dir),
        "data": {"corpus": str(corpus), "max_duration": 8.0, "max_utterance_duration": 8.0, "num_buckets": 4},
        "model": {"preset": "tiny"},
        "quantizer": {"num_codebooks": 4, "codebook_size": 256, "codebook_dim": 16, "seed": 3},
        "masking": {"prob": 0.4, "span": 5},
        "optim": {"lr": 2e-3, "warmup_steps": 2, "max_steps": 8},
        "train": {"seed": 0, "device": "cpu", "precision": "fp32", "log_every": 1, "checkpoint_every": 4, "keep_last": 2},
    }
    for section, values in sections.items():
        if isinstance(values, dict):
            cfg.setdefault(section, {}).update(values)
        else:
            cfg[section] = values
    return cfg


def kill_after_first_checkpoint(argv: list[str], checkpoints, timeout: float = 300.0) -> None:
    """Run ``python -m speechrq *argv`` and SIGKILL it as soon as a checkpoint appears under ``checkpoints``."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from speechrq.checkpoint import list_checkpoints

    proc = subprocess.Popen([sys.executable, "-m", "speechrq", *argv], env=dict(os.environ, OMP_NUM_THREADS="1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not list_checkpoints(checkpoints) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
