"""Dropout whose mask costs a quarter of torch's on a CPU.

Torch's CPU dropout draws one Bernoulli variate per element from the generator (``bernoulli_``: about 7 ns an
element here), which made dropout 14% of a discrete-ASR training step on one core, more than any layer's matmuls.
:func:`dropout` draws one 64-bit word per four elements instead and keeps an element where its 16-bit lane is at
or above a threshold: the drop probability is ``p`` rounded to a multiple of 2**-16 (0.1 becomes 6554 / 65536 =
0.100006), and kept elements are scaled by the inverse of the kept probability actually used, so every output's
expectation is its input's. The words come from torch's default CPU generator, so a seeded run draws the same masks
again. On other devices torch's own dropout runs (fused there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LEVELS = 1 << 16  # the mask's resolution: a drop probability is a multiple of 1 / LEVELS


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``x`` (any shape) with each element zeroed with probability ``p`` (on a CPU rounded to a multiple of 2**-16, so a
    ``p`` within 2**-17 of 1 drops every element) and the others scaled by the inverse of the kept probability used
    (``1 / (1 - p)`` on other devices); ``x`` itself when not ``training`` or ``p`` rounds to 0.

    Raises ``ValueError`` for ``p`` outside [0, 1], as ``torch.nn.functional.dropout`` does.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    drop = round(p * LEVELS)
    if drop == 0:
        return x
    if drop == LEVELS:
        return x * 0.0
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(1 << 63), (1 << 63) - 1)  # 64 uniform bits each
    keep = words.view(torch.int16)[:n].view(x.shape) >= drop - LEVELS // 2  # P(keep) = (LEVELS - drop) / LEVELS
    return x * (keep.to(x.dtype) * (LEVELS / (LEVELS - drop)))  # one saved mask: the backward is one product


class Dropout(nn.Dropout):
    """``nn.Dropout`` through :func:`dropout` (``[*] -> [*]``); no state, so checkpoints are unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
