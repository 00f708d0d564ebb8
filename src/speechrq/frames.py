"""The time grid every part of speechrq shares: one sample rate, one 10 ms hop, one padding rule.

Audio is 16 kHz mono everywhere (corpora are resampled when imported or
loaded); log-Mel frames come every :data:`HOP_SAMPLES` samples (10 ms). The
encoder's own frame (4 log-Mel frames, 40 ms) is defined beside the encoder,
in :mod:`speechrq.models.conformer`. This module imports nothing of speechrq, so
any layer may use it.
"""

from __future__ import annotations

SAMPLE_RATE = 16000
FRAME_SHIFT = 0.010  # seconds between log-Mel frames
HOP_SAMPLES = int(round(FRAME_SHIFT * SAMPLE_RATE))  # 160


def lengths_to_padding_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """``[B]`` lengths -> ``[B, T]`` bool mask, True at padded positions."""
    import torch  # here, not at the top: the CLI's --help reads data modules that import this one

    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]
