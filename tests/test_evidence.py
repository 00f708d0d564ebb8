"""Every shipped interval and verdict recomputed from the shipped per-utterance errors and per-seed numbers."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from speechrq.studies.discrete_asr import family, paired_difference
from speechrq.studies.evidence import (archive_path, read_archive, recheck_compare, recheck_latent, recheck_tables,
                                       write_archive)

DOCS = Path(__file__).resolve().parents[1] / "docs"
TABLES = ("rpq_tables_mel.json", "ml_tables.json")
COMPARES = ("asr_compare_seeds_tiny_bestrq.json",)

@pytest.mark.parametrize("name", TABLES + COMPARES)
def test_every_shipped_table_is_recomputed_from_its_per_utterance_errors(name):
    data = json.loads((DOCS / name).read_text())
    archive = read_archive(archive_path(DOCS / name))
    problems = recheck_tables(data, archive) if name in TABLES else recheck_compare(data, archive)
    assert problems == []


def test_the_shipped_latent_study_is_recomputed_from_its_per_seed_numbers():
    study = json.loads((DOCS / "latent_study.json").read_text())
    assert recheck_latent(study) == []
    cells = [c["vs_base"] for row in study["arms"].values() for c in row.values() if c and c.get("vs_base")]
    assert cells and all(c.get("family") for c in cells)  # every verdict under the family rule
    tampered = copy.deepcopy(study)
    arm = next(a for a, row in tampered["arms"].items() if row["pr"].get("vs_base"))
    tampered["arms"][arm]["pr"]["per_seed"]["0"] += 5.0  # a per-seed number changed: its interval no longer follows
    assert any("arms." in p for p in recheck_latent(tampered))


def _archive_and_table(tmp_path, rng):
    """Three systems, 3 seeds, 120 test utterances (2 languages): an archive and the compare-style differences."""
    lengths = rng.integers(10, 60, size=120)
    langs = ["en"] * 60 + ["ru"] * 60
    rows, errors = {}, {}
    for name, p, slug in (("k-means (k=8)", 0.40, "kmeans"), ("k-means (k=8), de-duplicated", 0.41, "kmeans"), ("RPQ (M=2, α=0.5)", 0.30, "rpq")):
        ce = rng.binomial(lengths, p, size=(3, 120))
        we = rng.binomial(np.maximum(lengths // 5, 1), p, size=(3, 120))
        q = {"kind": slug, "k": 8, "num_subspaces": 2 if slug == "rpq" else 1} | ({"alpha": 0.5} if slug == "rpq" else {})
        split = {"ids": [f"u{i}" for i in range(120)], "chars": lengths.tolist(), "words": np.maximum(lengths // 5, 1).tolist(),
                 "languages": langs, "char_errors": ce.tolist(), "word_errors": we.tolist()}
        rows[name] = {"comparison": "cmp", "quantizer": q, "input": "units", "splits": {"test": split, "dev": split}}
        errors[name] = (ce, lengths, we, np.maximum(lengths // 5, 1), split["ids"], langs)
    path = write_archive(tmp_path / "cmp_errors.json.gz", rows, [0, 1, 2], "test")
    report = {"test_split": "test", "training_seeds": [0, 1, 2], "rows": {}, "differences": []}
    for name, (ce, lengths, *_rest) in errors.items():
        per_seed = 100 * ce.sum(1) / lengths.sum()
        report["rows"][name] = {"cer": float(per_seed.mean()), "cer_std": float(per_seed.std(ddof=1))}
    for base in ("k-means (k=8)", "k-means (k=8), de-duplicated"):
        d = {"row": "RPQ (M=2, α=0.5)", "baseline": base} | paired_difference(errors[base], errors["RPQ (M=2, α=0.5)"], "x", "test")
        report["differences"].append(d)
    family(report["differences"], "each row against each k-means row")
    return path, report


def test_recheck_finds_every_kind_of_disagreement(tmp_path):
    path, report = _archive_and_table(tmp_path, np.random.default_rng(0))
    archive = read_archive(path)
    assert recheck_compare(report, archive) == []
    assert archive_path(tmp_path / "compare.json").name == "compare_errors.json.gz"
    for change, expect in ((lambda r: r["differences"][0]["cer"]["ci"].__setitem__(0, -99.0), "cer.ci"),
                           (lambda r: r["differences"][1].__setitem__("verdict", "within noise"), "verdict"),
                           (lambda r: r["rows"]["k-means (k=8)"].__setitem__("cer", 1.0), "CER"),
                           (lambda r: r["differences"][0].__setitem__("baseline", "no such row"), "not in the archive")):
        bad = copy.deepcopy(report)
        change(bad)
        problems = recheck_compare(bad, archive)
        assert problems and any(expect in p for p in problems), (expect, problems)


def test_a_broken_archive_is_one_line(tmp_path):
    from speechrq.errors import SpeechrqError

    with pytest.raises(SpeechrqError, match="missing"):
        read_archive(tmp_path / "none_errors.json.gz")
    (tmp_path / "bad_errors.json.gz").write_bytes(b"not gzip")
    with pytest.raises(SpeechrqError, match="not a gzipped JSON archive"):
        read_archive(tmp_path / "bad_errors.json.gz")


def test_the_archive_is_byte_reproducible_and_checked_whole(tmp_path):
    import gzip

    from speechrq.errors import SpeechrqError

    path, report = _archive_and_table(tmp_path, np.random.default_rng(1))
    data = read_archive(path)
    again = write_archive(tmp_path / "again_errors.json.gz", data["rows"], data["seeds"], data["test_split"])
    assert again.read_bytes() == path.read_bytes()  # no temporary name or time in the gzip header
    for change, named in ((lambda d: d["rows"]["k-means (k=8)"].pop("splits"), "k-means (k=8): missing key 'splits'"),
                          (lambda d: d["rows"]["k-means (k=8)"]["splits"]["test"]["chars"].pop(), "chars: expected one per utterance"),
                          (lambda d: d["rows"]["k-means (k=8)"]["splits"]["test"]["char_errors"].pop(), "char_errors: expected [3 seeds]")):
        bad = copy.deepcopy(data)
        change(bad)
        (tmp_path / "bad_errors.json.gz").write_bytes(gzip.compress(json.dumps(bad).encode()))
        with pytest.raises(SpeechrqError, match=named.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            read_archive(tmp_path / "bad_errors.json.gz")
    # rows scored on the utterances in another order cannot be compared pair by pair
    shuffled = copy.deepcopy(data)
    shuffled["rows"]["RPQ (M=2, α=0.5)"]["splits"]["test"]["ids"].reverse()
    assert any("another order" in p for p in recheck_compare(report, shuffled))
