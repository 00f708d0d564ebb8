"""Span masking on the encoder's frame grid.

Masks are drawn per utterance, inside its valid length, in encoder frames (40 ms);
:func:`expand_to_input` repeats them over the 4 input frames of each encoder
frame, so an encoder frame is wholly masked or not at all.

Two meanings of "mask probability" are in use, and the config names one:

- ``"start"`` (BEST-RQ, SpeechBrain): every frame where a whole span fits starts a
  span of ``span`` frames with probability ``p``; spans overlap, so the masked
  share is about ``1 - (1 - p) ** span`` (:func:`expected_masked_fraction`).
- ``"fraction"``: ``ceil(p * length / span)`` span starts drawn without
  replacement, so about ``p`` of the frames are masked (less where spans overlap).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F

from ..features import lengths_to_padding_mask

MODES = ("start", "fraction")


def expected_masked_fraction(prob: float, span: int, mode: str) -> float:
    """The masked share an infinitely long utterance gets (before span overlap, for ``fraction``)."""
    return 1.0 - (1.0 - prob) ** span if mode == "start" else prob


def span_mask(lengths: torch.Tensor, max_len: int, prob: float, span: int, mode: str = "start", generator: torch.Generator | None = None) -> torch.Tensor:
    """``[B]`` lengths (encoder frames) -> ``[B, max_len]`` bool mask, True = masked.

    Fully vectorised: one random draw per frame, no Python loop over utterances.
    """
    if mode not in MODES:
        raise ValueError(f"mask mode {mode!r}: choose from {MODES}")
    device = lengths.device
    b = lengths.shape[0]
    valid = ~lengths_to_padding_mask(lengths, max_len)
    # a span may start anywhere it fits entirely inside the utterance
    can_start = torch.arange(max_len, device=device)[None, :] <= (lengths[:, None] - span)
    keys = torch.rand(b, max_len, generator=generator, device="cpu").to(device)
    if mode == "start":
        starts = (keys < prob) & can_start
    else:
        n_spans = torch.ceil(prob * lengths.float() / span).long()
        keys = keys.masked_fill(~can_start, 2.0)  # never chosen
        rank = keys.argsort(dim=1).argsort(dim=1)
        starts = (rank < n_spans[:, None]) & can_start
    # dilate each start over the next span-1 frames
    mask = F.max_pool1d(F.pad(starts.float()[:, None, :], (span - 1, 0)), kernel_size=span, stride=1)[:, 0] > 0
    return mask & valid


def expand_to_input(mask: torch.Tensor, factor: int, input_len: int) -> torch.Tensor:
    """``[B, T]`` encoder-frame mask -> ``[B, input_len]`` input-frame mask (4-frame grid)."""
    out = mask.repeat_interleave(factor, dim=1)
    if out.shape[1] < input_len:
        out = F.pad(out, (0, input_len - out.shape[1]), value=False)
    return out[:, :input_len]
