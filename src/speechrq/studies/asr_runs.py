"""Where a discrete-ASR comparison's runs live, what they scored, and the family rule over their differences.

Below :mod:`speechrq.studies.discrete_asr` (``asr compare``, which makes the runs) and
:mod:`speechrq.studies.evidence` (the archive of their per-utterance errors and its recheck), which both read
them; every name stays importable from :mod:`speechrq.studies.discrete_asr`.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import SpeechrqError


def _slug(q: dict) -> str:
    return f"{q['kind']}_k{q['k']}_m{q['num_subspaces']}" + (f"_a{q['alpha']:g}" if q["kind"] == "rpq" else "")


def run_dir(out: Path, row: dict, seed: int) -> Path:
    """``OUT/runs/<quantizer>[_<input>]/seed<S>`` (``OUT/runs/continuous/seed<S>`` for the continuous row)."""
    base = "continuous" if row["input"] == "continuous" else _slug(row["quantizer"]) + ("" if row["input"] == "units" else f"_{row['input']}")
    return out / "runs" / base / f"seed{seed}"


def _errors(out: Path, row: dict, seeds: list[int], test_split: str):
    """``(char errors [seeds, U], char lengths [U], word errors [seeds, U], word lengths [U], ids)`` of a row's runs."""
    import numpy as np

    from ..schema import load
    from ..formats import run_errors

    runs = [load(run_dir(out, row, s) / f"errors_{test_split}.json", run_errors) for s in seeds]
    ids = sorted(runs[0]["ids"])
    for r in runs:
        if sorted(r["ids"]) != ids:
            raise SpeechrqError(f"{out}: the runs of {row['name']} scored different {test_split} utterances; decode them again")
    order = [{i: k for k, i in enumerate(r["ids"])} for r in runs]

    def stack(key: str):
        return np.array([[r[key][o[i]] for i in ids] for r, o in zip(runs, order)])

    languages = dict(zip(runs[0]["ids"], runs[0].get("languages") or [None] * len(runs[0]["ids"])))
    return stack("char_errors"), stack("chars")[0], stack("word_errors"), stack("words")[0], ids, [languages[i] for i in ids]


def family(entries: list[dict], name: str) -> list[dict]:
    """Holm's rule over the CER differences of ``entries`` (one table), and over each language's on their own."""
    from .significance import apply_family

    apply_family(entries, name)
    for lang in sorted({lang for e in entries for lang in e.get("by_language", {})}):
        apply_family([e["by_language"][lang] for e in entries if lang in e.get("by_language", {})], f"{name}, {lang}")
    return entries
