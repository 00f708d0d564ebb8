"""A Transformer attention decoder over an encoder's output (the "attention" half of hybrid CTC/attention).

Tokens ``0 .. V-1`` are the output vocabulary; ``sos_eos = V`` is both the start
symbol fed first and the end symbol predicted last (ESPnet's convention), so the
decoder embeds ``V + 1`` symbols and predicts ``V + 1`` classes. Pre-LayerNorm
layers: causal self-attention, cross-attention to the encoder, feed-forward.

Decoding runs incrementally (:meth:`TransformerDecoder.start`, :meth:`TransformerDecoder.step`):
the encoder memory's keys and values are projected once per utterance and each
step's self-attention keys and values are kept, so a step costs one position, not
the whole prefix (the same numbers as :meth:`TransformerDecoder.forward`, tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .dropout import Dropout


def sinusoids(length: int, dim: int, device=None) -> torch.Tensor:
    """``[length, dim]`` sinusoidal positions (Vaswani et al.)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    return pe


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``[N, L, D] -> [N, H, L, D / H]``."""
    return x.view(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


def _project(attn: nn.MultiheadAttention, x: torch.Tensor, which: slice) -> torch.Tensor:
    """``x`` through the rows ``which`` of ``attn``'s packed q/k/v input projection."""
    return F.linear(x, attn.in_proj_weight[which], attn.in_proj_bias[which])


@dataclass
class DecoderCache:
    """What incremental decoding keeps per row: each layer's self-attention keys/values ``[N, H, u, D / H]`` of the
    prefix so far, its cross-attention keys/values of the memory ``[N, H, T, D / H]``, and the memory's padding."""

    self_kv: list[tuple[torch.Tensor, torch.Tensor]]
    cross_kv: list[tuple[torch.Tensor, torch.Tensor]]
    memory_mask: torch.Tensor | None  # [N, 1, 1, T], True where a row may attend
    length: int = 0

    def select(self, rows: torch.Tensor) -> "DecoderCache":
        """The cache of the hypotheses ``rows`` extend (beam reordering). Rows stay within their utterance, so the
        memory's keys and values, the same for every row of an utterance, are kept as they are."""
        return DecoderCache([(k[rows], v[rows]) for k, v in self.self_kv], self.cross_kv, self.memory_mask, self.length)


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.self_norm, self.cross_norm, self.ffn_norm = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(), Dropout(dropout), nn.Linear(ffn_dim, dim))
        self.dropout = Dropout(dropout)

    def forward(self, y, causal, y_pad, memory, memory_pad):
        h = self.self_norm(y)
        y = y + self.dropout(self.self_attn(h, h, h, attn_mask=causal, key_padding_mask=y_pad, need_weights=False)[0])
        h = self.cross_norm(y)
        y = y + self.dropout(self.cross_attn(h, memory, memory, key_padding_mask=memory_pad, need_weights=False)[0])
        return y + self.dropout(self.ffn(self.ffn_norm(y)))

    def step(self, y: torch.Tensor, self_kv: tuple[torch.Tensor, torch.Tensor] | None, cross_kv: tuple[torch.Tensor, torch.Tensor],
             memory_mask: torch.Tensor | None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One new position ``y [N, 1, D]`` attending to the cached prefix (evaluation only: no dropout)."""
        dim, heads = y.shape[-1], self.self_attn.num_heads
        h = self.self_norm(y)
        q, k, v = (_heads(t, heads) for t in _project(self.self_attn, h, slice(0, 3 * dim)).chunk(3, -1))
        if self_kv is not None:  # the new position sees every earlier one: the causal mask holds by construction
            k, v = torch.cat([self_kv[0], k], 2), torch.cat([self_kv[1], v], 2)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(y.shape)
        y = y + self.self_attn.out_proj(a)
        h = self.cross_norm(y)
        q = _heads(_project(self.cross_attn, h, slice(0, dim)), heads)
        a = F.scaled_dot_product_attention(q, *cross_kv, attn_mask=memory_mask).transpose(1, 2).reshape(y.shape)
        y = y + self.cross_attn.out_proj(a)
        return y + self.ffn(self.ffn_norm(y)), (k, v)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dim, heads = memory.shape[-1], self.cross_attn.num_heads
        k, v = _project(self.cross_attn, memory, slice(dim, 3 * dim)).chunk(2, -1)
        return _heads(k, heads), _heads(v, heads)


class TransformerDecoder(nn.Module):
    """``ys_in [B, U]`` (starting with ``sos_eos``), encoder ``memory [B, T, D]`` -> logits ``[B, U, V + 1]``."""

    def __init__(self, vocab: int, dim: int = 256, heads: int = 4, ffn_dim: int = 1024, num_layers: int = 6, dropout: float = 0.1):
        super().__init__()
        self.vocab, self.sos_eos, self.dim = vocab, vocab, dim
        self.embed = nn.Embedding(vocab + 1, dim)
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, ffn_dim, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, vocab + 1)
        self.dropout = Dropout(dropout)

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
        """``prefixes [N, u]`` (each starting with ``sos_eos``) -> ``[N, V + 1]`` log-probabilities of the next symbol,
        recomputing the whole prefix (the reference for :meth:`step`)."""
        return F.log_softmax(self.forward(prefixes, None, memory, memory_pad)[:, -1].float(), dim=-1)

    def start(self, memory: torch.Tensor, memory_pad: torch.Tensor | None) -> DecoderCache:
        """An empty prefix over ``memory [N, T, D]`` (``memory_pad [N, T]``: True at padding): projects the memory's
        keys and values once for every layer."""
        mask = None if memory_pad is None else ~memory_pad[:, None, None, :]
        return DecoderCache([], [layer.memory_kv(memory) for layer in self.layers], mask)

    def step(self, tokens: torch.Tensor, cache: DecoderCache) -> tuple[torch.Tensor, DecoderCache]:
        """Feed ``tokens [N]`` (the first call: ``sos_eos``) at the next position -> log-probabilities ``[N, V + 1]``
        of the symbol after it, and the cache grown by one position."""
        pos = sinusoids(cache.length + 1, self.dim, tokens.device)[-1]
        y = (self.embed(tokens) * math.sqrt(self.dim) + pos)[:, None]
        self_kv = []
        for i, layer in enumerate(self.layers):
            y, kv = layer.step(y, cache.self_kv[i] if cache.self_kv else None, cache.cross_kv[i], cache.memory_mask)
            self_kv.append(kv)
        logp = F.log_softmax(self.out(self.norm(y[:, 0])).float(), dim=-1)
        return logp, DecoderCache(self_kv, cache.cross_kv, cache.memory_mask, cache.length + 1)
