"""The shortest input of a frozen encoder: the length rules every encoder shares.

Below :mod:`speechrq.encoders.frozen` and :mod:`speechrq.encoders.hf`, which both read them (neither imports the
other for them). :data:`MIN_SAMPLES` is a speechrq encoder's minimum (and the floor of a Hugging Face one's,
:func:`speechrq.encoders.hf.hf_min_samples`); :func:`check_lengths` refuses a batch with a shorter row in one
:class:`~speechrq.errors.SpeechrqError` line naming each such row. The names stay importable from
:mod:`speechrq.encoders.frozen`, where the rules are explained.
"""

from __future__ import annotations

import torch

from ..checks import name_list
from ..errors import SpeechrqError
from ..features import samples_for_frames
from ..frames import SAMPLE_RATE
from ..models.conformer import SUBSAMPLING

MIN_SAMPLES = samples_for_frames(SUBSAMPLING)
"""560: the fewest 16 kHz samples (35 ms) that give a speechrq encoder one 40 ms frame (4 log-Mel frames)."""


def describe_samples(n: int) -> str:
    """``560 samples (35 ms)``: a length at 16 kHz in samples and milliseconds."""
    return f"{n} samples ({n * 1000 / SAMPLE_RATE:g} ms)"


def check_lengths(audio_lens: torch.Tensor, minimum: int, names: list[str] | None = None) -> None:
    """Refuse a batch with a row shorter than ``minimum`` samples, naming each such row (``names[b]`` or its index).

    One :class:`SpeechrqError` line: which rows, how long each is, and the minimum in samples and ms.
    """
    lens = [int(n) for n in audio_lens.tolist()]
    if not lens:
        raise SpeechrqError(f"encoder input: an empty batch (no audio rows); each row needs at least {describe_samples(minimum)}")
    short = [i for i, n in enumerate(lens) if n < minimum]
    if short:
        named = [f"{names[i] if names else f'row {i}'}: {lens[i]} samples" for i in short]
        raise SpeechrqError(f"audio too short for the encoder: {name_list(named, len(lens))}; "
                            f"each needs at least {describe_samples(minimum)} at {SAMPLE_RATE} Hz")
