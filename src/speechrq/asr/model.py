"""Discrete-unit ASR (RPQ paper, sections III and V): input embedding, E-Branchformer, CTC and attention heads.

``DiscreteASR(frontend, encoder, ctc, decoder)`` as torchaudio composes its models,
built by :func:`asr_model` from a preset:

- ``frontend``: :class:`UnitEmbedding` for units, ``[B, T, M]`` ids of ``M`` streams
  through ``M`` embedding tables of ``k`` rows, averaged (the paper's fusion; an
  ``nn.EmbeddingBag``, so no ``[B, T, M, dim]`` tensor is built) or weighted by a
  learned softmax over streams; one stream covers k-means units, de-duplicated or
  BPE'd ones; or :class:`ContinuousInput` for features of the same encoder layer
  (the paper's "Continuous SSL" baseline).
- ``encoder``: :class:`~speechrq.models.ebranchformer.EBranchformerEncoder`.
- ``ctc``: a linear layer to ``V + 1`` classes, class 0 the blank, token ``t`` class ``t + 1``.
- ``decoder``: :class:`~speechrq.models.transformer_decoder.TransformerDecoder` over the
  ``V`` output tokens, ``sos_eos = V``.

The loss is ESPnet's hybrid objective, ``w * CTC + (1 - w) * attention CE`` with label
smoothing (w = 0.3, smoothing 0.1 in the paper's recipe), both averaged per utterance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..frames import lengths_to_padding_mask
from ..models.dropout import Dropout
from ..models.ebranchformer import EBranchformerConfig, ebranchformer
from ..models.transformer_decoder import TransformerDecoder


class UnitEmbedding(nn.Module):
    """``[B, T, M]`` unit ids (``0 .. k-1`` per stream) -> ``[B, T, dim]``: M tables, averaged or softmax-weighted."""

    def __init__(self, num_streams: int, vocab: int, dim: int, weighting: str = "mean"):
        super().__init__()
        if weighting not in ("mean", "learned"):
            raise ValueError(f"stream weighting {weighting!r}: mean or learned")
        self.num_streams, self.vocab, self.weighting = num_streams, vocab, weighting
        self.tables = nn.EmbeddingBag(num_streams * vocab, dim, mode="mean" if weighting == "mean" else "sum")
        self.register_buffer("offsets", torch.arange(num_streams) * vocab, persistent=False)
        self.stream_logits = nn.Parameter(torch.zeros(num_streams)) if weighting == "learned" else None

    def stream_weights(self) -> torch.Tensor:
        """``[M]``: the weight of each stream in the fusion."""
        if self.stream_logits is None:
            return torch.full((self.num_streams,), 1.0 / self.num_streams)
        return self.stream_logits.softmax(0)

    def forward(self, units: torch.Tensor) -> torch.Tensor:
        b, t, m = units.shape
        if m != self.num_streams:
            raise ValueError(f"{m} unit streams given; this model embeds {self.num_streams}")
        ids = (units.long() + self.offsets).reshape(b * t, m)
        weights = None if self.stream_logits is None else self.stream_logits.softmax(0).expand(b * t, m).contiguous()
        return self.tables(ids, per_sample_weights=weights).view(b, t, -1)


class ContinuousInput(nn.Module):
    """``[B, T, D_in]`` features -> ``[B, T, dim]``: LayerNorm, projection."""

    def __init__(self, input_dim: int, dim: int):
        super().__init__()
        self.norm, self.proj = nn.LayerNorm(input_dim), nn.Linear(input_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(x.float()))


def time_mask(x: torch.Tensor, lens: torch.Tensor, num_masks: int, max_width: int, generator: torch.Generator) -> torch.Tensor:
    """SpecAugment-style time masking of an embedded input ``[B, T, D]``: ``num_masks`` spans of up to
    ``max_width`` frames per utterance (and at most a fifth of it) set to zero; batched, drawn from ``generator``."""
    if num_masks < 1 or max_width < 1:
        return x
    b, t, _ = x.shape
    widths = (torch.rand(b, num_masks, generator=generator) * (torch.minimum(torch.full_like(lens, max_width), lens // 5) + 1)[:, None]).long()
    starts = (torch.rand(b, num_masks, generator=generator) * (lens[:, None] - widths + 1).clamp_min(1)).long()
    pos = torch.arange(t)[None, None, :]
    masked = ((pos >= starts[..., None]) & (pos < (starts + widths)[..., None])).any(1)
    return x.masked_fill(masked.to(x.device)[..., None], 0.0)


@dataclass
class ASRLoss:
    loss: torch.Tensor
    ctc: torch.Tensor
    attention: torch.Tensor
    correct: int  # attention decoder's teacher-forced token accuracy: right predictions
    tokens: int  # ... out of this many
    ctc_infeasible: int = 0  # utterances with fewer input frames than CTC needs (tokens + repeats): their CTC term is 0


class DiscreteASR(nn.Module):
    """Hybrid CTC/attention ASR over an embedded input (units or continuous features)."""

    def __init__(self, frontend: nn.Module, encoder: nn.Module, ctc: nn.Linear, decoder: TransformerDecoder, dropout: float = 0.1):
        super().__init__()
        self.frontend, self.encoder, self.ctc, self.decoder = frontend, encoder, ctc, decoder
        self.dropout = Dropout(dropout)

    @property
    def vocab(self) -> int:
        return self.decoder.vocab

    def encode(self, inputs: torch.Tensor, lens: torch.Tensor, augment: torch.Generator | None = None,
               masks: tuple[int, int] = (2, 5)) -> torch.Tensor:
        """``inputs [B, T, M]`` ids or ``[B, T, D]`` features -> encoder output ``[B, T, dim]`` (time-masked when ``augment``)."""
        x = self.frontend(inputs)
        if augment is not None:
            x = time_mask(x, lens.cpu(), masks[0], masks[1], augment)
        return self.encoder(self.dropout(x), lens)

    def ctc_logp(self, enc: torch.Tensor) -> torch.Tensor:
        """``[B, T, V + 1]`` CTC log-probabilities (class 0 blank, token t class t + 1)."""
        return F.log_softmax(self.ctc(enc).float(), dim=-1)

    def forward(self, inputs: torch.Tensor, lens: torch.Tensor, tokens: torch.Tensor, token_lens: torch.Tensor, ctc_weight: float = 0.3,
                smoothing: float = 0.1, augment: torch.Generator | None = None, masks: tuple[int, int] = (2, 5)) -> ASRLoss:
        """``tokens [B, U]`` (padded with anything), ``token_lens [B]`` -> the hybrid loss and the decoder's accuracy."""
        enc = self.encode(inputs, lens, augment, masks)
        b = tokens.shape[0]
        # CTC: token t is class t + 1; mean over utterances of each utterance's summed loss, as ESPnet
        ctc = F.ctc_loss(self.ctc_logp(enc).transpose(0, 1), (tokens + 1).masked_fill(_pad(token_lens, tokens.shape[1]), 0), lens,
                         token_lens, blank=0, reduction="sum", zero_infinity=True) / b
        # attention: teacher forcing, <sos> y -> y <eos>
        sos = torch.full((b, 1), self.decoder.sos_eos, dtype=torch.long, device=tokens.device)
        ys_in = torch.cat([sos, tokens.masked_fill(_pad(token_lens, tokens.shape[1]), self.decoder.sos_eos)], 1)
        target = torch.cat([tokens, torch.zeros_like(sos)], 1)
        target[torch.arange(b), token_lens] = self.decoder.sos_eos
        valid = ~_pad(token_lens + 1, target.shape[1])
        logits = self.decoder(ys_in, token_lens + 1, enc, lengths_to_padding_mask(lens, enc.shape[1])).float()
        ce = F.cross_entropy(logits[valid], target[valid], label_smoothing=smoothing, reduction="sum") / b
        correct = int((logits.argmax(-1)[valid] == target[valid]).sum())
        # CTC needs a frame per token and one more per repeated token; zero_infinity makes the others count 0, so say how many
        repeats = ((tokens[:, 1:] == tokens[:, :-1]) & ~_pad(token_lens, tokens.shape[1])[:, 1:]).sum(1)
        infeasible = int((lens.to(token_lens.device) < token_lens + repeats).sum())
        return ASRLoss(ctc_weight * ctc + (1 - ctc_weight) * ce, ctc.detach(), ce.detach(), correct, int(valid.sum()), infeasible)


def _pad(lens: torch.Tensor, length: int) -> torch.Tensor:
    return lengths_to_padding_mask(lens, length)


@dataclass(frozen=True)
class ASRModelConfig:
    """Shape of a discrete-unit ASR model; ``preset`` names one of :data:`ASR_PRESETS`, fields set here override it."""

    dim: int = 256
    encoder_layers: int = 12
    decoder_layers: int = 6
    heads: int = 4
    ffn_dim: int = 1024
    cgmlp_dim: int = 1024
    cgmlp_kernel: int = 31
    dropout: float = 0.1


ASR_PRESETS = {
    # the paper's recipe (ESPnet's E-Branchformer for LibriSpeech-100 style data): 12 + 6 layers, d = 256
    "paper": ASRModelConfig(),
    # trains in minutes on 2 CPU cores
    "tiny": ASRModelConfig(dim=96, encoder_layers=3, decoder_layers=2, heads=4, ffn_dim=256, cgmlp_dim=256, cgmlp_kernel=15, dropout=0.1),
}


def asr_model(shape: ASRModelConfig, vocab: int, input_kind: str, num_streams: int = 1, unit_vocab: int = 0, input_dim: int = 0,
              weighting: str = "mean") -> DiscreteASR:
    """Build the model: ``input_kind`` ``units`` (``num_streams`` x ``unit_vocab`` tables) or ``continuous`` (``input_dim``)."""
    if input_kind == "units":
        frontend: nn.Module = UnitEmbedding(num_streams, unit_vocab, shape.dim, weighting)
    elif input_kind == "continuous":
        frontend = ContinuousInput(input_dim, shape.dim)
    else:
        raise ValueError(f"input kind {input_kind!r}: units or continuous")
    enc = ebranchformer(EBranchformerConfig(dim=shape.dim, num_layers=shape.encoder_layers, num_heads=shape.heads, ffn_dim=shape.ffn_dim,
                                            cgmlp_dim=shape.cgmlp_dim, cgmlp_kernel=shape.cgmlp_kernel, dropout=shape.dropout))
    dec = TransformerDecoder(vocab, shape.dim, shape.heads, shape.ffn_dim, shape.decoder_layers, shape.dropout)
    return DiscreteASR(frontend, enc, nn.Linear(shape.dim, vocab + 1), dec, shape.dropout)
