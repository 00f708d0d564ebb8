"""Shared fixtures: small corpora made by the tests themselves, once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """24 speakers, ~9 minutes of the embedded corpus (several shards, 2 workers)."""
    from speechrq.data.synth import SynthConfig, synthesize_corpus

    out = tmp_path_factory.mktemp("corpus") / "tiny"
    synthesize_corpus(out, SynthConfig(hours=0.15, speakers=24, seed=7, shard_size=96), workers=2, progress=False)
    return out
