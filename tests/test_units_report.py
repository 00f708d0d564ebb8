"""``units report``'s numbers on hand-built codes and quantizers, where their values are known exactly.

PNMI = I(phone; unit) / H(phone) and phone purity = sum over units of max over phones of p(phone, unit)
(HuBERT's definitions) from :func:`phone_information`; NMSE = ||x - x_hat||^2 / ||x - mean||^2 from :func:`measure`.
"""

from __future__ import annotations

import numpy as np
import pytest

from speechrq.units.quantizers import QuantizerSpec, UnitQuantizer
from speechrq.units.report import measure, phone_information

PHONES = np.array(["a", "e", "i", "o"])


def tiled(counts: list[int]) -> np.ndarray:
    """Phone labels, ``counts[p]`` frames of phone p, shuffled."""
    labels = np.concatenate([np.full(n, PHONES[p]) for p, n in enumerate(counts)])
    return np.random.default_rng(0).permutation(labels)


def as_ids(phones: np.ndarray) -> np.ndarray:
    return np.searchsorted(PHONES, phones)


def test_codes_equal_to_the_phones_or_refining_them_give_pnmi_1_and_purity_1():
    phones = tiled([400, 300, 200, 100])
    ids = as_ids(phones)
    same = phone_information(ids[:, None], phones)
    assert same["pnmi"] == pytest.approx(1.0, abs=1e-12) and same["phone_purity"] == pytest.approx(1.0, abs=1e-12)
    # each phone split over two units (more units than phones): every unit still names its phone
    rng = np.random.default_rng(1)
    finer = phone_information((2 * ids + rng.integers(0, 2, len(ids)))[:, None], phones)
    assert finer["pnmi"] == pytest.approx(1.0, abs=1e-12) and finer["phone_purity"] == pytest.approx(1.0, abs=1e-12)


def test_codes_that_merge_phones_in_pairs_keep_half_the_information():
    """Four equally frequent phones, units a|e and i|o: I = ln 2 of H = ln 4, and each unit is half right."""
    phones = tiled([250, 250, 250, 250])
    merged = phone_information((as_ids(phones) // 2)[:, None], phones)
    assert merged["pnmi"] == pytest.approx(0.5, abs=1e-12)
    assert merged["phone_purity"] == pytest.approx(0.5, abs=1e-12)


def test_codes_independent_of_the_phones_give_pnmi_0_and_the_majority_phone_as_purity():
    counts = [400, 300, 200, 100]
    # exactly independent: every phone meets every one of 6 units equally often
    phones = np.repeat(np.concatenate([np.full(n, PHONES[p]) for p, n in enumerate(counts)]), 6)
    units = np.tile(np.arange(6), sum(counts))
    exact = phone_information(units[:, None], phones)
    assert exact["pnmi"] == pytest.approx(0.0, abs=1e-12)
    assert exact["phone_purity"] == pytest.approx(max(counts) / sum(counts), abs=1e-12)
    # drawn independently: about 0 (the plug-in estimate's bias is ~ (6 - 1)(4 - 1) / 2N nats)
    rng = np.random.default_rng(2)
    phones = PHONES[rng.choice(4, 40000, p=np.array(counts) / sum(counts))]
    drawn = phone_information(rng.integers(0, 6, (40000, 1)), phones)
    assert 0 <= drawn["pnmi"] < 2e-3
    assert drawn["phone_purity"] == pytest.approx(0.4, abs=0.01)


def test_streams_are_averaged():
    phones = tiled([250, 250, 250, 250])
    ids = as_ids(phones)
    both = phone_information(np.stack([ids, ids // 2], 1), phones)  # one stream names the phone, one its pair
    assert both["pnmi"] == pytest.approx(0.75, abs=1e-12) and both["phone_purity"] == pytest.approx(0.75, abs=1e-12)


def hand_quantizer(centroids: list[np.ndarray], subsets: list[np.ndarray], kind: str) -> UnitQuantizer:
    dim = sum(len(s) for s in subsets) if kind == "pq" else len(subsets[0])
    spec = QuantizerSpec(kind=kind, k=len(centroids[0]), num_subspaces=len(centroids))
    return UnitQuantizer(spec, centroids, subsets, np.zeros(dim, np.float32), np.ones(dim, np.float32), [1000] * len(centroids))


def test_nmse_is_0_on_the_centroids_and_the_centred_error_ratio_off_them():
    rng = np.random.default_rng(4)
    centroids = (10.0 + rng.normal(0, 3, (4, 6))).astype(np.float32)  # far from the origin: the mean matters
    q = hand_quantizer([centroids], [np.arange(6)], "kmeans")
    phones = tiled([100, 100, 100, 100])
    ids = as_ids(phones)
    exact = measure(q, centroids[ids], phones)
    assert exact["nmse"] == 0.0
    assert exact["pnmi"] == pytest.approx(1.0, abs=1e-9) and exact["phone_purity"] == pytest.approx(1.0, abs=1e-9)
    assert exact["used"] == 1.0 and exact["entropy_bits"] == pytest.approx(2.0)
    # off the centroids by less than half their spacing: the same codes, the error is the offset
    noise = rng.normal(0, 0.05, (len(ids), 6)).astype(np.float32)
    x = centroids[ids] + noise
    want = float((noise.astype(np.float64) ** 2).sum() / ((x - x.mean(0)).astype(np.float64) ** 2).sum())
    assert measure(q, x)["nmse"] == pytest.approx(want, rel=1e-4)
    # unlabelled frames ('') are left out of the phone numbers, whatever their units
    unlabelled = np.where(np.arange(len(ids)) % 5 == 0, "", phones)
    shuffled = centroids[np.where(unlabelled == "", rng.integers(0, 4, len(ids)), ids)]
    assert measure(q, shuffled, unlabelled)["pnmi"] == pytest.approx(1.0, abs=1e-9)


def test_nmse_of_product_quantization_is_0_when_every_sub_vector_is_a_centroid():
    rng = np.random.default_rng(5)
    halves = [rng.normal(0, 1, (3, 2)).astype(np.float32), rng.normal(5, 1, (3, 3)).astype(np.float32)]
    q = hand_quantizer(halves, [np.arange(2), np.arange(2, 5)], "pq")
    codes = rng.integers(0, 3, (300, 2))
    x = np.concatenate([halves[0][codes[:, 0]], halves[1][codes[:, 1]]], 1)
    row = measure(q, x)
    assert row["nmse"] == 0.0 and row["streams"] == 2
    assert np.array_equal(q.encode(x), codes)
