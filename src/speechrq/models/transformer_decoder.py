"""A Transformer attention decoder over an encoder's output (the "attention" half of hybrid CTC/attention).

Tokens ``0 .. V-1`` are the output vocabulary; ``sos_eos = V`` is both the start
symbol fed first and the end symbol predicted last (ESPnet's convention), so the
decoder embeds ``V + 1`` symbols and predicts ``V + 1`` classes. Pre-LayerNorm
layers: causal self-attention, cross-attention to the encoder, feed-forward.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sinusoids(length: int, dim: int, device=None) -> torch.Tensor:
    """``[length, dim]`` sinusoidal positions (Vaswani et al.)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    return pe


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.self_norm, self.cross_norm, self.ffn_norm = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, y, causal, y_pad, memory, memory_pad):
        h = self.self_norm(y)
        y = y + self.dropout(self.self_attn(h, h, h, attn_mask=causal, key_padding_mask=y_pad, need_weights=False)[0])
        h = self.cross_norm(y)
        y = y + self.dropout(self.cross_attn(h, memory, memory, key_padding_mask=memory_pad, need_weights=False)[0])
        return y + self.dropout(self.ffn(self.ffn_norm(y)))


class TransformerDecoder(nn.Module):
    """``ys_in [B, U]`` (starting with ``sos_eos``), encoder ``memory [B, T, D]`` -> logits ``[B, U, V + 1]``."""

    def __init__(self, vocab: int, dim: int = 256, heads: int = 4, ffn_dim: int = 1024, num_layers: int = 6, dropout: float = 0.1):
        super().__init__()
        self.vocab, self.sos_eos, self.dim = vocab, vocab, dim
        self.embed = nn.Embedding(vocab + 1, dim)
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, ffn_dim, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, vocab + 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, ys_in: torch.Tensor, ys_lens: torch.Tensor | None, memory: torch.Tensor,
                memory_pad: torch.Tensor | None) -> torch.Tensor:
        """``ys_lens`` None: every prefix full length (decoding). ``memory_pad [B, T]``: True at padding."""
        b, u = ys_in.shape
        y = self.embed(ys_in) * math.sqrt(self.dim) + sinusoids(u, self.dim, ys_in.device)
        y = self.dropout(y)
        causal = torch.ones(u, u, dtype=torch.bool, device=ys_in.device).triu(1)  # True = may not attend
        y_pad = None if ys_lens is None else torch.arange(u, device=ys_in.device)[None] >= ys_lens[:, None]
        for layer in self.layers:
            y = layer(y, causal, y_pad, memory, memory_pad)
        return self.out(self.norm(y))

    def next_token_logp(self, prefixes: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor | None) -> torch.Tensor:
        """``prefixes [N, u]`` (each starting with ``sos_eos``) -> ``[N, V + 1]`` log-probabilities of the next symbol."""
        return F.log_softmax(self.forward(prefixes, None, memory, memory_pad)[:, -1].float(), dim=-1)
