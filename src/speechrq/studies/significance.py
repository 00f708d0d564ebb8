"""Intervals and verdicts for differences between systems replicated over training seeds.

The unit of replication is the training (or pre-training) seed: each seed redraws every random part of a
system, so the spread of a system's score over its seeds is its training noise. A system's error rate on a
test set also moves with the utterances the test set happens to hold. The interval of a difference
``rate(b) − rate(a)`` here adds the two sources, each estimated from the data (a random-effects model with
method-of-moments components, as in a two-stage nested design):

- **Seeds.** With ``paired`` seeds (seed ``s`` of both systems shares a draw: a Latent-RQ stage branched from
  the BEST-RQ run of the same seed, or rows built from one quantizer fit), the per-seed differences
  ``d_s = rate(b_s) − rate(a_s)`` give ``var(d) / S`` on ``S − 1`` degrees of freedom (a paired t-interval).
  Otherwise the systems' seeds are independent draws: ``var(a)/S_a + var(b)/S_b`` with Welch-Satterthwaite
  degrees of freedom.
- **Utterances** (when per-utterance errors are given). The seed-averaged per-utterance edit counts give the
  difference as a ratio estimator ``Σ_u d_u / Σ_u L_u``; its linearised variance over utterances,
  ``U/(U−1) Σ_u (d_u − D L_u)² / (Σ L)²``, on ``U − 1`` degrees of freedom (Bisani and Ney 2004 bootstrap
  this same quantity; the delta method is its closed form). Per-utterance noise within a seed enters both
  components, so the sum errs on the wide side.

The components add; the degrees of freedom are the seed components' (Welch-Satterthwaite), and the interval
uses Student's t.
One seed per system gives no estimate of training noise, so no interval and no verdict.

**Families.** A table compares many rows; each comparison's two-sided p-value (from the same t statistic)
enters Holm's (1979) step-down rule within its table, which keeps the chance of any false "better"/"worse"
in the table at or below ``alpha``. A verdict is ``better`` or ``worse`` only when Holm rejects; its interval
is the marginal 95% one.

``tests/test_significance.py`` simulates systems with known differences, utterance and seed noise and checks
the coverage of the interval and the family-wise error of the rule.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import SpeechrqError

LEVEL = 0.95
FAMILY_ALPHA = 0.05
METHOD = ("t-interval over training seeds (paired where a seed shares its draws, Welch otherwise) plus the test "
          "utterances' sampling variance, Satterthwaite degrees of freedom")
FAMILY_RULE = "Holm within each table at a family-wise error of 5%"
ONE_SEED = "one seed: no verdict"
VERDICTS = ("better", "worse", "within noise", ONE_SEED)


def rate(errors: np.ndarray, lengths: np.ndarray) -> float:
    """Percent error rate of ``errors [seeds, utterances]`` over ``lengths [utterances]``: the mean over seeds."""
    return float(100.0 * (errors.sum(1) / lengths.sum()).mean())


def _t_quantile(q: float, df: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(q, df)) if math.isfinite(df) else float(stats.norm.ppf(q))


def _t_pvalue(t: float, df: float) -> float:
    from scipy import stats

    return float(2 * (stats.t.sf(abs(t), df) if math.isfinite(df) else stats.norm.sf(abs(t))))


def combine(difference: float, seeds: list[tuple[float, float]], utterances: float = 0.0, level: float = LEVEL,
            counts: tuple[int, int] = (2, 2)) -> dict:
    """The t-interval of ``difference`` from its training-noise variance components ``seeds`` ``[(variance, degrees
    of freedom), ...]`` and the test utterances' sampling variance ``utterances``.

    The degrees of freedom are Welch-Satterthwaite's over the seed components alone: the utterance component, on
    hundreds of degrees of freedom, only widens the interval (counting its degrees of freedom too lets a seed
    variance that came out small by chance shrink the t quantile as well, which undercovers in simulation).
    Returns ``{"difference", "ci", "level", "se", "df", "p"}``; ``ci``, ``se``, ``df`` and ``p`` are ``None`` when
    either system has a single seed (``counts``): training noise is then unknown."""
    out = {"difference": float(difference), "level": level}
    if min(counts) < 2 or not seeds:
        return out | {"ci": None, "se": None, "df": None, "p": None}
    seed_var = sum(v for v, _ in seeds)
    denom = sum(v * v / df for v, df in seeds if v > 0)
    df = seed_var * seed_var / denom if denom > 0 else float(min(df for _, df in seeds))
    se = math.sqrt(seed_var + utterances)
    if se == 0:  # every seed and utterance agrees: the difference is what it is
        return out | {"ci": [float(difference)] * 2, "se": 0.0, "df": df, "p": 0.0 if difference else 1.0}
    half = _t_quantile((1 + level) / 2, df) * se
    return out | {"ci": [float(difference - half), float(difference + half)], "se": se, "df": float(df),
                  "p": _t_pvalue(difference / se, df)}


def seed_components(a: np.ndarray, b: np.ndarray, paired: bool) -> list[tuple[float, float]]:
    """The training-noise variance of ``mean(b) − mean(a)`` from per-seed scores ``a [S_a]``, ``b [S_b]``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        return []
    if paired:
        if len(a) != len(b):
            raise SpeechrqError(f"paired seeds: the systems have {len(a)} and {len(b)} seeds")
        d = b - a
        return [(float(d.var(ddof=1)) / len(d), len(d) - 1)]
    return [(float(a.var(ddof=1)) / len(a), len(a) - 1), (float(b.var(ddof=1)) / len(b), len(b) - 1)]


def seed_difference(a, b, paired: bool, level: float = LEVEL) -> dict:
    """``mean(b) − mean(a)`` of per-seed scores (any unit: PER, accuracy) with its t-interval over seeds.

    ``a [S_a]`` and ``b [S_b]`` are one score per seed, measured on one fixed test set (its utterance noise is
    not in the interval). Returns :func:`combine`'s dict with ``"seeds"`` and ``"paired"``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return combine(b.mean() - a.mean(), seed_components(a, b, paired), 0.0, level, (len(a), len(b))) | {
        "seeds": [len(a), len(b)], "paired": paired}


def difference_interval(a: np.ndarray, b: np.ndarray, lengths: np.ndarray, paired: bool = False, level: float = LEVEL) -> dict:
    """``rate(b) − rate(a)`` in percent (negative: ``b`` makes fewer errors) with its t-interval over training
    seeds and test utterances (see the module docstring).

    ``a [S_a, U]`` and ``b [S_b, U]`` are per-utterance edit counts of two systems on the same ``U`` utterances (same
    order), ``lengths [U]`` the references' lengths. Returns ``{"difference", "ci", "level", "se", "df", "p",
    "seeds": [S_a, S_b], "paired", "utterances"}``; ``ci`` and ``p`` are ``None`` with one seed. Raises
    :class:`SpeechrqError` when the shapes do not match or no reference has a length.
    """
    a, b, lengths = (np.asarray(x, dtype=np.float64) for x in (a, b, lengths))
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or lengths.shape != (a.shape[1],):
        raise SpeechrqError(f"interval: per-utterance errors must be [seeds, U] on the same U utterances with U lengths; "
                            f"got {a.shape}, {b.shape} and {lengths.shape}")
    total = lengths.sum()
    if total <= 0:
        raise SpeechrqError("interval: the references are empty")
    u = a.shape[1]
    ra, rb = 100.0 * a.sum(1) / total, 100.0 * b.sum(1) / total  # [S]: each seed's corpus-level rate
    diff = rb.mean() - ra.mean()
    utterances = 0.0
    if u > 1:
        d = b.mean(0) - a.mean(0)  # [U]: seed-averaged edit count difference per utterance
        resid = d - (diff / 100.0) * lengths
        utterances = 1e4 * u / (u - 1) * float((resid ** 2).sum()) / total ** 2
    return combine(diff, seed_components(ra, rb, paired), utterances, level, (len(ra), len(rb))) | {"seeds": [len(ra), len(rb)], "paired": paired, "utterances": u}


def holm(pvalues: list[float | None], alpha: float = FAMILY_ALPHA) -> list[bool]:
    """Holm's step-down rule: which of ``pvalues`` are rejected with family-wise error ``alpha`` (``None``: never)."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    reject = [False] * len(pvalues)
    for rank, (p, i) in enumerate(tested):
        if p > alpha / (len(tested) - rank):
            break
        reject[i] = True
    return reject


def holm_adjusted(pvalues: list[float | None]) -> list[float | None]:
    """Holm-adjusted p-values (the smallest family-wise level at which each is rejected)."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))
        out[i] = running
    return out


def verdict(d: dict, rejected: bool, lower_is_better: bool = True) -> str:
    """``better``/``worse`` (the row against its reference, after the family rule), ``within noise``, or no verdict
    with one seed."""
    if d.get("ci") is None:
        return ONE_SEED
    if not rejected:
        return "within noise"
    return "better" if (d["difference"] < 0) == lower_is_better else "worse"


def apply_family(entries: list[dict], family: str, key: str = "cer", lower_is_better: bool = True,
                 alpha: float = FAMILY_ALPHA, view=None) -> list[dict]:
    """Holm over the ``key`` differences of ``entries`` (one table's comparisons): sets each entry's ``p_holm``,
    ``family`` and ``verdict`` in place and returns ``entries``. ``view(entry)`` gives an entry's difference as
    ``{"difference", "ci", "p"}`` where it is not ``entry[key]`` (the Latent-RQ study's cells)."""
    diffs = [view(e) if view else e[key] for e in entries]
    ps = [d.get("p") for d in diffs]
    adjusted = holm_adjusted(ps)
    for e, d, p in zip(entries, diffs, adjusted):
        e["p_holm"], e["family"] = p, {"name": family, "size": sum(x is not None for x in ps), "rule": FAMILY_RULE}
        e["verdict"] = verdict(d, p is not None and p <= alpha, lower_is_better)
    return entries

