"""Probe splits and folds: parsing, held-out dev, and real-corpus layouts through ``speechrq evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_encoders import make_checkpoint

from speechrq.cli import main
from speechrq.data.corpus import load_cuts
from speechrq.errors import SpeechrqError
from speechrq.evaluate.splits import DEFAULT_FOLD, leave_one_out, parse_splits


def test_parse_splits_and_folds():
    f = parse_splits("train=train-clean-100+train-clean-360, dev=dev-clean, test=test-clean")
    assert (f.train, f.dev, f.test, f.dev_share) == (("train-clean-100", "train-clean-360"), ("dev-clean",), ("test-clean",), 0.0)
    assert parse_splits("train=a,test=b", dev_share=0.1).dev_share == 0.1  # no dev part: held out from train
    folds = leave_one_out(["s1", "s2", "s3"])
    assert [(f.name, f.train, f.test) for f in folds] == [("s1", ("s2", "s3"), ("s1",)), ("s2", ("s1", "s3"), ("s2",)),
                                                         ("s3", ("s1", "s2"), ("s3",))]
    for bad, match in (("train=a", "names no test"), ("train=a,test=b,dev=", "not ROLE=PART"), ("eval=a,train=b,test=c", "not ROLE"),
                       ("train=a,train=b,test=c", "given twice"), ("train=a,dev=test,test=test", "test is both dev and test"),
                       ("train=a+b,test=b", "b is both train and test"), ("train=a,dev=a,test=c", "a is both train and dev")):
        with pytest.raises(SpeechrqError, match=match):
            parse_splits(bad)
    with pytest.raises(SpeechrqError, match="at least two distinct"):
        leave_one_out(["s1", "s1"])
    with pytest.raises(SpeechrqError, match="--dev-share"):
        leave_one_out(["s1", "s2"], dev_share=1.5)


def test_held_out_dev_is_seeded_disjoint_and_independent_of_manifest_order():
    items = {"s1": [(f"a{i}", i % 4) for i in range(20)], "s2": [(f"b{i}", i % 4) for i in range(10)]}
    fold = leave_one_out(["s1", "s2"], dev_share=0.25)[1]  # test s2, train s1
    got = fold.assign(items)
    assert len(got["dev"]) == 5 and len(got["train"]) == 15 and got["test"] == items["s2"]
    assert not {i for i, _ in got["dev"]} & {i for i, _ in got["train"]}
    shuffled = {"s1": items["s1"][::-1], "s2": items["s2"]}
    assert fold.assign(shuffled) == got
    assert DEFAULT_FOLD.assign({"train": [1], "dev": [2], "test": [3]}) == {"train": [1], "dev": [2], "test": [3]}


@pytest.fixture(scope="module")
def voices(tiny_corpus):
    """(audio, text, emotion) of synthesized utterances, as material for real-corpus layouts."""
    return [(c.load_audio()[0], c.supervisions[0].text, c.supervisions[0].custom["emotion"])
            for c in list(load_cuts(tiny_corpus, "train"))[:40]]


def _write(path: Path, audio: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, 16000)


def test_a_librispeech_tree_is_probed_on_its_own_part_names(pretrain_corpus, voices, tmp_path, capsys):
    src = tmp_path / "LibriSpeech"
    parts = {"train-clean-100": voices[:16], "dev-clean": voices[16:20], "test-clean": voices[20:24]}
    for p, (part, items) in enumerate(parts.items()):
        for s in range(2):
            spk = f"{10 * p + s + 10}"
            chap = src / part / spk / "77"
            lines = []
            for k, (audio, text, _) in enumerate(items[s::2]):
                utt = f"{spk}-77-{k:04d}"
                _write(chap / f"{utt}.flac", audio)
                lines.append(f"{utt} {text.upper()}")
            (chap / f"{spk}-77.trans.txt").write_text("\n".join(lines) + "\n")
    corpus = tmp_path / "libri"
    assert main(["data", "import", "librispeech", str(src), str(corpus), "--workers", "2", "--quiet"]) == 0
    ckpt = make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0)
    base = ["evaluate", str(ckpt), "--corpus", str(corpus), "--tasks", "asr", "--out", str(tmp_path / "ev"), "--no-target-analysis",
            "--epochs", "1", "--lrs", "3e-3", "--quiet"]
    capsys.readouterr()
    assert main(base) == 2  # no train/dev/test parts: the error says how to name them
    err = capsys.readouterr().err
    assert "has no part 'dev', 'test', 'train'" in err and "--splits" in err and len(err.strip().splitlines()) == 1
    assert main([*base, "--splits", "train=train-clean-100,dev=dev-clean,test=test-clean"]) == 0
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert res["folds"][0]["train"] == ["train-clean-100"] and res["folds"][0]["test"] == ["test-clean"]
    asr = res["models"]["run@0"]["tasks"]["asr"]
    assert asr["metric"] == "wer" and asr["test"] >= 0 and not asr["fold_tests"]
    assert "Splits: train train-clean-100, dev dev-clean, test test-clean." in (tmp_path / "ev" / "results.md").read_text()
    assert main([*base, "--splits", "train=train-clean-360,dev=dev-clean,test=test-clean"]) == 2
    assert "has no part 'train-clean-360'" in capsys.readouterr().err


def test_an_iemocap_tree_is_probed_leave_one_session_out(pretrain_corpus, voices, tmp_path, capsys):
    code = {"neutral": "neu", "happy": "hap", "angry": "ang", "sad": "sad"}
    src = tmp_path / "IEMOCAP_full_release"
    for n in (1, 2, 3):
        ses = src / f"Session{n}"
        dialog = f"Ses0{n}F_impro01"
        evals, trans = ["% header"], []
        for k, (audio, text, emotion) in enumerate(voices[(n - 1) * 12 : n * 12]):
            utt = f"{dialog}_{'FM'[k % 2]}{k:03d}"
            _write(ses / "sentences" / "wav" / dialog / f"{utt}.wav", audio)
            evals.append(f"[{k}.0000 - {k}.5000]\t{utt}\t{code[emotion]}\t[2.5000, 2.5000, 2.5000]")
            trans.append(f"{utt} [00{k}.0000-00{k}.5000]: {text}")
        for sub, lines in (("EmoEvaluation", evals), ("transcriptions", trans)):
            (ses / "dialog" / sub).mkdir(parents=True)
            (ses / "dialog" / sub / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
    corpus = tmp_path / "iemocap"
    assert main(["data", "import", "iemocap", str(src), str(corpus), "--workers", "2", "--quiet"]) == 0
    ckpt = make_checkpoint(pretrain_corpus, tmp_path / "run", seed=0)
    out = tmp_path / "ev"
    args = ["evaluate", str(ckpt), "--corpus", str(corpus), "--tasks", "er", "--out", str(out), "--no-target-analysis",
            "--epochs", "2", "--lrs", "3e-3", "--folds", "session1,session2,session3", "--quiet"]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert [f["name"] for f in res["folds"]] == ["session1", "session2", "session3"]
    er = res["models"]["run@0"]["tasks"]["er"]
    assert set(er["fold_tests"]) == {"session1", "session2", "session3"}
    assert abs(er["test"] - sum(er["fold_tests"].values()) / 3) < 1e-9
    saved = sorted(p.name for p in (out / "probes").iterdir().__next__().iterdir())  # er.FOLD.<settings digest>.seed0.json
    assert [n.split(".")[:2] for n in saved] == [["er", "session1"], ["er", "session2"], ["er", "session3"]]
    assert "Means over 3 leave-one-out folds" in (out / "results.md").read_text()
    assert main([*args, "--splits", "train=session1,test=session2"]) == 2
    assert "give one of them" in capsys.readouterr().err


def test_fold_results_average_and_keep_the_seed_spread():
    from speechrq.evaluate.probes import ProbeResult, over_folds

    def result(tests, weights):
        return ProbeResult("er", "accuracy", sum(tests) / len(tests), 50.0, 1e-3, 3, weights, seed_tests=tests, test_std=1.0)

    r = over_folds({"s1": result([60.0, 64.0], [0.2, 0.8]), "s2": result([70.0, 74.0], [0.4, 0.6])})
    assert r.fold_tests == {"s1": 62.0, "s2": 72.0} and r.test == 67.0
    assert r.seed_tests == [65.0, 69.0] and abs(r.test_std - 2.8284271) < 1e-6  # spread of the per-seed fold means
    assert all(abs(a - b) < 1e-9 for a, b in zip(r.layer_weights, [0.3, 0.7]))


def test_several_probe_seeds_average_dev_as_they_average_test():
    """A study chooses on dev (a step, a baseline, a recipe): dev must see every probe seed, not the first one's."""
    from speechrq.evaluate.probes import ProbeResult, over_seeds

    runs = [ProbeResult("pr", "per", test=t, dev=d, lr=1e-3, epoch=1, layer_weights=[1.0]) for t, d in ((40.0, 30.0), (44.0, 36.0))]
    pooled = over_seeds(runs)
    assert pooled.test == 42.0 and pooled.dev == 33.0 and pooled.seed_tests == [40.0, 44.0]
