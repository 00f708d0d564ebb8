"""The s3prl upstream wrapper: a list of unpadded waveforms in, every hidden state out at 640 samples per frame."""

from __future__ import annotations

import torch
from conftest import tiny_pretrain_config
from test_encoders import make_checkpoint

from speechrq.checkpoint import save_checkpoint, step_dir
from speechrq.config import config_from_dict, config_to_dict
from speechrq.features import FeatureStats
from speechrq.pretrain.config import PretrainConfig
from speechrq.pretrain.model import build_model

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


def test_the_upstream_is_frozen_in_eval_mode(pretrain_corpus, tmp_path):
    """SUPERB's frozen upstream: no gradients, and dropout off even after the runner calls ``train()`` (a preset with
    dropout, so that train mode would change the states)."""
    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(pretrain_corpus, tmp_path / "run", model={"dropout": 0.5}))
    model = build_model(cfg, FeatureStats.load(pretrain_corpus / "feature_stats.json"))
    ckpt = save_checkpoint(step_dir(tmp_path / "run", 0), model.state_dict(), {}, {"config": config_to_dict(cfg), "step": 0})
    up = speechrq_local(str(ckpt))
    assert not any(m.training for m in up.modules()) and not any(p.requires_grad for p in up.parameters())
    wavs = [0.1 * torch.randn(n, generator=torch.Generator().manual_seed(1)) for n in (16000, 9600)]
    first = up(wavs)["hidden_states"]
    up.train()  # what a runner does before its training loop
    assert not any(m.training for m in up.modules())
    again = up(wavs)["hidden_states"]
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_the_reference_by_name():
    up = speechrq_local("tiny_bestrq")
    assert up.model.num_states == len(up([torch.zeros(16000)])["hidden_states"])


def test_the_runner_stands_in_the_removed_hub_names_and_says_when_s3prl_is_missing(monkeypatch, capsys):
    import importlib.util

    import huggingface_hub

    from speechrq.evaluate import s3prl_runner

    for name in s3prl_runner.HUB_NAMES:  # as huggingface_hub >= 1.0 has it: both removed
        monkeypatch.delattr(huggingface_hub, name, raising=False)
    assert s3prl_runner.stand_in_hub_names() == list(s3prl_runner.HUB_NAMES)
    assert all(hasattr(huggingface_hub, n) for n in s3prl_runner.HUB_NAMES)
    assert s3prl_runner.stand_in_hub_names() == []  # nothing missing: nothing touched
    if importlib.util.find_spec("s3prl") is None:  # this environment: s3prl cannot live beside torch 2.13
        assert s3prl_runner.main(["-h"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("speechrq: error: s3prl is not installed") and "\n" not in err
