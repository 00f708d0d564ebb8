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
    (tmp_path / "afile").write_text("x")  # an output folder that is a file: one line, nothing written
    with pytest.raises(SpeechrqError, match="afile: a file, not a folder"):
        claim(tmp_path / "afile", {"k": 50}, "units")
    assert (tmp_path / "afile").read_text() == "x"
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
    # the statistics made from the old content are refused first, naming the corpus change
    with pytest.raises(SpeechrqError, match=r"feature_stats.json: computed from another corpus or split \(corpus "):
        train(longer, resume=True, progress=False)
    from speechrq.features import corpus_stats

    (corpus_copy / "feature_stats.json").unlink()
    corpus_stats(corpus_copy, "train", max_utterances=200, progress=False)  # recomputed: now the run itself refuses
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


# ---------------------------------------------------------------- the exact rules (issue 34, point 10)
# Which recorded value wins over a default, what a digest is, when a manifest is read again, which key a refusal names:
# deliberate one-line bugs in each passed the tests above.


def test_a_recorded_value_wins_over_the_default_of_a_key_added_since(tmp_path):
    """``defaults`` fill keys an older identity lacks; a value the directory recorded is never replaced by the default."""
    d = tmp_path / "units"
    assert claim(d, {"k": 50, "frame_ms": 20}, "units") is False  # recorded with a non-default value
    with pytest.raises(SpeechrqError, match=r"holds units made with other inputs \(frame_ms 20 -> 40\)"):
        claim(d, {"k": 50, "frame_ms": 40}, "units", defaults={"frame_ms": 40})
    assert claim(d, {"k": 50, "frame_ms": 20}, "units", defaults={"frame_ms": 40}) is True  # what it holds: reused
    assert json.loads((d / IDENTITY_FILE).read_text()) == {"k": 50, "frame_ms": 20}  # never rewritten

    old = tmp_path / "older"  # recorded before frame_ms existed: it held the default
    assert claim(old, {"k": 50}, "units") is False
    assert claim(old, {"k": 50, "frame_ms": 40}, "units", defaults={"frame_ms": 40}) is True
    with pytest.raises(SpeechrqError, match=r"\(frame_ms 40 -> 20\)"):
        claim(old, {"k": 50, "frame_ms": 20}, "units", defaults={"frame_ms": 40})
    with pytest.raises(SpeechrqError, match=r"\(frame_ms None -> 40\)"):  # without defaults the key is simply new
        claim(old, {"k": 50, "frame_ms": 40}, "units")
    assert json.loads((old / IDENTITY_FILE).read_text()) == {"k": 50}

    paths = tmp_path / "paths"  # defaults are compared as JSON, like identities
    assert claim(paths, {"k": 50}, "units") is False
    assert claim(paths, {"k": 50, "model": tmp_path / "m", "dims": (1, 2)}, "units",
                 defaults={"model": tmp_path / "m", "dims": (1, 2)}) is True
    with pytest.raises(SpeechrqError, match=r"\(k 50 -> 51\)"):  # a default never hides a recorded key that differs
        claim(paths, {"k": 51}, "units", defaults={"k": 51})


def test_claim_compares_identities_as_json_and_says_what_and_the_hint(tmp_path):
    d = tmp_path / "work"
    assert claim(d, {"corpus": tmp_path / "c", "splits": ("train", "dev"), "nested": {"b": 1, "a": [1.5, None]}}, "statistics") is False
    assert json.loads((d / IDENTITY_FILE).read_text()) == {"corpus": str(tmp_path / "c"), "splits": ["train", "dev"],
                                                           "nested": {"a": [1.5, None], "b": 1}}
    assert claim(d, {"nested": {"a": [1.5, None], "b": 1}, "splits": ["train", "dev"], "corpus": str(tmp_path / "c")}, "statistics")
    with pytest.raises(SpeechrqError) as e:
        claim(d, {"corpus": tmp_path / "c", "splits": ("train",), "nested": {"b": 1, "a": [1.5, None]}}, "statistics",
              hint="pass --force")
    assert str(e.value) == f"{d}: holds statistics made with other inputs (splits ['train', 'dev'] -> ['train']); pass --force"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert claim(empty, {"k": 1}, "units") is False  # an empty folder (made by the user beforehand) is new
    assert claim(empty, {"k": 1}, "units") is True
    legacy = tmp_path / "legacy"
    (legacy / "sub").mkdir(parents=True)
    with pytest.raises(SpeechrqError) as e:
        claim(legacy, {"k": 1}, "units", hint="use another --out")
    assert str(e.value) == (f"{legacy}: holds files but no identity.json (made by an older speechrq, or not by speechrq): "
                            "cannot tell what made them; use another --out")
    assert not (legacy / IDENTITY_FILE).exists()
    from speechrq.identity import recorded

    assert recorded(legacy) is None and recorded(d)["splits"] == ["train", "dev"]


def test_describe_difference_names_the_first_differing_key_its_two_values_and_the_others():
    old = {"a": 1, "b": {"c": 2, "d": 3}, "e": "x", "f": [1], "g": 0, "h": 0}
    assert describe_difference(old, dict(old)) == ""
    assert describe_difference(old, old | {"e": "y"}) == "e 'x' -> 'y'"
    assert describe_difference(old, old | {"b": {"c": 2, "d": 4}, "e": "y"}) == "b.d 3 -> 4 (and 1 more: e)"
    assert describe_difference(old, old | {"a": 2, "b": {"c": 5, "d": 3}, "f": [2]}) == "a 1 -> 2 (and 2 more: b.c, f)"
    many = {k: 9 for k in "abcdefgh"}
    assert describe_difference(old, many) == "a 1 -> 9 (and 7 more: b, c, d, ...)"  # 8 keys differ
    assert describe_difference(old, old | {"g": 1, "h": 1}) == "g 0 -> 1 (and 1 more: h)"
    assert describe_difference(old, old | {"b": 7}) == "b {'c': 2, 'd': 3} -> 7"  # a section against a value: named whole
    assert describe_difference(old, old | {"a": 2, "e": 2, "f": 2, "g": 2, "h": 2}) == "a 1 -> 2 (and 4 more: e, f, g, ...)"
    assert describe_difference(old, old | {"a": 2, "e": 2, "f": 2, "g": 2}) == "a 1 -> 2 (and 3 more: e, f, g)"
    assert describe_difference({"a": 1}, {"a": 1, "new": True}) == "new None -> True"
    assert describe_difference({"a": 1, "gone": 2}, {"a": 1}) == "gone 2 -> None"


def test_a_digest_is_16_hex_digits_of_sha256_over_sorted_json():
    from pathlib import Path

    # fixed values: every cache and reused folder is keyed by these; another encoding would silently orphan them all
    assert digest({"a": 1}) == "f9d86028c6e0d64e"
    assert digest({"k": 50, "layer": 2}) == digest({"layer": 2, "k": 50}) == "fdefd2fe3341e385"
    assert digest({"p": Path("/x/y"), "t": (1, 2)}) == digest({"t": [1, 2], "p": "/x/y"}) == "bbc85db5cc6be292"  # as JSON, paths as text
    assert digest({"x": {"b": 1, "a": 2}}) == digest({"x": {"a": 2, "b": 1}}) == "0de6a393dfe98cb1"  # nested keys sorted too
    assert digest([]) == "4f53cda18c2baa0c"
    assert digest({"a": 1}) != digest({"a": 1.5}) != digest({"a": "1"})


def test_a_manifest_is_read_again_when_it_changes_even_at_the_same_size(tmp_path):
    import hashlib
    import os

    from speechrq.identity import manifest_fingerprint

    plain = tmp_path / "cuts_train.jsonl"
    plain.write_bytes(b'{"id": "a"}\n')
    assert manifest_fingerprint(plain) == hashlib.sha256(b'{"id": "a"}\n').hexdigest()[:16]
    st = plain.stat()
    plain.write_bytes(b'{"id": "b"}\n')  # the same size; another time of writing
    os.utime(plain, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert manifest_fingerprint(plain) == hashlib.sha256(b'{"id": "b"}\n').hexdigest()[:16]
    st = plain.stat()
    plain.write_bytes(b'{"id": "bb"}\n')  # another size at the same time of writing
    os.utime(plain, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert manifest_fingerprint(plain) == hashlib.sha256(b'{"id": "bb"}\n').hexdigest()[:16]
    other = tmp_path / "other" / "cuts_train.jsonl"  # another file with the other content, the same size and time
    other.parent.mkdir()
    other.write_bytes(b'{"id": "cc"}\n')
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert manifest_fingerprint(other) == hashlib.sha256(b'{"id": "cc"}\n').hexdigest()[:16]
    big = tmp_path / "cuts_big.jsonl.gz"  # more than one read block, compressed: the decompressed bytes
    content = b"".join(b'{"id": "%d"}\n' % i for i in range(500_000))
    with gzip.GzipFile(big, "wb", mtime=0) as f:
        f.write(content)
    assert len(content) > 1 << 22 and manifest_fingerprint(big) == hashlib.sha256(content).hexdigest()[:16]


def test_a_corpus_fingerprint_is_the_digest_of_its_named_splits_in_any_order(corpus_copy):
    from speechrq.data.corpus import cut_files
    from speechrq.identity import manifest_fingerprint

    files = cut_files(corpus_copy)
    assert {"train", "dev", "test"} <= set(files)
    assert corpus_fingerprint(corpus_copy) == digest({s: manifest_fingerprint(files[s]) for s in files})
    assert corpus_fingerprint(corpus_copy, "dev") == digest({"dev": manifest_fingerprint(files["dev"])})
    assert corpus_fingerprint(corpus_copy, ["train", "dev"]) == corpus_fingerprint(corpus_copy, ["dev", "train"]) == \
        digest({"dev": manifest_fingerprint(files["dev"]), "train": manifest_fingerprint(files["train"])})
    assert len({corpus_fingerprint(corpus_copy, s) for s in (None, "train", "dev", ["train", "dev"])}) == 4
    with pytest.raises(SpeechrqError) as e:
        corpus_fingerprint(corpus_copy, ["train", "zz", "aa"])
    assert str(e.value) == f"{corpus_copy}: has no split 'aa' (it has {', '.join(files)})"
