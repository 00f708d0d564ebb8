"""The featurizer: a frozen encoder's hidden states, cached once per checkpoint, and their weighted sum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_pretrain_config
from speechrq.checkpoint import save_checkpoint, step_dir
from speechrq.config import config_from_dict, config_to_dict
from speechrq.data.corpus import load_cuts
from speechrq.evaluate.featurizer import FrozenEncoder, HiddenStateCache, WeightedSum, cache_hidden_states, load_batch
from speechrq.features import FeatureStats
from speechrq.pretrain.config import PretrainConfig
from speechrq.pretrain.trainer import build_model


def make_checkpoint(corpus, root, seed):
    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(corpus, root, train={"seed": seed}))
    model = build_model(cfg, FeatureStats.load(corpus / "feature_stats.json"))
    return save_checkpoint(step_dir(root, 0), model.state_dict(), {}, {"config": config_to_dict(cfg), "step": 0})


@pytest.fixture(scope="module")
def dev_cuts(pretrain_corpus):
    return load_cuts(pretrain_corpus, "dev").subset(first=6)


def test_a_second_pass_runs_no_encoder(pretrain_corpus, dev_cuts, tmp_path):
    ckpt = make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0)
    enc = FrozenEncoder.from_checkpoint(ckpt)
    cache = HiddenStateCache(tmp_path / "cache", enc.fingerprint)
    assert cache_hidden_states(enc, dev_cuts, cache, progress=False) == 6 and enc.forward_calls > 0

    again = FrozenEncoder.from_checkpoint(ckpt)  # a new process, the same checkpoint
    assert again.fingerprint == enc.fingerprint
    assert cache_hidden_states(again, dev_cuts, HiddenStateCache(tmp_path / "cache", again.fingerprint), progress=False) == 0
    assert again.forward_calls == 0

    # the cached states are the encoder's (to float16), one per layer plus the front end
    ids = [c.id for c in dev_cuts][:2]
    states, lens = load_batch(cache, ids)
    from speechrq.data.batching import make_loader

    batch = next(iter(make_loader(dev_cuts.subset(first=1), 60.0, shuffle=False, num_buckets=1)))
    direct, dlens = enc(batch["audio"], batch["audio_lens"])
    assert states.shape[1] == enc.num_states == 5 and int(lens[0]) == int(dlens[0])
    ref = torch.stack(direct, 1)[0, :, : int(dlens[0])]
    assert torch.allclose(states[0, :, : int(lens[0])], ref, atol=2e-2, rtol=1e-2)

    other = FrozenEncoder.from_checkpoint(make_checkpoint(pretrain_corpus, tmp_path / "other", seed=1))
    assert other.fingerprint != enc.fingerprint


def test_weighted_sum():
    states = torch.randn(2, 3, 7, 4)
    ws = WeightedSum(3)
    assert torch.allclose(ws(states), states.mean(1), atol=1e-6)  # equal weights at start
    with torch.no_grad():
        ws.weights.copy_(torch.tensor([0.0, 50.0, 0.0]))
    assert torch.allclose(ws(states), states[:, 1], atol=1e-5)
    assert float(ws.layer_weights().detach().sum()) == pytest.approx(1.0)
    out = WeightedSum(3, layer_norm=True)(states, torch.tensor([7, 4]))
    assert (out[1, 4:] == 0).all() and np.isfinite(out.detach().numpy()).all()
