"""Discrete units: quantizers on faiss, seeded samples in bounded memory, corpus encoding to lhotse manifests, BPE, the report."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import tiny_pretrain_config
from speechrq.checkpoint import save_checkpoint, step_dir
from speechrq.config import config_from_dict, config_to_dict
from speechrq.data.corpus import load_cuts
from speechrq.errors import SpeechrqError
from speechrq.features import FeatureStats
from speechrq.units import QuantizerSpec, UnitQuantizer
from speechrq.units.bpe import deduplicate, units_to_text
from speechrq.units.quantizers import subspaces
from speechrq.units.report import fit_and_measure, jaccard_rho, theory_ratio


def clustered(n=3000, d=16, centers=12, seed=0):
    """Points around seeded centres: data k-means can actually fit."""
    g = np.random.default_rng(seed)
    c = g.normal(size=(centers, d)) * 3
    return (c[g.integers(0, centers, n)] + g.normal(size=(n, d))).astype(np.float32)


@pytest.fixture(scope="module")
def checkpoint(pretrain_corpus, tmp_path_factory):
    """An untrained tiny checkpoint (units need an encoder, not a good one)."""
    from speechrq.pretrain.config import PretrainConfig
    from speechrq.pretrain.model import build_model

    root = tmp_path_factory.mktemp("units_ckpt")
    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(pretrain_corpus, root))
    torch.manual_seed(0)
    model = build_model(cfg, FeatureStats.load(pretrain_corpus / "feature_stats.json"))
    return save_checkpoint(step_dir(root, 0), model.state_dict(), {}, {"config": config_to_dict(cfg), "step": 0})


# ---------------------------------------------------------------- quantizers


@pytest.mark.parametrize("kind,m", [("kmeans", 1), ("rvq", 3), ("pq", 4), ("rpq", 6)])
def test_the_same_seed_gives_the_same_centroids_and_units_another_seed_others(kind, m):
    x = clustered()
    fit = lambda seed: UnitQuantizer.fit(x, QuantizerSpec(kind=kind, k=16, num_subspaces=m, alpha=0.5, seed=seed, niter=10))
    a, b, c = fit(0), fit(0), fit(1)
    assert all(np.array_equal(p, q) for p, q in zip(a.centroids, b.centroids))
    assert np.array_equal(a.encode(x), b.encode(x))
    assert not all(np.array_equal(p, q) for p, q in zip(a.centroids, c.centroids))
    codes = a.encode(x)
    assert codes.shape == (len(x), m) and codes.dtype == np.uint16 and int(codes.max()) < 16


def test_subspaces_pq_splits_contiguously_rpq_draws_overlapping_random_subsets():
    pq = subspaces("pq", 10, 3, 1.0, 0)
    assert [s.tolist() for s in pq] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    rpq = subspaces("rpq", 64, 8, 0.25, seed=5)
    assert all(len(s) == 16 and len(set(s.tolist())) == 16 for s in rpq)
    assert len({tuple(s) for s in rpq}) == 8  # independent draws differ
    assert [s.tolist() for s in subspaces("rpq", 64, 8, 0.25, seed=5)] == [s.tolist() for s in rpq]
    with pytest.raises(SpeechrqError, match="at most 10"):
        subspaces("pq", 10, 11, 1.0, 0)


def test_decoding_rebuilds_frames_and_more_streams_rebuild_them_better():
    x = clustered(d=32)
    err = {}
    for kind, m in [("kmeans", 1), ("pq", 8), ("rvq", 4), ("rpq", 16)]:
        q = UnitQuantizer.fit(x, QuantizerSpec(kind=kind, k=8, num_subspaces=m, alpha=0.25, seed=0, niter=15))
        x_hat = q.decode(q.encode(x))
        assert x_hat.shape == x.shape
        err[kind] = float(((x - x_hat) ** 2).mean())
    # k = 8 < 12 centres: one codebook cannot fit the data; several streams (PQ/RVQ/RPQ) do better
    assert err["pq"] < err["kmeans"] and err["rvq"] < err["kmeans"] and err["rpq"] < err["kmeans"]


def test_rpq_rebuilds_each_dimension_as_the_mean_of_the_subspaces_covering_it():
    x = clustered(d=8)
    q = UnitQuantizer.fit(x, QuantizerSpec(kind="rpq", k=4, num_subspaces=3, alpha=0.5, seed=2, niter=5))
    codes = q.encode(x[:5])
    x_hat = q.decode(codes)
    for j in range(8):
        parts = [q.centroids[i][codes[:, i]][:, list(s).index(j)] for i, s in enumerate(q.subsets) if j in s]
        want = np.mean(parts, 0) if parts else np.full(5, q.mean[j])
        np.testing.assert_allclose(x_hat[:, j], want, rtol=1e-6)


def test_a_saved_quantizer_loads_without_unpickling_and_encodes_the_same(tmp_path):
    x = clustered()
    q = UnitQuantizer.fit(x, QuantizerSpec(kind="rpq", k=16, num_subspaces=4, alpha=0.5, normalize="standardize"), {"layer": 2})
    q.save(tmp_path / "q")
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["units.json", "units.safetensors"]
    r = UnitQuantizer.load(tmp_path / "q")
    assert np.array_equal(q.encode(x), r.encode(x)) and r.source == {"layer": 2} and r.spec == q.spec
    with pytest.raises(SpeechrqError, match="not a fitted unit quantizer"):
        UnitQuantizer.load(tmp_path)


def test_faiss_subsampling_is_recorded_not_silent(caplog):
    x = clustered(n=3000)
    with caplog.at_level("WARNING", logger="speechrq.units.quantizers"):
        q = UnitQuantizer.fit(x, QuantizerSpec(k=10, max_points_per_centroid=39, niter=3))
    assert q.trained_points == [390]
    assert "faiss trains each codebook on 390 of the 3000 sample frames" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="speechrq.units.quantizers"):
        UnitQuantizer.fit(x[:200], QuantizerSpec(k=10, niter=3))  # 20 per centroid
    assert "fewer than the 39 per centroid" in caplog.text
    with pytest.raises(SpeechrqError, match="5 training points for k = 10"):
        UnitQuantizer.fit(x[:5], QuantizerSpec(k=10))


def test_theory_of_eqs_13_and_17():
    assert theory_ratio(1, 0.3) == 1.0 and theory_ratio(4, 0.0) == 0.25
    assert jaccard_rho(1.0) == 1.0 and jaccard_rho(0.5) == pytest.approx(1 / 3)
    row = fit_and_measure(clustered(d=32), clustered(n=500, d=32, seed=1), None, 8, ("rpq", 8, 0.25), niter=5)
    # measured against the paper's idealisation and against the same formula with what was measured
    assert 0 < row["ratio_measured"] < 1 and row["coverage_mean"] == pytest.approx(2.0, abs=1.0)
    assert abs(row["ratio_theory_coverage"] - row["ratio_measured"]) < abs(row["ratio_theory"] - row["ratio_measured"])


def test_deduplication_and_unit_characters():
    assert deduplicate(np.array([5, 5, 7, 7, 7, 5])).tolist() == [5, 7, 5]
    assert deduplicate(np.array([[1, 2], [1, 2], [1, 3]])).tolist() == [[1, 2], [1, 3]]
    text = units_to_text(np.array([0, 1999]))
    assert len(text) == 2 and ord(text[0]) == 0xF0000


# ---------------------------------------------------------------- from audio


def test_the_sample_does_not_depend_on_batching_and_resumes_after_its_last_shard(checkpoint, pretrain_corpus, tmp_path):
    from speechrq.encoders import EncoderLayer
    from speechrq.units.sample import load_sample, sample_features

    cuts = load_cuts(pretrain_corpus, "train").subset(first=40)
    layer = EncoderLayer(checkpoint, 1)
    a = sample_features(layer, cuts, tmp_path / "a", seed=3, fraction=0.3, max_duration=20, shard_frames=100, progress=False)
    b = sample_features(layer, cuts, tmp_path / "b", seed=3, fraction=0.3, max_duration=60, shard_frames=10**9, progress=False)
    xa, xb = load_sample(tmp_path / "a"), load_sample(tmp_path / "b")
    assert len(a["shards"]) > 2 and len(b["shards"]) == 1 and a["frames"] == b["frames"] == len(xa)
    assert 0.2 < len(xa) / a["corpus_frames"] < 0.4 and xa.shape[1] == 96
    # the same frames whatever the batches (values agree to float16 rounding: padding changes the kernels' sums)
    same = lambda x, y: np.testing.assert_allclose(np.sort(x, axis=0), np.sort(y, axis=0), atol=2e-3)
    same(xa, xb)
    # an interrupted pass: drop the last shards from the record, run again, get the same sample
    state = json.loads((tmp_path / "a" / "sample.json").read_text())
    state["shards"], state["done"] = state["shards"][:1], False
    (tmp_path / "a" / "sample.json").write_text(json.dumps(state))
    calls = layer.forward_calls
    sample_features(layer, cuts, tmp_path / "a", seed=3, fraction=0.3, max_duration=20, shard_frames=100, progress=False)
    assert layer.forward_calls > calls
    same(load_sample(tmp_path / "a"), xa)
    with pytest.raises(SpeechrqError, match="other settings"):
        sample_features(layer, cuts, tmp_path / "a", seed=4, fraction=0.3, progress=False)


def test_units_fit_and_encode_from_a_checkpoint_to_lhotse_manifests_kaldi_text_and_bpe(checkpoint, pretrain_corpus, tmp_path):
    from speechrq.cli import main
    from speechrq.units.encode import load_units

    q_dir, out = tmp_path / "km", tmp_path / "enc"
    assert main(["units", "fit", "--encoder", str(checkpoint), "--layer", "2", "--corpus", str(pretrain_corpus), "--frames", "3000",
                 "--k", "20", "--out", str(q_dir), "--quiet"]) == 0
    assert main(["units", "encode", str(q_dir), "--corpus", str(pretrain_corpus), "--splits", "train,dev", "--out", str(out),
                 "--bpe", "40", "--quiet"]) == 0
    dev = load_units(out / "cuts_dev.jsonl.gz")
    cuts = {c.id: c for c in load_cuts(pretrain_corpus, "dev")}
    assert len(dev) == len(cuts)
    for c in dev:
        u = c.load_custom("units")
        assert u.dtype == np.uint16 and u.shape[1] == 1 and abs(u.shape[0] - c.duration / 0.04) <= 1
        assert c.supervisions[0].text == cuts[c.id].supervisions[0].text  # the corpus's cut, units attached
    lines = (out / "units_dev.txt").read_text().splitlines()
    first = next(iter(dev))
    assert lines[0].split()[0] == first.id and list(map(int, lines[0].split()[1:])) == first.load_custom("units")[:, 0].tolist()
    summary = json.loads((out / "encode.json").read_text())
    red = summary["bpe"]["splits"]["dev"]
    assert red["bpe"] < red["deduplicated"] < red["frames"] and (out / "bpe.model").exists()
    assert summary["bpe"]["vocab_size"] == summary["bpe"]["requested_vocab_size"] == 40
    # a vocabulary the units cannot fill: sentencepiece makes fewer pieces; the smaller size is what is recorded and printed
    assert main(["units", "encode", str(q_dir), "--corpus", str(pretrain_corpus), "--splits", "dev", "--out", str(tmp_path / "big"),
                 "--bpe", "5000", "--quiet"]) == 0
    big = json.loads((tmp_path / "big" / "encode.json").read_text())["bpe"]
    assert big["requested_vocab_size"] == 5000 and big["vocab_size"] < 5000
    from speechrq.units.bpe import load_bpe
    assert load_bpe(tmp_path / "big" / "bpe.model").get_piece_size() == big["vocab_size"]
    # resumable: a rerun encodes nothing and writes the same manifest
    before = (out / "arrays" / f"{first.id}.npy").stat().st_mtime_ns
    main(["units", "encode", str(q_dir), "--corpus", str(pretrain_corpus), "--splits", "dev", "--out", str(out), "--quiet"])
    assert (out / "arrays" / f"{first.id}.npy").stat().st_mtime_ns == before
    # the same command again reuses the quantizer; other settings in the same directory are refused
    assert main(["units", "fit", "--encoder", str(checkpoint), "--layer", "2", "--corpus", str(pretrain_corpus), "--frames", "3000",
                 "--k", "20", "--out", str(q_dir), "--quiet"]) == 0
    assert main(["units", "fit", "--encoder", str(checkpoint), "--layer", "2", "--corpus", str(pretrain_corpus), "--frames", "3000",
                 "--k", "21", "--out", str(q_dir), "--quiet"]) == 2


def test_units_from_a_hugging_face_wavlm_folder(pretrain_corpus, tmp_path):
    from transformers import WavLMConfig, WavLMModel

    from speechrq.units.run import encode_units, fit_units

    torch.manual_seed(0)
    WavLMModel(WavLMConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7,
                           num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)).save_pretrained(tmp_path / "wavlm")
    spec = QuantizerSpec(kind="pq", k=16, num_subspaces=4, seed=0, niter=5)
    q = fit_units(tmp_path / "wavlm", 1, pretrain_corpus, tmp_path / "pq", spec, frames=2000, progress=False)
    assert q.dim == 32 and q.num_streams == 4 and q.source["fingerprint"].startswith("hf-")
    s = encode_units(tmp_path / "pq", pretrain_corpus, ["dev"], tmp_path / "enc", progress=False)
    assert s["splits"]["dev"]["utterances"] > 0 and not (tmp_path / "enc" / "units_dev.txt").exists()  # multi-stream: no Kaldi text
    with pytest.raises(SpeechrqError, match="layer 3 does not exist"):
        fit_units(tmp_path / "wavlm", 3, pretrain_corpus, tmp_path / "x", spec, frames=100, progress=False)


def test_units_report_on_a_grid_with_phones_and_theory(checkpoint, pretrain_corpus, tmp_path):
    from speechrq.cli import main

    out = tmp_path / "rep"
    assert main(["units", "report", "--encoder", str(checkpoint), "--layer", "1", "--corpus", str(pretrain_corpus), "--frames", "2000",
                 "--k", "16", "--kinds", "kmeans,pq,rpq", "--M", "2,4", "--alphas", "0.25,1", "--eval-frames", "1500", "--niter", "5",
                 "--out", str(out), "--quiet"]) == 0
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert [(r["kind"], r["M"], r["alpha"]) for r in rows] == [("kmeans", 1, None), ("pq", 2, None), ("pq", 4, None),
                                                              ("rpq", 2, 0.25), ("rpq", 2, 1.0), ("rpq", 4, 0.25), ("rpq", 4, 1.0)]
    assert all(0 < r["pnmi"] < 1 and 0 < r["phone_purity"] <= 1 for r in rows)  # the corpus has phone alignments
    assert rows[0]["bits_per_second"] == pytest.approx(25 * 4) and rows[2]["compression"] == pytest.approx(96 * 32 / 16)
    assert (out / "report.png").stat().st_size > 0 and "eqs. 13 and 17" in (out / "report.md").read_text()


@pytest.mark.parametrize("argv,message", [
    (["--frames", "10", "--fraction", "0.1"], "give exactly one"),
    (["--frames", "10", "--kind", "pq", "--M", "200"], "at most 96"),
    (["--frames", "10", "--k", "70000"], "between 2 and 65535"),
    (["--frames", "10", "--layer", "9"], "layer 9 does not exist"),
])
def test_units_fit_user_mistakes_are_one_line_errors(argv, message, checkpoint, pretrain_corpus, tmp_path):
    args = ["--encoder", str(checkpoint), "--layer", "1", "--corpus", str(pretrain_corpus), "--out", str(tmp_path / "q")]
    if "--layer" in argv:
        args = args[:2] + args[4:]
    r = subprocess.run([sys.executable, "-m", "speechrq", "units", "fit", *args, *argv], capture_output=True, text=True)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("kind,m,norm", [("kmeans", 1, "none"), ("rvq", 3, "none"), ("rpq", 5, "standardize")])
def test_the_torch_encoder_used_on_gpus_gives_faiss_units(kind, m, norm):
    x = clustered(d=24)
    q = UnitQuantizer.fit(x, QuantizerSpec(kind=kind, k=16, num_subspaces=m, alpha=0.5, niter=8, normalize=norm))
    a = q.encode(x).astype(np.int64)
    b = q.encode_torch(torch.from_numpy(x), chunk=700).numpy()
    assert (a == b).mean() > 0.999  # float ties aside


def test_units_folders_are_read_from_any_directory_and_after_a_move(checkpoint, pretrain_corpus, tmp_path, monkeypatch):
    """Paths given relative to the working directory are stored so that they resolve from anywhere (issue 21, point 4)."""
    import shutil

    from speechrq.asr.data import UnitSource
    from speechrq.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["units", "fit", "--encoder", str(checkpoint), "--layer", "1", "--corpus", str(pretrain_corpus), "--frames", "2000",
                 "--k", "16", "--out", "km", "--quiet"]) == 0
    assert main(["units", "encode", "km", "--corpus", str(pretrain_corpus), "--splits", "dev", "--out", "enc", "--quiet"]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    first = next(iter(UnitSource(tmp_path / "enc").cuts("dev")))
    units = first.load_custom("units")
    shutil.move(tmp_path / "enc", tmp_path / "moved units")
    moved = UnitSource(tmp_path / "moved units")
    assert moved.quantizer.spec.k == 16 and moved.encoder == (str(checkpoint.resolve()), 1, 40)
    again = next(c for c in moved.cuts("dev") if c.id == first.id)
    assert np.array_equal(again.load_custom("units"), units)


def test_settings_the_data_cannot_honour_are_refused_or_warned_and_recorded(checkpoint, pretrain_corpus, tmp_path, caplog, capsys):
    """k-means with --M, an RPQ alpha that is not a whole number of dimensions, a unit BPE asked again (issue 21, point 5)."""
    from speechrq.cli import main

    fit = ["units", "fit", "--encoder", str(checkpoint), "--layer", "1", "--corpus", str(pretrain_corpus), "--frames", "2000",
           "--k", "16", "--quiet"]
    assert main([*fit, "--kind", "kmeans", "--M", "4", "--out", str(tmp_path / "x")]) == 2
    assert "k-means has one stream" in capsys.readouterr().err
    with caplog.at_level("WARNING", logger="speechrq.units.quantizers"):
        assert main([*fit, "--kind", "rpq", "--M", "2", "--alpha", "0.001", "--out", str(tmp_path / "rpq")]) == 0
    assert "each sub-space takes 1 dimensions" in caplog.text
    q = UnitQuantizer.load(tmp_path / "rpq")
    assert all(len(s) == 1 for s in q.subsets)  # what was used is what is saved
    # a second --bpe over a folder: every split gets the new model, none keeps texts of the old one
    assert main(["units", "fit", *fit[2:], "--out", str(tmp_path / "km")]) == 0
    enc = ["units", "encode", str(tmp_path / "km"), "--corpus", str(pretrain_corpus), "--out", str(tmp_path / "enc"), "--quiet"]
    assert main([*enc, "--splits", "train,dev", "--bpe", "40"]) == 0
    assert main([*enc, "--splits", "test", "--bpe", "30"]) == 0
    summary = json.loads((tmp_path / "enc" / "encode.json").read_text())
    assert set(summary["splits"]) == set(summary["bpe"]["splits"]) == {"train", "dev", "test"}
    assert summary["bpe"]["requested_vocab_size"] == 30 and summary["bpe"]["trained_on"] == "train"
    from speechrq.units.bpe import encode_bpe, load_bpe
    from speechrq.units.encode import load_units

    sp = load_bpe(tmp_path / "enc" / "bpe.model")
    first = next(iter(load_units(tmp_path / "enc" / "cuts_dev.jsonl.gz")))
    line = (tmp_path / "enc" / "units_dev.bpe.txt").read_text().splitlines()[0].split()
    assert line[0] == first.id and list(map(int, line[1:])) == encode_bpe(sp, deduplicate(first.load_custom("units")[:, 0]))


def test_the_same_inputs_named_from_another_directory_are_reused_not_refused(checkpoint, pretrain_corpus, tmp_path, monkeypatch):
    from speechrq.cli import main

    corpus = tmp_path / "corpus"
    import shutil

    shutil.copytree(pretrain_corpus, corpus)
    monkeypatch.chdir(tmp_path)
    fit = ["units", "fit", "--encoder", str(checkpoint), "--layer", "1", "--frames", "2000", "--k", "16", "--quiet"]
    assert main([*fit, "--corpus", "corpus", "--out", "km"]) == 0
    before = (tmp_path / "km" / "units.safetensors").stat().st_mtime_ns
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert main([*fit, "--corpus", "../corpus", "--out", "../km"]) == 0  # the same corpus and quantizer folder: reused
    assert (tmp_path / "km" / "units.safetensors").stat().st_mtime_ns == before


def test_checkpoints_quantizers_and_exports_open_with_safetensors_torch_and_json_alone_from_anywhere_and_moved(
        checkpoint, pretrain_corpus, tmp_path, monkeypatch):
    """Issue 34.9: what speechrq writes for others opens with the standard tools, from any directory and after its folder
    moved: a checkpoint (safetensors, torch with weights_only, JSON), an exported encoder and a fitted quantizer (safetensors,
    JSON); speechrq reads the moved ones too, and their recorded paths say the same from anywhere (absolute)."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import load_file

    from speechrq.cli import main

    run = tmp_path / "run"
    shutil.copytree(checkpoint, run / "step")
    monkeypatch.chdir(tmp_path)
    assert main(["export", "run/step", "run/export"]) in (0, None)
    import os

    assert main(["units", "fit", "--encoder", "run/step", "--layer", "1", "--corpus", os.path.relpath(pretrain_corpus, tmp_path),
                 "--frames", "1000", "--k", "8", "--out", "run/km", "--quiet"]) == 0
    files = {"step": "model.safetensors", "export": "model.safetensors", "km": "units.safetensors"}
    before = {name: load_file(run / name / f) for name, f in files.items()}
    assert before["export"] and set(before["export"]) < set(before["step"])  # the heads dropped
    moved = tmp_path / "moved run"
    shutil.move(run, moved)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    for name, f in files.items():
        got = load_file(moved / name / f)
        assert set(got) == set(before[name]) and all(torch.equal(got[k], before[name][k]) for k in got)
        with safe_open(str(moved / name / f), framework="numpy") as st:  # without torch too
            assert set(st.keys()) == set(got)
    meta = json.loads((moved / "step" / "meta.json").read_text())
    assert meta["step"] == 0 and "config" in meta
    assert isinstance(torch.load(moved / "step" / "trainer.pt", weights_only=True), dict)
    exported = json.loads((moved / "export" / "meta.json").read_text())
    assert not (moved / "export" / "trainer.pt").exists() and exported["exported_from"] == str((run / "step").resolve())
    units = json.loads((moved / "km" / "units.json").read_text())
    assert units["source"]["corpus"] == str(pretrain_corpus.resolve()) and units["source"]["encoder"] == str((run / "step").resolve())
    # speechrq reads the moved encoder and quantizer
    from speechrq.encoders import EncoderLayer

    q = UnitQuantizer.load(moved / "km")
    audio, lens = torch.randn(1, 16000), torch.tensor([16000])
    with torch.no_grad():
        a, b = EncoderLayer(moved / "export", 1)(audio, lens)[0], EncoderLayer(moved / "step", 1)(audio, lens)[0]
    assert q.spec.k == 8 and torch.equal(a, b) and q.encode(a[0].numpy()).shape == (a.shape[1], 1)
