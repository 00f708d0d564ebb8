"""Numbers entering at a boundary: one batched check of padded tensors, one message that names the utterances.

Wherever numbers computed from audio enter the next stage (log-Mel into statistics, an
encoder's hidden states into a quantizer, a probe or an ASR model), they are checked
with :func:`bad_utterances` (batched, no loop over frames) and refused by
:func:`require_finite` with one line naming each utterance at fault, its file where the
caller knows it, and what is wrong. What audio itself is valid is defined once, in
:func:`speechrq.data.audio.audio_problem`.

This module imports only :mod:`speechrq.frames` and :mod:`speechrq.errors`, so any layer may use it.
"""

from __future__ import annotations

import math

from .errors import SpeechrqError
from .frames import lengths_to_padding_mask

FLOAT16_MAX = 65504.0  # the largest float16: states stored as float16 (samples, caches) must stay below it
SHOWN = 3  # utterances named in a message; the count says how many more


def bad_utterances(x, lens=None, limit: float | None = None):
    """``[B]`` bool: the utterances of a padded ``x [B, T, ...]`` whose valid frames (``t < lens[b]``) hold NaN or inf,
    or, with ``limit``, a magnitude above it. Padding is never looked at. One batched pass, no host sync."""
    import torch

    if limit is not None and math.isfinite(limit):
        bad = ~(x.abs() <= limit)  # NaN compares false, inf exceeds: one test, not isfinite's and the limit's
    else:
        bad = ~torch.isfinite(x)
    bad = bad.flatten(2).any(-1) if bad.dim() > 2 else bad  # [B, T]
    if lens is not None:
        bad &= ~lengths_to_padding_mask(lens.to(bad.device), bad.shape[1])
    return bad.any(-1)


def describe_cut(cut) -> str:
    """``utterance-id (file)`` for a lhotse cut, or its id alone when it has no file."""
    try:
        return f"{cut.id} ({cut.recording.sources[0].source})"
    except (AttributeError, IndexError):
        return str(cut.id)


def name_list(names: list[str], total: int | None = None, shown: int = SHOWN, sep: str = ", ") -> str:
    """``a, b, c and 4 more`` (the first ``shown``, joined by ``sep``; ``(n of N)`` when ``total`` is given)."""
    text = sep.join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
    return text + (f" ({len(names)} of {total})" if total is not None and total > 1 else "")


def require_finite(x, lens, names: list[str], what: str, limit: float | None = None, hint: str = "") -> None:
    """Raise :class:`SpeechrqError` naming every utterance (``names[b]``) of ``x [B, T, ...]`` that holds NaN/inf
    (or ``|x| > limit``) in its valid frames. ``what`` says which numbers (``"encoder layer 3 states"``)."""
    bad = bad_utterances(x, lens, limit)
    if not bool(bad.any()):
        return
    rows = bad.nonzero().flatten().tolist()
    problem = "non-finite (NaN or inf)" if limit is None else f"non-finite or beyond {limit:g} in magnitude"
    everyone = len(rows) == len(names) and len(names) > 1
    tail = hint or ("; every utterance of the batch: the model or its statistics, not the audio, is likely at fault" if everyone else "")
    raise SpeechrqError(f"{what}: {problem} values in utterance {name_list([names[i] for i in rows], len(names))}{tail}")
