"""Reuse keyed by what made the work: identities, corpus fingerprints, and the places that reuse finished work."""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pytest
import torch

from conftest import tiny_pretrain_config
from speechrq.cli import main
from speechrq.errors import SpeechrqError
from speechrq.identity import IDENTITY_FILE, claim, corpus_fingerprint, describe_difference, digest


def drop_last_cut(corpus, split="train"):
    """The same folder, another corpus: the split's manifest without its last cut."""
    path = next(corpus.glob(f"cuts_{split}.jsonl*"))
    lines = (gzip.open(path, "rt") if path.suffix == ".gz" else open(path)).read().splitlines()
    with (gzip.open(path, "wt") if path.suffix == ".gz" else open(path, "w")) as f:
        f.write("\n".join(lines[:-1]) + "\n")


@pytest.fixture
def corpus_copy(pretrain_corpus, tmp_path):
    out = tmp_path / "corpus"
    shutil.copytree(pretrain_corpus, out)
    return out


def test_claim_records_reuses_and_refuses_naming_the_setting(tmp_path):
    d = tmp_path / "work"
    assert claim(d, {"k": 50, "layer": 2}, "units") is False  # new: recorded
    assert json.loads((d / IDENTITY_FILE).read_text()) == {"k": 50, "layer": 2}
    assert claim(d, {"layer": 2, "k": 50}, "units") is True  # same identity, any key order: reuse
    with pytest.raises(SpeechrqError, match=r"holds units made with other inputs \(layer 2 -> 3\)"):
        claim(d, {"k": 50, "layer": 3}, "units")
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "units.npy").write_bytes(b"x")
    with pytest.raises(SpeechrqError, match="holds files but no identity.json"):
        claim(legacy, {"k": 50}, "units")
    assert describe_difference({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}}) == "a.c 2 -> 3"
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1}) != digest({"a": 1, "b": [2, 1]})


def test_a_corpus_is_fingerprinted_by_its_content_not_its_path_or_gzip_bytes(corpus_copy, tmp_path):
    fp = corpus_fingerprint(corpus_copy)
    moved = tmp_path / "moved"
    shutil.copytree(corpus_copy, moved)
    assert corpus_fingerprint(moved) == fp  # the same content elsewhere
    path = corpus_copy / "cuts_dev.jsonl"
    with gzip.GzipFile(corpus_copy / "cuts_dev.jsonl.gz", "wb", mtime=12345) as f:  # the same cuts, compressed: same content
        f.write(path.read_bytes())
    path.unlink()
    assert corpus_fingerprint(corpus_copy) == fp
    train_fp = corpus_fingerprint(corpus_copy, "train")
    drop_last_cut(corpus_copy, "dev")
    assert corpus_fingerprint(corpus_copy) != fp and corpus_fingerprint(corpus_copy, "train") == train_fp
    with pytest.raises(SpeechrqError, match="has no split 'nope'"):
        corpus_fingerprint(corpus_copy, "nope")


def test_feature_statistics_of_another_corpus_content_are_refused_not_reused(corpus_copy, capsys):
    from speechrq.features import corpus_stats

    (corpus_copy / "feature_stats.json").unlink()
    args = ["features", "stats", str(corpus_copy), "--max-utterances", "20", "--quiet"]
    assert main(args) == 0
    assert main(args) == 0 and "reusing it" in capsys.readouterr().out
    assert main([*args[:-1], "--seed", "1", "--quiet"]) == 2  # another sample
    assert "seed 0 -> 1" in capsys.readouterr().err
    drop_last_cut(corpus_copy)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "corpus" in err and "--force" in err and err.count("\n") == 1
    with pytest.raises(SpeechrqError, match="computed from another corpus"):
        corpus_stats(corpus_copy, "train")  # what pre-training reads
    assert main([*args, "--force"]) == 0


def test_units_encode_refuses_a_folder_holding_units_of_another_quantizer(corpus_copy, tmp_path, capsys):
    from speechrq.pretrain.config import PretrainConfig
    from speechrq.pretrain.model import build_model
    from speechrq.checkpoint import save_checkpoint, step_dir
    from speechrq.config import config_from_dict, config_to_dict
    from speechrq.features import FeatureStats

    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(corpus_copy, tmp_path / "run"))
    torch.manual_seed(0)
    model = build_model(cfg, FeatureStats.load(corpus_copy / "feature_stats.json"))
    ckpt = save_checkpoint(step_dir(tmp_path / "run", 0), model.state_dict(), {}, {"config": config_to_dict(cfg), "step": 0})
    fit = ["units", "fit", "--encoder", str(ckpt), "--layer", "1", "--corpus", str(corpus_copy), "--frames", "2000", "--k", "16", "--quiet"]
    assert main([*fit, "--kind", "pq", "--M", "2", "--out", str(tmp_path / "pq")]) == 0
    assert main([*fit, "--kind", "rpq", "--M", "2", "--alpha", "0.5", "--out", str(tmp_path / "rpq")]) == 0
    enc = ["units", "encode", "--corpus", str(corpus_copy), "--splits", "dev", "--out", str(tmp_path / "units"), "--quiet"]
    assert main([enc[0], enc[1], str(tmp_path / "pq"), *enc[2:]]) == 0
    arrays = {p.name: p.read_bytes() for p in (tmp_path / "units" / "arrays").iterdir()}
    capsys.readouterr()
    assert main([enc[0], enc[1], str(tmp_path / "rpq"), *enc[2:]]) == 2  # RPQ over PQ units: refused, nothing rewritten
    err = capsys.readouterr().err
    assert "holds units made with other inputs" in err and "quantizer" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in (tmp_path / "units" / "arrays").iterdir()} == arrays
    summary = json.loads((tmp_path / "units" / "encode.json").read_text())
    assert summary["quantizer"] == str(tmp_path / "pq")
    assert main([enc[0], enc[1], str(tmp_path / "pq"), *enc[2:]]) == 0  # the same quantizer: reused
    # the quantizer refuses the same folder once its corpus changed (the sample and fit are keyed by its content)
    drop_last_cut(corpus_copy)
    assert main([*fit, "--kind", "pq", "--M", "2", "--out", str(tmp_path / "pq")]) == 2
    assert "corpus_fingerprint" in capsys.readouterr().err


def test_pretraining_refuses_to_resume_on_another_corpus_content(corpus_copy, tmp_path):
    from speechrq.config import config_from_dict
    from speechrq.pretrain.config import PretrainConfig
    from speechrq.pretrain.trainer import train

    cfg = config_from_dict(PretrainConfig, tiny_pretrain_config(corpus_copy, tmp_path / "run", optim={"max_steps": 4}))
    train(cfg, progress=False)
    meta = json.loads(next((tmp_path / "run" / "checkpoints").glob("step_*/meta.json")).read_text())
    assert set(meta["inputs"]) == {"corpus", "feature_stats"}
    longer = config_from_dict(PretrainConfig, tiny_pretrain_config(corpus_copy, tmp_path / "run", optim={"max_steps": 5}))
    drop_last_cut(corpus_copy)
    with pytest.raises(SpeechrqError, match=r"trained on other inputs \(corpus "):
        train(longer, resume=True, progress=False)


def test_evaluation_keys_hidden_states_and_probes_by_the_corpus_content(corpus_copy, tmp_path):
    from speechrq.encoders import FilterbankEncoder
    from speechrq.evaluate.run import evaluate
    from speechrq.features import FeatureNormalizer, FeatureStats

    enc = {"fbank": FilterbankEncoder(FeatureNormalizer.from_stats(FeatureStats.load(corpus_copy / "feature_stats.json")))}
    kw = dict(tasks=["sid"], out=tmp_path / "eval", lrs=[1e-2], epochs=2, progress=False, target_analysis=False)
    evaluate(enc, corpus_copy, **kw)
    states = sorted((tmp_path / "eval" / "hidden_states").iterdir())
    probes = sorted((tmp_path / "eval" / "probes").rglob("*.json"))
    assert len(states) == 1 and len(probes) == 1
    evaluate(enc, corpus_copy, **kw)  # the same corpus: reused, nothing new
    assert sorted((tmp_path / "eval" / "probes").rglob("*.json")) == probes
    drop_last_cut(corpus_copy)  # the same folder, another corpus: fresh states and probes beside the old ones
    res = evaluate(enc, corpus_copy, **kw)
    assert len(sorted((tmp_path / "eval" / "hidden_states").iterdir())) == 2
    assert len(sorted((tmp_path / "eval" / "probes").rglob("*.json"))) == 2
    assert res["models"]["fbank"]["utterances_encoded"] > 0
    assert np.isfinite(res["models"]["fbank"]["tasks"]["sid"]["test"])


def test_a_re_import_of_changed_audio_changes_the_corpus_fingerprint(tmp_path):
    """The audio's content is in the manifest: statistics, units, probes computed from the old audio are not reused."""
    import soundfile as sf

    from speechrq.data.recipes import import_corpus

    g = np.random.default_rng(0)
    (tmp_path / "src").mkdir()
    for name in ("a", "b"):
        sf.write(tmp_path / "src" / f"{name}.wav", 0.1 * g.standard_normal(8000), 16000)
    import_corpus("folder", tmp_path / "src", tmp_path / "corpus", workers=1, progress=False)
    fp = corpus_fingerprint(tmp_path / "corpus")
    import_corpus("folder", tmp_path / "src", tmp_path / "corpus", workers=1, progress=False)
    assert corpus_fingerprint(tmp_path / "corpus") == fp  # the same files again: the same corpus
    sf.write(tmp_path / "src" / "a.wav", 0.1 * g.standard_normal(8000), 16000)  # other samples, same length and name
    import_corpus("folder", tmp_path / "src", tmp_path / "corpus", workers=1, progress=False)
    assert corpus_fingerprint(tmp_path / "corpus") != fp
