"""Numbers entering a unit quantizer: NaN, inf and overflowing rows are refused in one line, ids always lie in [0, k).

Issue 21: `units encode` wrote unit 65535 for a quantizer with k = 50 (faiss answers -1 for a NaN row, cast to
uint16), and `units fit` on such features ended in faiss's own RuntimeError traceback.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from speechrq.errors import SpeechrqError
from speechrq.units import QuantizerSpec, UnitQuantizer


def clustered(n=600, d=8, centers=6, seed=0):
    g = np.random.default_rng(seed)
    c = g.normal(size=(centers, d)) * 3
    return (c[g.integers(0, centers, n)] + g.normal(size=(n, d))).astype(np.float32)


@pytest.fixture(scope="module")
def fitted():
    return UnitQuantizer.fit(clustered(), QuantizerSpec(kind="kmeans", k=8, niter=5))


@pytest.mark.parametrize("value, kind", [(np.nan, "NaN or inf"), (np.inf, "NaN or inf"), (-np.inf, "NaN or inf"),
                                         (1e20, "values too large for float32 distances")])
@pytest.mark.parametrize("spec", [QuantizerSpec(kind="kmeans", k=8, niter=3), QuantizerSpec(kind="pq", k=8, num_subspaces=2, niter=3),
                                  QuantizerSpec(kind="rvq", k=8, num_subspaces=2, niter=3, normalize="standardize")])
def test_fit_refuses_bad_rows_with_a_speechrq_error_never_fais_runtime_error(spec, value, kind):
    x = clustered()
    x[[5, 17, 400], 2] = value
    with pytest.raises(SpeechrqError) as e:
        UnitQuantizer.fit(x, spec)
    assert str(e.value) == (f"units fit: the training features: 3 of 600 rows hold {kind} (rows 5, 17, 400); "
                            "the features are broken upstream (audio, statistics or encoder)")


@pytest.mark.parametrize("value", [np.nan, np.inf, 1e20])
def test_encode_refuses_bad_rows_naming_them_and_what_they_are(fitted, value):
    x = clustered(n=50, seed=1)
    x[7, 0] = value
    for encode in (fitted.encode, lambda a, source: fitted.encode_torch(torch.from_numpy(a), source=source)):
        with pytest.raises(SpeechrqError, match=r"^units encode: features of utterance u1 \(a\.wav\): 1 of 50 rows hold .* \(rows 7\)"):
            encode(x, source="utterance u1 (a.wav)")
    with pytest.raises(SpeechrqError, match=r"^units encode: features: 1 of 50 rows"):
        fitted.encode(x)


def test_ids_always_lie_below_k_and_a_row_without_a_nearest_centroid_is_an_error(fitted):
    from speechrq.units.quantizers import _nearest

    x = clustered(n=2000, seed=2) * 100  # far outside the training cloud: still the nearest of the k
    codes = fitted.encode(x)
    assert codes.dtype == np.uint16 and codes.max() < fitted.spec.k
    assert int(fitted.encode_torch(torch.from_numpy(x)).max()) < fitted.spec.k
    # faiss answers -1 for a row it cannot place (NaN): never handed on as an id (it was 65535 as uint16)
    bad = clustered(n=4, seed=3)
    bad[2] = np.nan
    with pytest.raises(SpeechrqError, match=r"no nearest centroid for 1 of 4 rows \(first row 2, id -1\); ids must lie in \[0, 8\)"):
        _nearest(bad, fitted.centroids[0])


def test_k_past_the_uint16_range_is_refused():
    QuantizerSpec(k=65535).validate()
    with pytest.raises(SpeechrqError, match="65536: between 2 and 65535"):
        QuantizerSpec(k=65536).validate()


def test_a_saved_quantizer_with_non_finite_centroids_is_refused(fitted, tmp_path):
    from safetensors.numpy import load_file, save_file

    fitted.save(tmp_path / "q")
    t = load_file(str(tmp_path / "q" / "units.safetensors"))
    t["centroids.0"][3, 1] = np.nan
    save_file(t, str(tmp_path / "q" / "units.safetensors"))
    with pytest.raises(SpeechrqError, match=r"units\.safetensors: centroids\.0 holds NaN or inf"):
        UnitQuantizer.load(tmp_path / "q")


# ---------------------------------------------------------------- encoder outputs entering a quantizer


@pytest.fixture(scope="module")
def folder_corpus(tmp_path_factory):
    from speechrq.data.recipes import import_corpus

    root = tmp_path_factory.mktemp("qcorpus")
    g = np.random.default_rng(0)
    (root / "src").mkdir()
    for i in range(3):
        sf.write(root / "src" / f"utt{i}.wav", (0.1 * g.standard_normal(12000)).astype(np.float32), 16000, subtype="FLOAT")
    import_corpus("folder", root / "src", root / "corpus", workers=1, progress=False)
    return root / "corpus"


def poisoned_checkpoint(root, corpus, std: float):
    """A tiny untrained checkpoint whose log-Mel statistics hold ``std`` in bin 0 (a checkpoint is not a stats file:
    nothing checked these numbers when they were saved)."""
    from conftest import tiny_pretrain_config
    from speechrq.checkpoint import save_checkpoint, step_dir
    from speechrq.config import config_from_dict, config_to_dict
    from speechrq.pretrain.config import PretrainConfig
    from speechrq.pretrain.model import build_model

    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(corpus, root))
    torch.manual_seed(0)
    state = build_model(cfg).state_dict()
    state["normalizer.std"][0] = std
    return save_checkpoint(step_dir(root, 0), state, {}, {"config": config_to_dict(cfg), "step": 0})


def test_non_finite_encoder_states_are_named_by_utterance_before_a_sample_or_units_are_written(folder_corpus, fitted, tmp_path):
    from speechrq.data.corpus import load_cuts
    from speechrq.encoders import EncoderLayer
    from speechrq.units.encode import encode_corpus
    from speechrq.units.sample import sample_features

    layer = EncoderLayer(poisoned_checkpoint(tmp_path / "nan", folder_corpus, float("nan")), 1)
    cuts = load_cuts(folder_corpus, "train")
    with pytest.raises(SpeechrqError) as e:
        sample_features(layer, cuts, tmp_path / "sample", fraction=1.0, progress=False)
    msg = str(e.value)
    assert msg.startswith("encoder layer 1 states: non-finite or beyond 65504 in magnitude values in utterance utt0")
    assert "utt0.wav" in msg and "(3 of 3)" in msg and "not the audio" in msg and "\n" not in msg
    assert not list((tmp_path / "sample").glob("shard_*.npy"))

    q = UnitQuantizer.fit(np.random.default_rng(0).standard_normal((100, layer.dim)).astype(np.float32), QuantizerSpec(k=4, niter=2))
    with pytest.raises(SpeechrqError, match=r"^encoder layer 1 states: non-finite \(NaN or inf\) values in utterance utt0"):
        encode_corpus(layer, q, cuts, tmp_path / "units", "train", progress=False)
    assert not list((tmp_path / "units" / "arrays").rglob("*.npy"))


def test_states_past_float16_are_refused_before_a_float16_sample_turns_them_into_inf(folder_corpus, tmp_path):
    from speechrq.data.corpus import load_cuts
    from speechrq.encoders import EncoderLayer
    from speechrq.units.sample import sample_features

    layer = EncoderLayer(poisoned_checkpoint(tmp_path / "tiny", folder_corpus, 1e-9), -1)  # the front end: no norm to rescue it
    with pytest.raises(SpeechrqError, match=r"^encoder layer -1 states: non-finite or beyond 65504 in magnitude values in utterance utt0"):
        sample_features(layer, load_cuts(folder_corpus, "train"), tmp_path / "sample", fraction=1.0, progress=False)


def test_probe_and_fine_tuning_features_refuse_non_finite_states_naming_the_utterances(folder_corpus, tmp_path):
    from speechrq.data.corpus import load_cuts
    from speechrq.encoders import FrozenEncoder, HiddenStateCache, cache_hidden_states
    from speechrq.evaluate.finetune import _features
    from speechrq.evaluate.probes import StateStore

    enc = FrozenEncoder.from_checkpoint(poisoned_checkpoint(tmp_path / "nan", folder_corpus, float("nan")))
    cuts = list(load_cuts(folder_corpus, "train"))
    cache = HiddenStateCache(tmp_path / "hidden", enc.fingerprint)
    with pytest.raises(SpeechrqError, match=rf"^hidden states of {enc.fingerprint}: non-finite or beyond 65504 in magnitude values in utterance utt0"):
        cache_hidden_states(enc, cuts, cache, progress=False)
    assert not list(cache.dir.glob("*.npy"))  # nothing cached
    with pytest.raises(SpeechrqError, match=r"^ft: non-finite normalised log-Mel from utterance utt0.* \(3 of 3\) \(the audio is valid"):
        _features(enc, cuts)

    # a cache written before states were checked (or by hand): probes refuse it, naming the utterance and the folder
    good = FrozenEncoder.from_checkpoint(poisoned_checkpoint(tmp_path / "ok", folder_corpus, 1.0))
    cache = HiddenStateCache(tmp_path / "hidden", good.fingerprint)
    assert cache_hidden_states(good, cuts, cache, progress=False) == 3
    states = cache.get(cuts[1].id)
    states[0, 0, 0] = np.inf
    cache.put(cuts[1].id, states)
    with pytest.raises(SpeechrqError, match=rf"^hidden states cached in {cache.dir}: NaN or inf in utterance {cuts[1].id} \(1 of 3\)"):
        StateStore(cache, [c.id for c in cuts])


# ---------------------------------------------------------------- the exact behaviour of each kind (issue 34, point 10)
# RPQ's subset size for an alpha that is not a whole number of dimensions, each codebook's seed, PQ's split, how frames are
# encoded and rebuilt: deliberate one-line bugs in each (int() for round(), one seed for every codebook) passed every test.

from speechrq.units.quantizers import subspaces  # noqa: E402


# d = alpha x D (the RPQ paper, section IV; its alphas give whole numbers of its 768 or 1024 dimensions). Otherwise the
# nearest whole number, as Python's round() gives it (a tie to the even neighbour: 2.5 -> 2, 3.5 -> 4), and at least 1.
# A saved quantizer holds its subsets, but a fit with the same settings must draw the same ones: these numbers are fixed.
@pytest.mark.parametrize("dim, alpha, size", [(10, 0.37, 4), (12, 0.3, 4), (3, 0.9, 3), (768, 0.1, 77), (768, 0.3, 230),
                                              (100, 0.333, 33), (14, 0.25, 4), (7, 0.5, 4), (6, 0.25, 2), (10, 0.15, 2),
                                              (10, 0.25, 2), (18, 0.25, 4), (10, 0.001, 1), (1024, 0.0625, 64),
                                              (1024, 0.125, 128), (64, 0.25, 16), (10, 1.0, 10), (1, 0.5, 1)])
def test_rpq_takes_round_alpha_d_distinct_dimensions_per_subset(dim, alpha, size, caplog):
    with caplog.at_level("WARNING", logger="speechrq.units.quantizers"):
        subsets = subspaces("rpq", dim, 5, alpha, seed=1)
    assert len(subsets) == 5
    for s in subsets:
        assert s.dtype == np.int64 and len(s) == size
        assert np.array_equal(s, np.unique(s)) and 0 <= s.min() and s.max() < dim  # sorted, distinct, in range
    if alpha * dim == size:
        assert caplog.text == ""
    else:  # never silently: what each sub-space takes and the alpha in effect
        assert (f"rpq: alpha {alpha:g} of {dim} dimensions is {alpha * dim:g}; each sub-space takes {size} dimensions "
                f"(alpha {size / dim:g} in effect)") in caplog.text


def test_a_fitted_rpq_uses_and_saves_the_subsets_of_its_alpha(tmp_path):
    x = clustered(n=300, d=10)
    q = UnitQuantizer.fit(x, QuantizerSpec(kind="rpq", k=4, num_subspaces=3, alpha=0.37, seed=4, niter=2))
    assert [len(s) for s in q.subsets] == [4, 4, 4] and [c.shape for c in q.centroids] == [(4, 4)] * 3
    assert all(np.array_equal(a, b) for a, b in zip(q.subsets, subspaces("rpq", 10, 3, 0.37, 4)))
    q.save(tmp_path / "q")
    r = UnitQuantizer.load(tmp_path / "q")
    assert all(np.array_equal(a, b) and b.dtype == np.int64 for a, b in zip(q.subsets, r.subsets))
    assert all(np.array_equal(a, b) for a, b in zip(q.centroids, r.centroids))
    assert r.spec == q.spec and r.trained_points == q.trained_points == [300] * 3 and r.bits_per_frame == 6.0


def test_rpq_subsets_are_seeded_independent_uniform_draws():
    a = subspaces("rpq", 64, 8, 0.25, seed=7)
    assert all(np.array_equal(p, q) for p, q in zip(a, subspaces("rpq", 64, 8, 0.25, seed=7)))  # the same seed: the same
    assert not any(np.array_equal(p, q) for p, q in zip(a, subspaces("rpq", 64, 8, 0.25, seed=8)))  # another: others
    assert len({tuple(s) for s in a}) == 8  # each sub-quantizer its own draw
    assert all(np.array_equal(s, np.arange(10)) for s in subspaces("rpq", 10, 4, 1.0, seed=3))  # alpha 1: every dimension
    many = subspaces("rpq", 10, 3000, 0.3, seed=0)  # every dimension drawn alike: 3000 x 3 / 10 = 900 each
    cover = np.bincount(np.concatenate(many), minlength=10)
    assert cover.min() > 800 and cover.max() < 1000
    pairs = np.array([len(np.intersect1d(p, q)) for p, q in zip(many[::2], many[1::2])])  # independent: E|S1 n S2| = d^2/D
    assert abs(pairs.mean() - 0.9) < 0.1


@pytest.mark.parametrize("dim, m, sizes", [(10, 3, [4, 3, 3]), (8, 3, [3, 3, 2]), (16, 4, [4, 4, 4, 4]), (7, 7, [1] * 7),
                                           (5, 1, [5]), (11, 4, [3, 3, 3, 2])])
def test_pq_splits_the_dimensions_into_contiguous_runs_covering_each_once(dim, m, sizes):
    pq = subspaces("pq", dim, m, 0.125, seed=3)  # alpha and seed play no part
    assert [len(s) for s in pq] == sizes and all(s.dtype == np.int64 for s in pq)
    assert np.array_equal(np.concatenate(pq), np.arange(dim))  # each dimension once, in order
    for kind in ("kmeans", "rvq"):
        assert all(np.array_equal(s, np.arange(dim)) for s in subspaces(kind, dim, m, 0.5, seed=1))
    with pytest.raises(SpeechrqError, match=rf"pq: M = {dim + 1} sub-vectors of a {dim}-dimensional feature: at most {dim}"):
        subspaces("pq", dim, dim + 1, 1.0, 0)


@pytest.mark.parametrize("kind, m", [("pq", 3), ("rpq", 3), ("rvq", 2)])
def test_codebook_i_is_k_means_seeded_with_seed_plus_i(kind, m):
    """Each sub-quantizer is one k-means with its own random initialisation (``seed + m``), as the paper's."""
    from speechrq.units.quantizers import _kmeans, _nearest

    x = clustered(n=400, d=9, centers=10, seed=4)
    spec = QuantizerSpec(kind=kind, k=6, num_subspaces=m, alpha=0.5, seed=11, niter=4)
    q = UnitQuantizer.fit(x, spec, gpu=False)
    residual = x.copy()
    for i, s in enumerate(q.subsets):
        data = residual if kind == "rvq" else x[:, s]
        c, n = _kmeans(data, 6, 11 + i, 4, spec.max_points_per_centroid, False)
        assert np.array_equal(q.centroids[i], c) and q.trained_points[i] == n == 400
        if kind == "rvq":
            residual = residual - c[_nearest(residual, c)]


def test_identical_sub_spaces_get_different_codebooks_and_another_seed_other_codebooks():
    half = clustered(n=400, d=4, centers=10, seed=5)
    x = np.concatenate([half, half], 1)  # PQ's two sub-vectors hold the same data
    fit = lambda seed: UnitQuantizer.fit(x, QuantizerSpec(kind="pq", k=6, num_subspaces=2, seed=seed, niter=4), gpu=False)
    a, b = fit(0), fit(1)
    assert not np.array_equal(a.centroids[0], a.centroids[1])  # independent initialisations
    assert np.array_equal(a.centroids[1], b.centroids[0])  # codebook 1 of seed 0 and codebook 0 of seed 1: both seed 1
    km = lambda seed: UnitQuantizer.fit(half, QuantizerSpec(kind="kmeans", k=6, seed=seed, niter=4), gpu=False).centroids[0]
    assert np.array_equal(km(3), km(3)) and not np.array_equal(km(3), km(4))


@pytest.mark.parametrize("kind, m, normalize", [("kmeans", 1, "none"), ("pq", 3, "none"), ("rpq", 4, "none"), ("rvq", 3, "none"),
                                                ("pq", 3, "standardize"), ("rpq", 4, "standardize"), ("rvq", 2, "standardize")])
def test_encode_picks_the_nearest_centroid_of_each_sub_space_and_decode_rebuilds_by_the_kinds_rule(kind, m, normalize):
    g = np.random.default_rng(2)
    x = clustered(n=500, d=9, centers=10, seed=6) * g.uniform(0.5, 4, 9).astype(np.float32) + 3
    q = UnitQuantizer.fit(x, QuantizerSpec(kind=kind, k=8, num_subspaces=m, alpha=0.2, seed=1, niter=5, normalize=normalize), gpu=False)
    mean, std = x.mean(0), (x.std(0) + 1e-5 if normalize == "standardize" else np.ones(9, np.float32))
    np.testing.assert_allclose(q.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(q.std, std, rtol=1e-5)
    test = clustered(n=60, d=9, centers=10, seed=7) * 2
    z = (test - q.mean) / q.std if normalize == "standardize" else test
    codes = q.encode(test)
    assert codes.shape == (60, m) and codes.dtype == np.uint16
    want, rebuilt = np.empty((60, m), np.int64), np.zeros((60, 9))
    residual = z.astype(np.float64)
    for i, (c, s) in enumerate(zip(q.centroids, q.subsets)):
        v = residual if kind == "rvq" else z[:, s]
        want[:, i] = ((v[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        if kind == "rvq":
            residual = residual - c[want[:, i]]
            rebuilt += c[want[:, i]]
    assert np.array_equal(codes, want)
    assert np.array_equal(q.encode_torch(torch.from_numpy(test)).numpy(), want)
    if kind != "rvq":  # each dimension: the mean of the centroids covering it, the training mean where none does
        cover = q.coverage()
        assert np.array_equal(cover, np.bincount(np.concatenate(q.subsets), minlength=9))
        for j in range(9):
            parts = [q.centroids[i][want[:, i], list(s).index(j)] for i, s in enumerate(q.subsets) if j in s]
            rebuilt[:, j] = np.mean(parts, 0) if parts else (0.0 if normalize == "standardize" else q.mean[j])
    if normalize == "standardize":
        rebuilt = rebuilt * q.std + q.mean
    np.testing.assert_allclose(q.decode(codes), rebuilt, rtol=1e-5, atol=1e-4)
    if kind == "rpq":
        assert (q.coverage() == 0).any()  # 4 subsets of 2 of 9 dimensions leave some uncovered: rebuilt as the training mean
        j = int(np.flatnonzero(q.coverage() == 0)[0])
        np.testing.assert_allclose(q.decode(codes)[:, j], q.mean[j], rtol=1e-6)
    assert q.bits_per_frame == m * 3.0 and q.num_streams == m and q.dim == 9


@pytest.mark.parametrize("kind, m", [("kmeans", 1), ("pq", 2), ("rpq", 3), ("rvq", 2)])
def test_a_constant_dimension_is_standardized_without_dividing_by_zero(kind, m):
    """A dimension that never changes in the training sample (a dead unit of the encoder) has std 0: standardised with
    std + 1e-5, so it is 0 in the codebooks' space and rebuilt as its constant, never NaN."""
    x = clustered(n=400, d=6, seed=8)
    x[:, 2] = 1.75
    q = UnitQuantizer.fit(x, QuantizerSpec(kind=kind, k=6, num_subspaces=m, alpha=1.0, seed=0, niter=4, normalize="standardize"), gpu=False)
    assert q.std[2] == np.float32(1e-5) and q.mean[2] == np.float32(1.75)
    assert all(np.isfinite(c).all() for c in q.centroids)
    codes = q.encode(x)
    assert np.array_equal(codes, q.encode_torch(torch.from_numpy(x)).numpy())
    np.testing.assert_allclose(q.decode(codes)[:, 2], 1.75, rtol=1e-6)
