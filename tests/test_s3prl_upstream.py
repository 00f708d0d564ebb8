"""The s3prl upstream wrapper: a list of unpadded waveforms in, every hidden state out at 640 samples per frame."""

from __future__ import annotations

import torch
from test_encoders import make_checkpoint

from speechrq.evaluate.s3prl_upstream import DOWNSAMPLE_RATE, UpstreamExpert, speechrq_local


def test_upstream_contract(pretrain_corpus, tmp_path):
    ckpt = make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0)
    up = speechrq_local(str(ckpt))
    assert isinstance(up, UpstreamExpert) and up.get_downsample_rates("hidden_states") == DOWNSAMPLE_RATE == 640
    g = torch.Generator().manual_seed(0)
    wavs = [0.1 * torch.randn(n, generator=g) for n in (16000, 24000, 9600)]
    out = up(wavs)
    states = out["hidden_states"]
    assert len(states) == up.model.num_states == 5 and out["last_hidden_state"] is states[-1]
    for h in states:
        assert h.shape == (3, 24000 // 640, up.model.encoder.config.dim) and torch.isfinite(h).all()
    # s3prl's check: frames x downsample rate matches the longest input within a few frames
    assert abs(states[0].shape[1] * DOWNSAMPLE_RATE - 24000) <= 3 * DOWNSAMPLE_RATE
    # an utterance's states do not depend on what it is batched with, up to its last frame, whose Mel window
    # runs past the end of the audio (reflected when alone, zeros of the padding when batched); self-attention
    # spreads that small difference over the blocks' frames
    alone = up([wavs[0]])["hidden_states"]
    n = alone[0].shape[1]
    assert torch.allclose(alone[0][0, : n - 1], states[0][0, : n - 1], atol=1e-4)
    for a, b in zip(alone[1:], states[1:]):
        assert torch.allclose(a[0], b[0, :n], atol=2e-2)
