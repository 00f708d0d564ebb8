"""``speechrq bench real-speech`` (speechrq.studies.real_speech): the corpora made from the LibriSpeech excerpts, their
splits, the pre-training corpus without test audio, and the study end to end at a toy budget.

The excerpts are not part of the project: every test that reads them skips, naming the folder, where it is absent
(``$SPEECHRQ_EXCERPTS``, else ``../shared/data/librispeech-excerpts`` beside the repository).
"""

from __future__ import annotations

import os

import json
from collections import Counter
from pathlib import Path

import pytest

from speechrq.cli import main
from speechrq.studies import real_speech as rs

EXCERPTS = rs.excerpts_dir(os.environ.get(rs.EXCERPTS_ENV) or Path(__file__).resolve().parents[2] / "shared" / "data" / "librispeech-excerpts")
needs_excerpts = pytest.mark.skipif(not (EXCERPTS / "utterances.tsv").is_file(),
                                    reason=f"{EXCERPTS}: no LibriSpeech excerpts folder (set SPEECHRQ_EXCERPTS)")


@pytest.fixture(scope="module")
def plan():
    from speechrq.data.recipes import read_speakers

    sexes, _ = read_speakers(EXCERPTS / "SPEAKERS.TXT")
    return rs.plan_corpora(EXCERPTS, rs.read_utterances(EXCERPTS), sexes), sexes


@needs_excerpts
def test_sid_splits_six_two_two_per_speaker_and_no_utterance_in_two_splits(plan):
    sid = plan[0]["sid"]
    assert len(sid) == 100 and len({e.id for e in sid}) == 100  # one split each
    per = Counter((e.speaker, e.split) for e in sid)
    speakers = {e.speaker for e in sid}
    assert len(speakers) == 10
    assert all((per[s, "train"], per[s, "dev"], per[s, "test"]) == (6, 2, 2) for s in speakers)
    assert {e.speaker for e in sid if e.split == "test"} == speakers  # every speaker is scored


@needs_excerpts
def test_sex_is_split_by_speaker_stratified_with_both_sexes_in_every_split(plan):
    entries, sexes = plan
    sex = entries["sex"]
    assert len(sex) == 251 and len({e.id for e in sex}) == 251
    split_of: dict[str, set] = {}
    for e in sex:
        split_of.setdefault(e.speaker, set()).add(e.split)
        assert e.gender == sexes[e.speaker] and e.gender in ("F", "M")
    assert len(split_of) == 251 and all(len(s) == 1 for s in split_of.values())  # no speaker in two splits
    counts = Counter((e.gender, e.split) for e in sex)
    for g, n in (("F", 125), ("M", 126)):
        assert sum(counts[g, s] for s in ("train", "dev", "test")) == n
        assert (counts[g, "train"], counts[g, "dev"], counts[g, "test"]) == ((75, 25, 25) if g == "F" else (76, 25, 25))
        for split, share in (("train", 0.6), ("dev", 0.2), ("test", 0.2)):
            assert abs(counts[g, split] / n - share) < 0.01, (g, split, counts)


@needs_excerpts
def test_the_pretraining_corpus_is_the_train_and_dev_audio_and_holds_no_test_utterance(plan):
    entries = plan[0]
    tasks = entries["sid"] + entries["sex"]
    test = {e.id for e in tasks if e.split == "test"}
    pre = entries["pretrain"]
    assert {e.split for e in pre} == {"train"}
    assert {e.id for e in pre} == {e.id for e in tasks if e.split != "test"} and not {e.id for e in pre} & test
    assert not {e.audio for e in pre} & {e.audio for e in tasks if e.split == "test"}


@needs_excerpts
def test_the_splits_do_not_depend_on_the_order_of_the_table(plan):
    from speechrq.data.recipes import read_speakers

    sexes, _ = read_speakers(EXCERPTS / "SPEAKERS.TXT")
    again = rs.plan_corpora(EXCERPTS, list(reversed(rs.read_utterances(EXCERPTS))), sexes)
    for name in ("sid", "sex"):
        assert {(e.id, e.split) for e in again[name]} == {(e.id, e.split) for e in plan[0][name]}


def test_every_utterance_of_a_reader_is_in_the_reader_s_split(tmp_path):
    """Without the excerpts: a table whose readers have several utterances each (the full LibriSpeech has many); the
    sex task splits by reader, stratified, and the pre-training corpus is every train and dev utterance."""
    rows = [{"path": f"test-other/{s}/{s}-1-{k:04d}.flac", "subset": rs.SID_SUBSET, "speaker": str(s), "utterance": f"{s}-1-{k:04d}",
             "duration_s": "2.0"} for s in (1, 2) for k in range(5)]
    rows += [{"path": f"train-clean-100/{s}-2-{k:04d}.flac", "subset": rs.SEX_SUBSET, "speaker": str(s), "utterance": f"{s}-2-{k:04d}",
              "duration_s": "2.0"} for s in range(10, 30) for k in range(3)]
    sexes = {str(s): "FM"[s % 2] for s in (1, 2, *range(10, 30))}
    plan = rs.plan_corpora(tmp_path, rows, sexes)
    split_of: dict[str, set] = {}
    for e in plan["sex"]:
        split_of.setdefault(e.speaker, set()).add(e.split)
    assert all(len(v) == 1 for v in split_of.values()) and len(split_of) == 20
    assert Counter((sexes[s], next(iter(v))) for s, v in split_of.items()) == {(g, split): n for g in "FM" for split, n in
                                                                               (("train", 6), ("dev", 2), ("test", 2))}
    assert Counter(e.split for e in plan["sid"]) == {"train": 6, "dev": 2, "test": 2}  # 3/1/1 of 5 per speaker
    assert {e.id for e in plan["pretrain"]} == {e.id for e in plan["sid"] + plan["sex"] if e.split != "test"}
    with pytest.raises(rs.SpeechrqError, match="no sex for speaker"):
        rs.plan_corpora(tmp_path, rows, {k: v for k, v in sexes.items() if k != "11"})


def test_a_missing_excerpts_folder_is_one_line_naming_it_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    out = tmp_path / "study"
    assert main(["bench", "real-speech", str(tmp_path / "nowhere"), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "nowhere") in err and "SPEECHRQ_EXCERPTS" in err
    monkeypatch.setenv("SPEECHRQ_EXCERPTS", str(tmp_path / "elsewhere"))  # the variable is read when no folder is given
    assert main(["bench", "real-speech", "--out", str(out), "--quiet"]) == 2
    assert str(tmp_path / "elsewhere") in capsys.readouterr().err and not out.exists()


def small_excerpts(root: Path) -> Path:
    """A folder laid out like the excerpts with a few of their shortest files (linked): each test-other speaker's 3
    shortest utterances, the 5 shortest female and male train-clean-100 readers, and SPEAKERS.TXT."""
    from speechrq.data.recipes import read_speakers

    sexes, _ = read_speakers(EXCERPTS / "SPEAKERS.TXT")
    rows = rs.read_utterances(EXCERPTS)
    duration = {r["utterance"]: float(r["duration_s"]) for r in rows}
    keep = []
    for spk in sorted({r["speaker"] for r in rows if r["subset"] == rs.SID_SUBSET}):
        keep += sorted((r for r in rows if r["speaker"] == spk), key=lambda r: duration[r["utterance"]])[:3]
    for g in ("F", "M"):
        keep += sorted((r for r in rows if r["subset"] == rs.SEX_SUBSET and sexes[r["speaker"]] == g),
                       key=lambda r: duration[r["utterance"]])[:5]
    root.mkdir(parents=True)
    (root / "SPEAKERS.TXT").write_bytes((EXCERPTS / "SPEAKERS.TXT").read_bytes())
    lines = ["\t".join(rs.COLUMNS)]
    for r in keep:
        (root / r["path"]).parent.mkdir(parents=True, exist_ok=True)
        (root / r["path"]).symlink_to((EXCERPTS / r["path"]).resolve())
        lines.append("\t".join(r[k] for k in rs.COLUMNS))
    (root / "utterances.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.slow
@needs_excerpts
def test_the_study_end_to_end_at_a_toy_budget(pretrain_corpus, tmp_path, capsys):
    from lhotse import CutSet

    from speechrq import formats
    from speechrq.data.corpus import cut_files
    from speechrq.schema import load
    from speechrq.studies.results_pages import OPTIONAL_PAGES, render
    from speechrq.studies.significance import VERDICTS

    src, out = small_excerpts(tmp_path / "excerpts"), tmp_path / "study"
    args = ["bench", "real-speech", str(src), "--out", str(out), "--steps", "2", "--seeds", "0,1", "--probe-seeds", "1", "--epochs", "1",
            "--synth-corpus", str(pretrain_corpus), "--quiet"]
    assert main(args) == 0
    report = load(out / "study.json", formats.real_speech)
    assert report["family_rule"].startswith("Holm") and report["seeds"] == [0, 1] and report["steps"] == 2
    assert "never seen in pre-training" in report["held_out"]
    for task in ("sid", "sex"):
        assert set(report["scores"][task]) == set(rs.SYSTEMS)
        for system, s in report["scores"][task].items():
            assert 0 <= s["mean"] <= 100 and len(s["per_seed"]) == (0 if system == "fbank" else 2)
        cmp = report["comparisons"][task]
        assert report["comparison_order"] == [f"{a} - {b}" for a, b in rs.COMPARISONS] == sorted(cmp, key=report["comparison_order"].index)
        assert all(cmp[f"{a} - {b}"]["a"] == a and cmp[f"{a} - {b}"]["b"] == b for a, b in rs.COMPARISONS)
        for c in cmp.values():
            v = c["vs"]
            assert v["n"] == 2 and v["ci95"][0] <= v["mean"] <= v["ci95"][1] and v["verdict"] in VERDICTS
            assert v["p_holm"] is not None and v["p_holm"] >= v["p"] and v["family"]["size"] == 5 and task in v["family"]["name"]
            assert v["verdict"] in c["sentence"] or (v["verdict"] in ("better", "worse") and f"{v['verdict']} than" in c["sentence"])
    # the corpora as written: 1/1/1 per sid speaker, sex by speaker with both sexes everywhere, no test audio in pre-training
    corpora = out / "corpora"
    cuts = {name: {split: list(CutSet.from_file(p)) for split, p in cut_files(corpora / name).items()} for name in ("sid", "sex", "pretrain")}
    assert {s: len(c) for s, c in cuts["sid"].items()} == {"train": 10, "dev": 10, "test": 10}
    assert all({c.supervisions[0].gender for c in cs} == {"F", "M"} for cs in cuts["sex"].values())
    speakers = {s: {c.supervisions[0].speaker for c in cs} for s, cs in cuts["sex"].items()}
    assert not (speakers["train"] & speakers["dev"] or speakers["train"] & speakers["test"] or speakers["dev"] & speakers["test"])
    test_ids = {c.id for name in ("sid", "sex") for c in cuts[name]["test"]}
    test_audio = {c.recording.sources[0].source for name in ("sid", "sex") for c in cuts[name]["test"]}
    pre = cuts["pretrain"]["train"]
    assert len(pre) == 10 + 10 + 6 + 2 and not {c.id for c in pre} & test_ids
    assert not {c.recording.sources[0].source for c in pre} & test_audio
    assert (corpora / "pretrain" / "feature_stats.json").exists()
    for s in (0, 1):
        for system in ("real", "synth"):
            meta = json.loads(next((out / f"seed{s}" / system / "checkpoints").glob("step_*/meta.json")).read_text())
            assert meta["step"] == 2 and meta["config"]["train"]["seed"] == s and meta["config"]["quantizer"]["seed"] == 1234 + s
    assert "| real − synth |" in (out / "study.md").read_text()
    page = next(p for p in OPTIONAL_PAGES if p.name == "real_speech")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "real_speech.json").write_text((out / "study.json").read_text())
    text = render(page, tmp_path / "docs")
    assert "make real-speech" in text and "Sex acc" in text and "Not run yet" not in text
    capsys.readouterr()
    # a second run reuses the corpora, the runs and the probes
    assert main(args) == 0
    assert json.loads((out / "study.json").read_text())["scores"] == report["scores"]


def test_the_results_page_says_not_run_yet_while_its_json_is_missing(tmp_path):
    from speechrq.studies.results_pages import OPTIONAL_PAGES, render

    page = next(p for p in OPTIONAL_PAGES if p.name == "real_speech")
    text = render(page, tmp_path)
    assert "Not run yet" in text and "make real-speech" in text and page.title in text


def test_the_verdict_is_written_from_the_numbers():
    """The page's verdict: what holds after Holm, the rest within noise, a task at its ceiling said to be so, and the
    answer to the question (real against synthesized) in whichever direction the numbers give."""
    def cell(a, b, mean, verdict, p):
        return {"a": a, "b": b, "vs": {"mean": mean, "ci95": [mean - 1, mean + 1], "p_holm": p, "verdict": verdict, "n": 3}}

    report = {"tasks": ["sid", "sex"], "task_names": {"sid": "SID", "sex": "sex"}, "preset": "tiny", "steps": 10, "seeds": [0, 1, 2],
              "corpora": {"sid": {"splits": {"test": {"utterances": 20}}}, "sex": {"splits": {"test": {"utterances": 50}}}},
              "scores": {"sid": {"fbank": {"mean": 100.0}, "real": {"mean": 95.0}}, "sex": {"real": {"mean": 80.0}, "synth": {"mean": 70.0}}},
              "comparisons": {"sid": {"real - synth": cell("real", "synth", -1.0, "within noise", 0.9)},
                              "sex": {"real - synth": cell("real", "synth", 10.0, "better", 0.01),
                                      "real - fbank": cell("real", "fbank", 0.5, "within noise", 0.7)}}}
    text = rs.verdict_summary(report)
    assert "On SID, every comparison is within noise (fbank scores 100.00 on 20 test utterances: the task is at its ceiling" in text
    assert "On sex, real is better than synth (+10.00 [+9.00, +11.00], Holm p 0.010); the other 1 within noise." in text
    assert "the real hour beats the synthesized one on sex" in text
    report["comparisons"]["sex"]["real - synth"] = cell("real", "synth", -10.0, "worse", 0.01)
    assert "the real hour does no better than the synthesized one" in rs.verdict_summary(report)
