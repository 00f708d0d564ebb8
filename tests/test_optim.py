"""The shared optimizer (speechrq.training.optim): AdamW's multi-tensor step on a CPU is the per-tensor step, bit for bit."""

from __future__ import annotations

import copy

import torch

from speechrq.asr.model import ASR_PRESETS, asr_model
from speechrq.config import config_from_dict
from speechrq.pretrain.config import PretrainConfig
from speechrq.training.optim import load_optimizer_state, make_optimizer


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


def test_a_resumed_optimizer_keeps_this_machines_kernel_and_the_saved_moments():
    """A state saved by a CUDA run (fused) or before the kernel choice (per-tensor loop) resumes with the multi-tensor
    step on a CPU, and steps to the same bits as the run that saved it would with that step."""
    cfg = config_from_dict(PretrainConfig, {"out_dir": "x", "data": {"corpus": "c"}})
    torch.manual_seed(0)
    model = asr_model(ASR_PRESETS["tiny"], 30, "units", num_streams=2, unit_vocab=20)
    g = torch.Generator().manual_seed(2)
    grads = [[torch.randn(p.shape, generator=g) for p in model.parameters()] for _ in range(4)]

    def run(params, opt, steps):
        for gs in steps:
            for p, gr in zip(params, gs):
                p.grad = gr.clone()
            opt.step()

    for saved_kernel in ({"fused": True}, {"foreach": None}):
        old = [p.detach().clone().requires_grad_() for p in model.parameters()]
        saver = torch.optim.AdamW(old, lr=cfg.optim.lr, **saved_kernel)
        run(old, saver, grads[:2])
        state = saver.state_dict()
        assert state["param_groups"][0].get("fused") == saved_kernel.get("fused")

        resumed = asr_model(ASR_PRESETS["tiny"], 30, "units", num_streams=2, unit_vocab=20)
        with torch.no_grad():
            for p, q in zip(resumed.parameters(), old):
                p.copy_(q)
        # one group, as the saver had (make_optimizer's grouping is not what this test is about)
        opt = torch.optim.AdamW(list(resumed.parameters()), lr=cfg.optim.lr, foreach=True)
        load_optimizer_state(opt, copy.deepcopy(state))  # (torch may keep the given tensors: each load its own)
        assert opt.param_groups[0]["foreach"] is True and not opt.param_groups[0]["fused"]
        run(list(resumed.parameters()), opt, grads[2:])

        twin = [q.detach().clone().requires_grad_() for q in old]
        ref = torch.optim.AdamW(twin, lr=cfg.optim.lr, foreach=False)
        state = copy.deepcopy(state)
        ref.load_state_dict({**state, "param_groups": [{**grp, "fused": None, "foreach": False} for grp in state["param_groups"]]})
        run(twin, ref, grads[2:])
        assert all(torch.equal(p, q) for p, q in zip(resumed.parameters(), twin)), saved_kernel
