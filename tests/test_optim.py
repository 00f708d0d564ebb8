"""The shared optimizer (speechrq.training.optim): AdamW's multi-tensor step on a CPU is the per-tensor step, bit for bit."""

from __future__ import annotations

import torch

from speechrq.asr.model import ASR_PRESETS, asr_model
from speechrq.config import config_from_dict
from speechrq.pretrain.config import PretrainConfig
from speechrq.training.optim import make_optimizer


def test_the_cpu_optimizer_steps_multi_tensor_and_gives_the_per_tensor_loops_bits():
    """The tiny ASR model, two parameter groups (decay on matrices only), 5 steps of random gradients: every parameter
    equals that of torch's per-tensor AdamW with the same groups and settings."""
    cfg = config_from_dict(PretrainConfig, {"out_dir": "x", "data": {"corpus": "c"}, "optim": {"weight_decay": 0.05}})
    torch.manual_seed(0)
    model = asr_model(ASR_PRESETS["tiny"], 50, "units", num_streams=4, unit_vocab=40)
    twin = asr_model(ASR_PRESETS["tiny"], 50, "units", num_streams=4, unit_vocab=40)
    twin.load_state_dict(model.state_dict())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = make_optimizer(model, cfg.optim)
    assert opt.defaults["foreach"] is True and not opt.defaults["fused"]
    ref = torch.optim.AdamW([{"params": g["params"], "weight_decay": g["weight_decay"]} for g in make_optimizer(twin, cfg.optim).param_groups],
                            lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), eps=cfg.optim.eps, foreach=False)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        for p, q in zip(model.parameters(), twin.parameters()):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        opt.step()
        ref.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters()))
    assert all(not torch.equal(p, before[n]) for n, p in model.named_parameters())  # every tensor was stepped
