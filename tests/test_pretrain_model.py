"""One pre-training forward pass: clean targets, masked input, loss on masked frames only."""

from __future__ import annotations

import torch

from speechrq.config import config_from_dict
from speechrq.features import FeatureStats
from speechrq.pretrain.config import PretrainConfig
from speechrq.pretrain.model import build_model


def tiny_model(**quantizer):
    cfg = config_from_dict(PretrainConfig, {"out_dir": "x", "data": {"corpus": "c"}, "model": {"preset": "tiny"},
                                            "quantizer": {"num_codebooks": 3, "codebook_size": 64, **quantizer},
                                            "masking": {"prob": 0.4, "span": 3}})
    g = torch.Generator().manual_seed(0)
    stats = FeatureStats((torch.randn(80, generator=g)).tolist(), (1 + torch.rand(80, generator=g)).tolist(), 1, 1)
    return build_model(cfg, stats).eval()


def batch():
    g = torch.Generator().manual_seed(1)
    lens = torch.tensor([200, 157, 96])
    feats = torch.randn(3, 200, 80, generator=g) * 3
    feats[torch.arange(200)[None] >= lens[:, None]] = 0
    return feats, lens


def test_masked_frames_get_the_mask_embedding_and_targets_come_from_clean_input():
    model = tiny_model()
    feats, lens = batch()
    seen = {}
    model.encoder.frontend.register_forward_pre_hook(lambda m, args: seen.__setitem__("input", args[0].detach().clone()))
    out = model(feats, lens, generator=torch.Generator().manual_seed(5))
    x = seen["input"]
    input_mask = out.mask.repeat_interleave(4, dim=1)
    clean = model.normalizer(feats, lens)
    assert input_mask.any() and (~input_mask).any()
    assert torch.equal(x[input_mask], model.mask_embedding.detach().expand(int(input_mask.sum()), 80))
    assert torch.equal(x[~input_mask], clean[~input_mask])
    # masks stay inside each utterance and follow the 4-frame grid
    assert not (out.mask & (torch.arange(out.mask.shape[1])[None] >= out.frame_lens[:, None])).any()
    # another mask leaves the targets alone: they never depend on the corrupted input
    other = model(feats, lens, generator=torch.Generator().manual_seed(6))
    assert not torch.equal(other.mask, out.mask) and torch.equal(other.targets, out.targets)
    assert out.result.num_masked == int(out.mask.sum()) and out.targets.shape == (3, 50, 3)


def test_loss_is_computed_on_masked_frames_only():
    model = tiny_model()
    feats, lens = batch()
    out = model(feats, lens, generator=torch.Generator().manual_seed(5))
    # the heads see only masked frames: changing targets at unmasked frames changes nothing
    hidden, _ = model.encoder(torch.where(out.mask.repeat_interleave(4, 1)[..., None], model.mask_embedding, model.normalizer(feats, lens)), lens)
    logits = model.heads(hidden[out.mask])
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), out.targets[out.mask].reshape(-1))
    assert torch.allclose(out.loss, ref, atol=1e-6)
