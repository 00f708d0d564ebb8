"""SUPERB's featurizer: a learnable softmax-weighted sum of a frozen encoder's layers.

The hidden states it reads come from :mod:`speechrq.encoders` (computed once per
utterance and cached on disk).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..frames import lengths_to_padding_mask


class WeightedSum(nn.Module):
    """``[B, L + 1, T, dim] -> [B, T, dim]``: softmax-weighted sum of the layers (s3prl's featurizer)."""

    def __init__(self, num_states: int, layer_norm: bool = False):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_states))
        self.layer_norm = layer_norm

    def layer_weights(self) -> torch.Tensor:
        return F.softmax(self.weights, dim=0)

    def forward(self, states: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        if self.layer_norm:
            states = F.layer_norm(states, states.shape[-1:])
        out = torch.einsum("l,bltd->btd", self.layer_weights(), states)  # no [B, L + 1, T, dim] product in memory
        if lens is not None:
            out = out.masked_fill(lengths_to_padding_mask(lens, out.shape[1])[..., None], 0.0)
        return out
