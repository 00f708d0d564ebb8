"""Each importer on a tiny tree laid out exactly like its real corpus (audio from the synthesizer)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechrq.data.corpus import load_cuts
from speechrq.data.recipes import import_corpus
from speechrq.errors import SpeechrqError


@pytest.fixture(scope="module")
def voices(tiny_corpus):
    """(audio array at 16 kHz, text, phone alignment) of a few synthesized utterances."""
    out = []
    for cut in list(load_cuts(tiny_corpus, "train"))[:12]:
        sup = cut.supervisions[0]
        out.append((cut.load_audio()[0], sup.text, sup.alignment["phone"]))
    return out


def _write(path: Path, audio: np.ndarray, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, rate)


def test_librispeech(tmp_path, voices):
    src = tmp_path / "LibriSpeech"
    for part, spk in (("train-clean-100", "103"), ("dev-clean", "84")):
        chap = src / part / spk / "1240"
        lines = []
        for k, (audio, text, _) in enumerate(voices[:3]):
            utt = f"{spk}-1240-{k:04d}"
            _write(chap / f"{utt}.flac", audio)
            lines.append(f"{utt} {text.upper()}")
        (chap / f"{spk}-1240.trans.txt").write_text("\n".join(lines) + "\n")
    summary, report = import_corpus("librispeech", src, tmp_path / "out", workers=2, progress=False)
    assert set(summary["splits"]) == {"train-clean-100", "dev-clean"}
    assert report.kept == 6 and not report.skipped
    cut = next(iter(load_cuts(tmp_path / "out", "dev-clean")))
    assert cut.supervisions[0].speaker == "84" and cut.supervisions[0].text == voices[0][1].upper()


def test_timit(tmp_path, voices):
    from lhotse.recipes.timit import get_speakers

    dev_spk, test_spk = sorted(get_speakers()[0])[0].upper(), sorted(get_speakers()[1])[0].upper()
    root = tmp_path / "timit" / "data"
    for part, dr, spk in (("TRAIN", "DR1", "FCJF0"), ("TEST", "DR1", dev_spk), ("TEST", "DR2", test_spk), ("TEST", "DR3", "MXXX9")):
        for k, (audio, text, phones) in enumerate(voices[:2]):
            wav = root / part / dr / spk / f"SX{k}.WAV"
            _write(wav, audio)
            n = len(audio)
            wav.with_suffix(".TXT").write_text(f"0 {n} {text.capitalize()}.\n")
            wav.with_suffix(".PHN").write_text("".join(f"{int(p.start * 16000)} {int((p.start + p.duration) * 16000)} {p.symbol.lower()}\n" for p in phones))
            words, t = [], 0
            for w in text.split():
                words.append(f"{t} {t + 1000} {w}\n")
                t += 1000
            wav.with_suffix(".WRD").write_text("".join(words))
    summary, report = import_corpus("timit", tmp_path / "timit", tmp_path / "out", workers=2, progress=False)
    assert {k: v["utterances"] for k, v in summary["splits"].items()} == {"train": 2, "dev": 2, "test": 2}
    cut = next(iter(load_cuts(tmp_path / "out", "train")))
    phones = cut.supervisions[0].alignment["phone"]
    assert [p.symbol for p in phones] == [p.symbol.lower() for p in voices[0][2]]
    assert abs(phones[1].start - voices[0][2][1].start) < 1e-3
    assert cut.supervisions[0].speaker == "FCJF0"


def test_voxceleb1(tmp_path, voices):
    src = tmp_path / "voxceleb1"
    lines = []
    for s, spk in enumerate(("id10001", "id10002")):
        for k, (audio, _, _) in enumerate(voices[:3]):
            rel = f"{spk}/vid{s}/{k + 1:05d}.wav"
            _write(src / "wav" / rel, audio)
            lines.append(f"{k + 1} {rel}")
    (src / "iden_split.txt").write_text("\n".join(lines) + "\n")
    summary, _ = import_corpus("voxceleb1", src, tmp_path / "out", workers=2, progress=False)
    assert {k: (v["utterances"], v["speakers"]) for k, v in summary["splits"].items()} == {"train": (2, 2), "dev": (2, 2), "test": (2, 2)}
    (src / "iden_split.txt").write_text("9 id10001/vid0/00001.wav\n")
    with pytest.raises(SpeechrqError, match=r"iden_split.txt:1: expected"):
        import_corpus("voxceleb1", src, tmp_path / "out2", progress=False)


def test_fsc(tmp_path, voices):
    src = tmp_path / "fluent_speech_commands_dataset"
    rows = {"train": [], "valid": [], "test": []}
    for k, (audio, _, _) in enumerate(voices[:6]):
        split = ("train", "train", "train", "train", "valid", "test")[k]
        rel = f"wavs/speakers/spk{k % 2}/utt{k}.wav"
        _write(src / rel, audio)
        rows[split].append({"": k, "path": rel, "speakerId": f"spk{k % 2}", "transcription": "Turn on the lights", "action": "activate", "object": "lights", "location": "none"})
    (src / "data").mkdir()
    for split, items in rows.items():
        with open(src / "data" / f"{split}_data.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["", "path", "speakerId", "transcription", "action", "object", "location"])
            w.writeheader()
            w.writerows(items)
    summary, _ = import_corpus("fsc", src, tmp_path / "out", workers=2, progress=False)
    assert {k: v["utterances"] for k, v in summary["splits"].items()} == {"train": 4, "dev": 1, "test": 1}
    sup = next(iter(load_cuts(tmp_path / "out", "test"))).supervisions[0]
    assert sup.custom["intent"] == "activate|lights|none" and sup.speaker == "spk1"


def test_iemocap(tmp_path, voices):
    src = tmp_path / "IEMOCAP_full_release"
    labels = ["neu", "hap", "exc", "ang", "sad", "fru"]  # fru is not one of the 4 classes
    for n in (1, 2):
        ses = src / f"Session{n}"
        dialog = f"Ses0{n}F_impro01"
        evals, trans = ["% header"], []
        for k, lab in enumerate(labels):
            utt = f"{dialog}_{'FM'[k % 2]}{k:03d}"
            _write(ses / "sentences" / "wav" / dialog / f"{utt}.wav", voices[k][0])
            evals.append(f"[{k}.0000 - {k}.5000]\t{utt}\t{lab}\t[2.5000, 2.5000, 2.5000]")
            trans.append(f"{utt} [00{k}.0000-00{k}.5000]: {voices[k][1]}")
        (ses / "dialog" / "EmoEvaluation").mkdir(parents=True)
        (ses / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(evals) + "\n")
        (ses / "dialog" / "transcriptions").mkdir(parents=True)
        (ses / "dialog" / "transcriptions" / f"{dialog}.txt").write_text("\n".join(trans) + "\n")
    summary, _ = import_corpus("iemocap", src, tmp_path / "out", workers=2, progress=False)
    assert set(summary["splits"]) == {"session1", "session2"}
    assert summary["utterances"] == 10
    assert summary["emotions"] == {"angry": 2, "happy": 4, "neutral": 2, "sad": 2}
    sups = {c.supervisions[0].id: c.supervisions[0] for c in load_cuts(tmp_path / "out", "session1")}
    assert sups["Ses01F_impro01_M001"].speaker == "Ses01M"
    assert sups["Ses01F_impro01_F002"].custom["emotion"] == "happy"  # excited merged into happy


def test_wrong_tree_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    for kind in ("librispeech", "timit", "voxceleb1", "fsc", "iemocap", "folder"):
        with pytest.raises(SpeechrqError) as e:
            import_corpus(kind, tmp_path / "empty", tmp_path / "out", progress=False)
        assert str(tmp_path / "empty") in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SpeechrqError, match="unknown KIND"):
        import_corpus("commonvoice", tmp_path / "empty", tmp_path / "out")
