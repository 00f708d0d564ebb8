"""Intervals for differences between systems scored on the same test utterances with several training seeds.

A system's error rate on a test set moves with the utterances drawn and with the training seed. The
bootstrap here resamples both: the utterances (the same draw for both systems: they are scored on
the same references, so the comparison is paired over utterances) and, independently per system, its
training seeds (seed ``s`` of one system has nothing to do with seed ``s`` of another). Each draw's
rate is the mean over the drawn seeds of ``sum(errors) / sum(lengths)`` over the drawn utterances,
corpus-level as CER and WER are. Bisani and Ney (2004) bootstrap over utterances; adding the seeds
makes the interval cover training noise too, which one seed per system cannot show.
"""

from __future__ import annotations

import numpy as np

from ..errors import SpeechrqError

ITERATIONS = 2000


def rate(errors: np.ndarray, lengths: np.ndarray) -> float:
    """Percent error rate of ``errors [seeds, utterances]`` over ``lengths [utterances]``: the mean over seeds."""
    return float(100.0 * (errors.sum(1) / lengths.sum()).mean())


def bootstrap_difference(a: np.ndarray, b: np.ndarray, lengths: np.ndarray, iterations: int = ITERATIONS, seed: int = 0,
                         level: float = 0.95) -> dict:
    """``rate(b) - rate(a)`` (negative: ``b`` makes fewer errors) with its bootstrap interval.

    ``a [seeds_a, U]`` and ``b [seeds_b, U]`` are per-utterance edit counts of two systems on the same ``U``
    utterances (same order), ``lengths [U]`` the references' lengths. Returns ``{"difference", "ci", "level",
    "seeds": [seeds_a, seeds_b], "utterances", "iterations"}``. Raises :class:`SpeechrqError` when the shapes
    do not match or no reference has a length.
    """
    a, b, lengths = (np.asarray(x, dtype=np.float64) for x in (a, b, lengths))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or lengths.shape != (a.shape[1],):
        raise SpeechrqError(f"bootstrap: per-utterance errors must be [seeds, U] on the same U utterances with U lengths; "
                            f"got {a.shape}, {b.shape} and {lengths.shape}")
    if lengths.sum() <= 0:
        raise SpeechrqError("bootstrap: the references are empty")
    rng = np.random.default_rng(seed)
    u = a.shape[1]
    counts = rng.multinomial(u, np.full(u, 1.0 / u), size=iterations).astype(np.float64)  # [B, U]: utterances drawn, paired
    total = counts @ lengths  # [B]

    def drawn(x: np.ndarray) -> np.ndarray:
        per_seed = (counts @ x.T) / total[:, None]  # [B, seeds]
        picks = rng.integers(0, x.shape[0], size=(iterations, x.shape[0]))  # seeds drawn per system
        return 100.0 * np.take_along_axis(per_seed, picks, 1).mean(1)

    diffs = drawn(b) - drawn(a)
    lo, hi = np.quantile(diffs, [(1 - level) / 2, (1 + level) / 2])
    return {"difference": rate(b, lengths) - rate(a, lengths), "ci": [float(lo), float(hi)], "level": level,
            "seeds": [a.shape[0], b.shape[0]], "utterances": u, "iterations": iterations}


def difference_verdict(d: dict) -> str:
    """``better`` (the interval below zero: fewer errors), ``worse`` (above) or ``within noise``."""
    lo, hi = d["ci"]
    return "better" if hi < 0 else "worse" if lo > 0 else "within noise"
