"""The baselines of ``speechrq evaluate``, each fixed by a stated rule, whatever encoders are listed and in whatever order.

- **Statistics.** Both baselines normalise log-Mel with the evaluated corpus's own global statistics,
  ``CORPUS/feature_stats.json`` (:func:`speechrq.features.corpus_stats`: kept with a record of the corpus
  content and split that made it, and refused when that content has changed), computed from the corpus's
  training split when missing: the evaluation's train parts (``train``, or ``--splits``' ``train=``; with
  ``--folds``, the parts every fold trains on, together). Never a listed checkpoint's statistics.
- **fbank** (``--fbank-baseline``): those statistics applied to log-Mel, 4 frames stacked onto the 40 ms
  grid (:class:`~speechrq.encoders.frozen.FilterbankEncoder`).
- **random-init** (``--random-baseline``): the encoder preset named by ``--random-preset`` (default
  :data:`RANDOM_PRESET`; :data:`speechrq.models.conformer.PRESETS`), with those statistics, its weights
  drawn once per init seed ``0 .. N-1`` (``--random-init-seeds N``, default :data:`INIT_SEEDS`)
  (:meth:`~speechrq.encoders.frozen.FrozenEncoder.random_init`). Each draw is probed as an encoder of its
  own; the row pools them (:func:`speechrq.evaluate.probes.over_inits`): its score is the mean over
  init seeds × probe seeds and its spread theirs, so the weight draw is in the interval.

What was used is written to ``results.json`` (``baselines``: the statistics file, its sha256 and record, the
preset, the init seeds and each draw's fingerprint) and said under the table in ``results.md``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import SpeechrqError
from .splits import Fold

RANDOM_BASELINE = "random-init"  # the random-init baseline's row in the results
FBANK_BASELINE = "fbank"  # the filterbank baseline's row in the results
RANDOM_PRESET = "tiny"  # the random-init baseline's encoder preset unless --random-preset names another
INIT_SEEDS = 3  # the random-init baseline's weight draws (init seeds 0 .. N-1) unless --random-init-seeds says otherwise


def check_random_init(preset: str, init_seeds: int) -> None:
    """Refuse an unknown preset or a non-positive number of init seeds, naming the flag and the value."""
    from ..models.conformer import PRESETS

    if preset not in PRESETS:
        raise SpeechrqError(f"--random-preset {preset!r}: not an encoder preset (choose from {', '.join(PRESETS)})")
    if isinstance(init_seeds, bool) or not isinstance(init_seeds, int) or init_seeds < 1:
        raise SpeechrqError(f"--random-init-seeds: must be >= 1, got {init_seeds}")


def training_parts(folds: list[Fold]) -> list[str]:
    """The corpus parts whose statistics normalise the baselines: the one fold's train parts, or with
    leave-one-out folds every part a fold trains on (sorted, so the order of the folds does not matter)."""
    return sorted({p for f in folds for p in f.train})


def baseline_stats(corpus: str | Path, folds: list[Fold], progress: bool = True):
    """The corpus's own log-Mel statistics (:func:`~speechrq.features.corpus_stats`, from :func:`training_parts`
    when ``feature_stats.json`` is missing) and the record of them for ``results.json``."""
    from ..features import STATS_FILE, corpus_stats
    from ..io import file_fingerprint

    from ..data.corpus import cut_files

    parts = training_parts(folds)
    if (missing := [p for p in parts if p not in (have := cut_files(corpus))]):
        raise SpeechrqError(f"{corpus}: has no part {', '.join(map(repr, missing))} (it has {', '.join(have)}); say which parts "
                            "to use with --splits train=...,dev=...,test=... or --folds PART,PART,...")
    stats = corpus_stats(corpus, parts[0] if len(parts) == 1 else parts, progress=progress)
    path = Path(corpus) / STATS_FILE
    return stats, {"file": str(path), "sha256": file_fingerprint(path), "source": stats.source, "training_parts": parts,
                   "frames": stats.frames, "utterances": stats.utterances}


def make_baselines(corpus: str | Path, folds: list[Fold], fbank: bool, random_preset: str | None, init_seeds: int,
                   progress: bool = True) -> tuple[dict, dict[str, list[str]], dict]:
    """``(encoders, groups, record)`` for :func:`speechrq.evaluate.run.evaluate`: the filterbank baseline (``fbank``),
    one random-init encoder per init seed (``random_preset`` not None), the random-init row's members, and the rule's record."""
    from ..encoders import FilterbankEncoder, FrozenEncoder
    from ..features import FeatureNormalizer

    if random_preset is not None:
        check_random_init(random_preset, init_seeds)
    encoders, groups, record = {}, {}, {}
    if not fbank and random_preset is None:
        return encoders, groups, record
    stats, record["feature_stats"] = baseline_stats(corpus, folds, progress)
    if fbank:
        encoders[FBANK_BASELINE] = FilterbankEncoder(FeatureNormalizer.from_stats(stats))
        record[FBANK_BASELINE] = {"statistics": "feature_stats", "fingerprint": encoders[FBANK_BASELINE].fingerprint}
    if random_preset is not None:
        seeds = list(range(init_seeds))
        members = {member_name(s): FrozenEncoder.random_init(random_preset, FeatureNormalizer.from_stats(stats), s) for s in seeds}
        encoders |= members
        groups[RANDOM_BASELINE] = list(members)
        record[RANDOM_BASELINE] = {"preset": random_preset, "statistics": "feature_stats", "init_seeds": seeds,
                                   "fingerprints": [e.fingerprint for e in members.values()]}
    return encoders, groups, record


def member_name(seed: int) -> str:
    """The name of one weight draw of the random-init baseline (in messages; the results hold the pooled row only)."""
    return f"{RANDOM_BASELINE} (init seed {seed})"


def describe_baselines(record: dict, probe_seeds: int) -> list[str]:
    """The rule behind the baselines, as lines under the results table."""
    stats = record.get("feature_stats")
    if not stats:
        return []
    src = stats.get("source") or {}
    split = src.get("split", "+".join(stats["training_parts"]))
    made = f"the {'+'.join(split) if isinstance(split, list) else split} split's" if src else "recorded without its split:"
    said = [f"Baselines (the same whatever encoders are listed, in any order): log-Mel normalised with the corpus's own "
            f"statistics, {stats['file']} ({made} {stats['frames']} frames of {stats['utterances']} utterances, "
            f"sha256 {stats['sha256']})"]
    if FBANK_BASELINE in record:
        said.append(f"{FBANK_BASELINE}: those statistics, 4 frames stacked to 40 ms")
    for name, r in record.items():  # random-init, or one row per preset (a sweep's random-init-tiny, ...)
        if not name.startswith(RANDOM_BASELINE) or not r:
            continue
        n = len(r["init_seeds"])
        said.append(f"{name}: the {r['preset']} preset with those statistics, randomly initialised with init seed"
                    f"{'s' if n > 1 else ''} {', '.join(map(str, r['init_seeds']))}; its score is the mean over {n} init seed(s) × "
                    f"{probe_seeds} probe seed(s), its ± their standard deviation")
    return ["", "; ".join(said) + "."]
