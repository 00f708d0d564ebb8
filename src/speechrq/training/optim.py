"""AdamW and its learning-rate schedule.

The schedule is a pure function of the step within the current stage, so the
only scheduler state to save is the step; Latent-RQ's reset at a target refresh
is "count from zero again".
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import OptimConfig


def make_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not biases, norms or the mask embedding).

    On CUDA the fused kernel; elsewhere the multi-tensor (``foreach``) one, which on a CPU takes a step of the tiny
    presets' ~150 tensors 1.5 to 2x faster than torch's CPU default (a loop over the tensors) and gives the same bits.
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = all(p.is_cuda for p in decay + no_decay) or None
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=fused, foreach=None if fused else True)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """``optimizer.load_state_dict(state)``, keeping the kernel :func:`make_optimizer` chose for this machine.

    torch restores the saved groups' settings whole, the choice of kernel too: a CUDA run (fused) resumed on a CPU would
    take torch's fused CPU step, whose bits differ from the multi-tensor step a CPU run takes, and a run saved before
    the choice existed would go back to the slow per-tensor loop. Every other setting (lr, betas, weight decay) and
    the moments are the saved ones."""
    kernels = [{k: g.get(k) for k in ("fused", "foreach")} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, kernel in zip(optimizer.param_groups, kernels):
        group.update(kernel)


def lr_factor(step: int, cfg: OptimConfig, stage_start: int = 0) -> float:
    """Multiplier of ``cfg.lr`` for optimizer step ``step`` (0-based, cumulative).

    Each stage starts its own schedule at ``stage_start`` (Latent-RQ resets it at
    every target refresh): linear warm-up over ``warmup_steps``, then
    ``cosine``/``linear`` decay to ``final_lr_ratio`` at ``max_steps``, or ``constant``.
    """
    step -= stage_start
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, cfg.max_steps - stage_start - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
    return cfg.final_lr_ratio + (1 - cfg.final_lr_ratio) * shape


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
