"""The bootstrap over test utterances and training seeds behind every difference ``asr compare`` reports."""

from __future__ import annotations

import numpy as np
import pytest

from speechrq.errors import SpeechrqError
from speechrq.studies.significance import bootstrap_difference, difference_verdict, rate
from speechrq.text import error_rate, utterance_errors


def test_rate_is_the_corpus_level_error_rate():
    refs, hyps = ["the cat sat", "a dog", "hello world again"], ["the bat sat on", "", "helo world"]
    for unit in ("char", "word"):
        errors, lengths = utterance_errors(refs, hyps, unit)
        assert rate(np.array([errors]), np.array(lengths)) == pytest.approx(error_rate(refs, hyps, unit))


def test_equal_systems_differ_by_nothing_and_a_better_one_is_found():
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 80, size=300)
    a = rng.binomial(lengths, 0.3, size=(3, 300))
    one = bootstrap_difference(a[:1], a[:1].copy(), lengths)  # one seed each: the paired utterance draws cancel exactly
    assert one["difference"] == 0 and one["ci"] == [0.0, 0.0]
    same = bootstrap_difference(a, a.copy(), lengths)  # seeds drawn apart per system: only training noise is left
    assert same["difference"] == 0 and same["ci"][0] < 0 < same["ci"][1] and difference_verdict(same) == "within noise"
    better = np.maximum(a - rng.binomial(lengths, 0.1, size=(3, 300)), 0)  # about 10 points fewer errors
    d = bootstrap_difference(a, better, lengths)
    assert d["difference"] == pytest.approx(rate(better, lengths) - rate(a, lengths))
    assert d["ci"][1] < 0 and difference_verdict(d) == "better" and d["seeds"] == [3, 3] and d["utterances"] == 300
    assert difference_verdict(bootstrap_difference(better, a, lengths)) == "worse"


def test_training_noise_widens_the_interval():
    """Two systems with the same mean: seeds that agree give a narrow interval, seeds far apart a wide one."""
    rng = np.random.default_rng(1)
    lengths = np.full(400, 50)
    a = rng.binomial(lengths, 0.3, size=(3, 400))
    steady = rng.binomial(lengths, 0.3, size=(3, 400))
    noisy = np.stack([rng.binomial(lengths, p) for p in (0.2, 0.3, 0.4)])
    narrow, wide = bootstrap_difference(a, steady, lengths), bootstrap_difference(a, noisy, lengths)
    assert wide["ci"][1] - wide["ci"][0] > 3 * (narrow["ci"][1] - narrow["ci"][0])
    assert difference_verdict(wide) == "within noise"


def test_the_same_seed_gives_the_same_interval_and_bad_shapes_are_refused():
    rng = np.random.default_rng(2)
    lengths = rng.integers(5, 30, size=50)
    a, b = rng.binomial(lengths, 0.4, size=(2, 50)), rng.binomial(lengths, 0.35, size=(3, 50))
    assert bootstrap_difference(a, b, lengths) == bootstrap_difference(a, b, lengths)
    with pytest.raises(SpeechrqError, match="same U utterances"):
        bootstrap_difference(a, b[:, :40], lengths)
    with pytest.raises(SpeechrqError, match="empty"):
        bootstrap_difference(a, b, np.zeros(50))
