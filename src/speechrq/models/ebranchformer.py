"""E-Branchformer encoder (Kim et al., 2022), the encoder of the RPQ paper's discrete-unit ASR.

Each block: a macaron feed-forward half, then two branches on the same input, a
global one (self-attention, rotary positions) and a local one (a convolutional
gating MLP, cgMLP), merged by concatenation, a depthwise convolution over the
concatenation and a projection back to ``dim``, then the second feed-forward half
and a LayerNorm. The input to the encoder is already embedded (``[B, T, dim]``),
so the encoder has no front end of its own: discrete units come in through
embedding tables, continuous features through a projection (``speechrq.asr``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..frames import lengths_to_padding_mask
from .conformer import FeedForward, RotarySelfAttention
from .dropout import Dropout


@dataclass(frozen=True)
class EBranchformerConfig:
    dim: int = 256
    num_layers: int = 12
    num_heads: int = 4
    ffn_dim: int = 1024  # the macaron feed-forwards
    cgmlp_dim: int = 1024  # the cgMLP's hidden width (halved by its gate)
    cgmlp_kernel: int = 31
    merge_kernel: int = 3
    dropout: float = 0.1


class ConvolutionalGatingMLP(nn.Module):
    """cgMLP: ``Linear(dim, h)``, GELU, split in halves ``a, b``; ``a * DepthwiseConv(LayerNorm(b))``; ``Linear(h/2, dim)``."""

    def __init__(self, dim: int, hidden: int, kernel: int, dropout: float):
        super().__init__()
        if hidden % 2:
            raise ValueError(f"cgMLP width {hidden} must be even")
        self.up = nn.Linear(dim, hidden)
        self.gate_norm = nn.LayerNorm(hidden // 2)
        self.gate_conv = nn.Conv1d(hidden // 2, hidden // 2, kernel, padding=kernel // 2, groups=hidden // 2)
        self.down = nn.Linear(hidden // 2, dim)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        a, b = F.gelu(self.up(x)).chunk(2, dim=-1)
        b = self.gate_norm(b)
        if pad_mask is not None:  # padding must not leak into valid frames through the convolution
            b = b.masked_fill(pad_mask[..., None], 0.0)
        b = self.gate_conv(b.transpose(1, 2)).transpose(1, 2)
        return self.down(self.dropout(a * b))


class EBranchformerBlock(nn.Module):
    def __init__(self, c: EBranchformerConfig):
        super().__init__()
        self.ffn1 = FeedForward(c.dim, c.ffn_dim, c.dropout)
        self.attn_norm = nn.LayerNorm(c.dim)
        self.attn = RotarySelfAttention(c.dim, c.num_heads, c.dropout)
        self.mlp_norm = nn.LayerNorm(c.dim)
        self.cgmlp = ConvolutionalGatingMLP(c.dim, c.cgmlp_dim, c.cgmlp_kernel, c.dropout)
        self.merge_conv = nn.Conv1d(2 * c.dim, 2 * c.dim, c.merge_kernel, padding=c.merge_kernel // 2, groups=2 * c.dim)
        self.merge = nn.Linear(2 * c.dim, c.dim)
        self.dropout = Dropout(c.dropout)
        self.ffn2 = FeedForward(c.dim, c.ffn_dim, c.dropout)
        self.final_norm = nn.LayerNorm(c.dim)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + 0.5 * self.ffn1(x)
        glob = self.attn(self.attn_norm(x), pad_mask)
        local = self.cgmlp(self.mlp_norm(x), pad_mask)
        both = torch.cat([glob, local], dim=-1)
        if pad_mask is not None:
            both = both.masked_fill(pad_mask[..., None], 0.0)
        both = both + self.merge_conv(both.transpose(1, 2)).transpose(1, 2)
        x = x + self.dropout(self.merge(both))
        x = x + 0.5 * self.ffn2(x)
        return self.final_norm(x)


class EBranchformerEncoder(nn.Module):
    """``[B, T, dim]`` embedded input and ``[B]`` lengths -> ``[B, T, dim]`` (padding positions are zero)."""

    def __init__(self, blocks: list[EBranchformerBlock]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        pad_mask = lengths_to_padding_mask(lengths, x.shape[1])
        x = x.masked_fill(pad_mask[..., None], 0.0)
        for block in self.blocks:
            x = block(x, pad_mask)
        return x.masked_fill(pad_mask[..., None], 0.0)


def ebranchformer(config: EBranchformerConfig) -> EBranchformerEncoder:
    return EBranchformerEncoder([EBranchformerBlock(config) for _ in range(config.num_layers)])
