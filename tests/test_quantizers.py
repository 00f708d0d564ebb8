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
