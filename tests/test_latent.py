"""Latent targets (eq. 3) and the per-stage target cache."""

from __future__ import annotations

import pytest
import torch

from speechrq.models import speech_encoder
from speechrq.targets.cache import TargetCache
from speechrq.targets.latent import LatentTargets


def latent(layers=(0, 2), n=4, seed=1):
    torch.manual_seed(0)
    return LatentTargets(speech_encoder("tiny"), list(layers), num_codebooks=n, codebook_size=32, codebook_dim=8, seed=seed)


def batch():
    g = torch.Generator().manual_seed(2)
    lens = torch.tensor([160, 120])
    feats = torch.randn(2, 160, 80, generator=g)
    feats[1, 120:] = 0
    return feats, lens


def test_each_layer_gets_its_own_codebooks_and_projection():
    lt = latent()
    feats, lens = batch()
    lt.fit_normalizers([(feats, lens)])
    targets = lt(feats, lens)
    assert targets.shape == (2, 40, 4) and targets.dtype == torch.long and not targets.is_inference()
    states, out_lens = lt.hidden_states(feats, lens)
    assert len(states) == 2 and out_lens.tolist() == [40, 30]
    # codebooks 0-1 come from layer 0, 2-3 from layer 2, each standardised with its own statistics
    for i, (h, norm, q) in enumerate(zip(states, lt.normalizers, lt.quantizers)):
        assert q.projection.shape == (2, 96, 8)
        z = (h - norm.mean) / norm.std
        assert torch.equal(targets[0, :, 2 * i : 2 * i + 2], q(z[:1])[0])
    # the standardised features of the sample have zero mean and unit variance
    valid = torch.arange(40)[None] < out_lens[:, None]
    z = ((states[1] - lt.normalizers[1].mean) / lt.normalizers[1].std)[valid]
    assert z.mean(0).abs().max() < 1e-4 and (z.std(0, unbiased=False) - 1).abs().max() < 1e-3
    assert all(not p.requires_grad for p in lt.encoder.parameters())


def test_early_exit_runs_only_up_to_the_deepest_layer():
    lt = latent(layers=(-1, 1))
    assert lt.depth == 2
    calls = []
    for i, block in enumerate(lt.encoder.encoder.blocks):
        block.register_forward_hook(lambda m, a, o, i=i: calls.append(i))
    feats, lens = batch()
    lt(feats, lens)
    assert calls == [0, 1]


def test_projections_depend_on_the_seed_only():
    a, b = latent(seed=5), latent(seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a.quantizers.buffers(), b.quantizers.buffers()))
    assert not torch.equal(a.quantizers[0].projection, latent(seed=6).quantizers[0].projection)
    with pytest.raises(ValueError, match="do not split evenly"):
        latent(layers=(0, 1, 2), n=4)


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_cache_returns_exactly_what_theta_computed(kind, tmp_path):
    lt = latent()
    feats, lens = batch()
    lt.fit_normalizers([(feats, lens)])
    targets = lt(feats, lens)
    frame_lens = lens // 4
    cache = TargetCache(kind, max_bytes=2**20, root=tmp_path / "cache")
    cache.set_source("theta-1")
    assert cache.lookup(["a", "b"], frame_lens, 40, torch.device("cpu")) is None
    cache.store(["a", "b"], targets, frame_lens)
    hit = cache.lookup(["a", "b"], frame_lens, 40, torch.device("cpu"))
    valid = torch.arange(40)[None] < frame_lens[:, None]
    assert torch.equal(hit[valid], targets[valid]) and (hit[~valid] == 0).all()
    # another order, another batch layout: the same rows
    again = cache.lookup(["b"], frame_lens[1:], 30, torch.device("cpu"))
    assert torch.equal(again[0], targets[1, :30])
    # a refresh (another θ) invalidates everything
    cache.set_source("theta-2")
    assert cache.lookup(["a"], frame_lens[:1], 40, torch.device("cpu")) is None
    if kind == "disk":
        assert [p.name for p in (tmp_path / "cache").iterdir()] == ["theta-2"]
        # files are written without an fsync: one a system crash cut short is a miss, removed, and stored whole again
        cache.store(["a", "b"], targets, frame_lens)
        torn = tmp_path / "cache" / "theta-2" / "a.npy"
        for leftover in (torn.read_bytes()[:100], b"PK\x03\x04" + bytes(60)):  # cut short; a zip's header
            cache.store(["a", "b"], targets, frame_lens)
            torn.write_bytes(leftover)
            assert cache.lookup(["a", "b"], frame_lens, 40, torch.device("cpu")) is None and not torn.exists()
        cache.store(["a", "b"], targets, frame_lens)
        assert torch.equal(cache.lookup(["a", "b"], frame_lens, 40, torch.device("cpu"))[valid], targets[valid])


def test_cache_is_bounded():
    cache = TargetCache("memory", max_bytes=40 * 4 * 2)  # room for one utterance of 40 frames x 4 codebooks
    cache.set_source("theta")
    targets = torch.randint(0, 32, (2, 40, 4))
    cache.store(["a", "b"], targets, torch.tensor([40, 40]))
    assert cache.bytes == 320 and cache.lookup(["a"], torch.tensor([40]), 40, torch.device("cpu")) is not None
    assert cache.lookup(["b"], torch.tensor([40]), 40, torch.device("cpu")) is None
