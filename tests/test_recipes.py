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
    for p, (part, spk) in enumerate((("train-clean-100", "103"), ("dev-clean", "84"))):
        chap = src / part / spk / "1240"
        lines = []
        for k, (audio, text, _) in enumerate(voices[3 * p:3 * p + 3]):
            utt = f"{spk}-1240-{k:04d}"
            _write(chap / f"{utt}.flac", audio)
            lines.append(f"{utt} {text.upper()}")
        (chap / f"{spk}-1240.trans.txt").write_text("\n".join(lines) + "\n")
    summary, report = import_corpus("librispeech", src, tmp_path / "out", workers=2, progress=False)
    assert set(summary["splits"]) == {"train-clean-100", "dev-clean"}
    assert report.kept == 6 and not report.skipped
    cut = next(iter(load_cuts(tmp_path / "out", "dev-clean")))
    assert cut.supervisions[0].speaker == "84" and cut.supervisions[0].text == voices[3][1].upper()


def test_librispeech_speakers_txt_sets_each_reader_s_sex(tmp_path, voices):
    """LibriSpeech's reader table at its root (``LibriSpeech/SPEAKERS.TXT``) gives supervision.gender, the sex probe's label;
    a name holding '|' (reader 60 is '|CBW|Simon') is read, a reader missing from the table has none, a bad line is
    reported and the import goes on."""
    src = tmp_path / "LibriSpeech"
    for k, spk in enumerate(("103", "60", "7")):
        chap = src / "train-clean-100" / spk / "1240"
        _write(chap / f"{spk}-1240-0000.flac", voices[k][0])
        (chap / f"{spk}-1240.trans.txt").write_text(f"{spk}-1240-0000 {voices[k][1].upper()}\n")
    (src / "SPEAKERS.TXT").write_text("; LibriSpeech's reader table\n;ID  |SEX| SUBSET           |MINUTES| NAME\n"
                                      "103  | F | train-clean-100  | 25.00 | Someone\n60   | M | train-clean-100  | 20.18 | |CBW|Simon\n"
                                      "84   | F | dev-clean        | 8.00  | Another\n85   | X | dev-clean        | 8.00  | Unknown sex\n")
    _, report = import_corpus("librispeech", src, tmp_path / "out", workers=1, progress=False)
    gender = {c.supervisions[0].speaker: c.supervisions[0].gender for c in load_cuts(tmp_path / "out", "train-clean-100")}
    assert gender == {"103": "F", "60": "M", "7": None}
    assert any("SPEAKERS.TXT:6" in k and "SEX (F or M)" in v for k, v in report.skipped.items())
    (src / "SPEAKERS.TXT").unlink()  # without the table: no sex, as before
    import_corpus("librispeech", src, tmp_path / "out2", workers=1, progress=False)
    assert {c.supervisions[0].gender for c in load_cuts(tmp_path / "out2", "train-clean-100")} == {None}


def test_timit(tmp_path, voices):
    from lhotse.recipes.timit import get_speakers

    dev_spk, test_spk = sorted(get_speakers()[0])[0].upper(), sorted(get_speakers()[1])[0].upper()
    root = tmp_path / "timit" / "data"
    for s, (part, dr, spk) in enumerate((("TRAIN", "DR1", "FCJF0"), ("TEST", "DR1", dev_spk), ("TEST", "DR2", test_spk),
                                         ("TEST", "DR3", "MXXX9"))):
        for k, (audio, text, phones) in enumerate(voices[2 * s:2 * s + 2]):
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
            _write(ses / "sentences" / "wav" / dialog / f"{utt}.wav", voices[(k + 6 * (n - 1)) % len(voices)][0])
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


# ---------------------------------------------------------------- multilingual corpora


def _report(out: Path) -> dict:
    import json

    return json.loads((out / "import_report.json").read_text())


def _mlsuperb_tree(src: Path, voices) -> dict[str, tuple]:
    """Two datasets and languages, four utterances each; a malformed dev line and a test line without its wav."""
    texts = {("mls", "eng"): ["café au lait", "hello world", "good night", "fine thanks"],
             ("fleurs", "rus"): ["привет мир", "до свидания", "спасибо", "?! …"]}  # the last one normalises to nothing
    made = {}
    for (dataset, lang), lines in texts.items():
        d = src / dataset / lang
        utt = [f"{dataset}_{lang}_{k:06d}" for k in range(4)]
        for k, text in enumerate(lines):
            _write(d / "wav" / f"{utt[k]}.wav", voices[k][0])
            made[utt[k]] = (lang, dataset, text, len(voices[k][0]))
        (d / "transcript_10min_train.txt").write_text(f"{utt[0]} A {lines[0]}\n", encoding="utf-8")
        (d / "transcript_1h_train.txt").write_text(f"{utt[0]} A {lines[0]}\n{utt[1]} A {lines[1]}\n", encoding="utf-8")
        (d / "transcript_10min_dev.txt").write_text(f"{utt[2]} A {lines[2]}\n{dataset}_{lang}_bad A\n", encoding="utf-8")
        (d / "transcript_10min_test.txt").write_text(f"{utt[3]} A {lines[3]}\n{dataset}_{lang}_000009 A lost\n", encoding="utf-8")
    return made


def test_mlsuperb(tmp_path, voices, capsys):
    from speechrq.cli import main

    out = tmp_path / "corpus"
    src = out / "mlsuperb"  # the audio inside OUT: stored relative to it, once per file though in two splits
    made = _mlsuperb_tree(src, voices)
    summary, report = import_corpus("mlsuperb", src, out, workers=2, progress=False)
    assert {k: v["utterances"] for k, v in summary["splits"].items()} == {"train_10min": 2, "train_1h": 4, "dev": 2, "test": 2}
    assert report.kept == 8  # the 10-minute utterances are checked once, not again for the 1-hour split
    for dataset, lang in (("mls", "eng"), ("fleurs", "rus")):
        assert report.skipped[f"{src / dataset / lang / 'transcript_10min_dev.txt'}:2"].startswith("expected 'UTTERANCE-ID FIELD")
        assert report.skipped[str(src / dataset / lang / "wav" / f"{dataset}_{lang}_000009.wav")] == "no such file"
    assert len(report.skipped) == 4
    cuts = {split: {c.id.split("-")[0]: c for c in load_cuts(out, split)} for split in summary["splits"]}
    assert set(cuts["train_10min"]) == {"mls_eng_000000", "fleurs_rus_000000"}
    assert set(cuts["train_1h"]) == {f"{d}_{lang}_00000{k}" for d, lang in (("mls", "eng"), ("fleurs", "rus")) for k in (0, 1)}
    for split, by_id in cuts.items():
        for uid, cut in by_id.items():
            lang, dataset, text, n = made[uid]
            sup = cut.supervisions[0]
            assert (sup.id, sup.language, sup.custom["dataset"], sup.text, sup.speaker) == (uid, lang, dataset, text, None)
            assert cut.load_audio().shape == (1, n)
    assert all(s.startswith(f"{out.resolve()}/mlsuperb/") for s in _stored_sources(out))  # absolute: lhotse reads it from anywhere
    assert _report(out)["empty_transcripts"] == {"count": 1, "ids": ["fleurs_rus_000003"]}
    assert cuts["test"]["fleurs_rus_000003"].supervisions[0].text == "?! …"  # kept, as written
    # the CLI says how many and where the list is, in one line
    assert main(["data", "import", "mlsuperb", str(src), str(tmp_path / "cli"), "--quiet", "--workers", "1"]) in (0, None)
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(err) == 1 and "1 transcript is empty once normalised" in err[0] and str(tmp_path / "cli" / "import_report.json") in err[0]
    # one utterance listed twice in one split: the repeated line is skipped and reported, the import goes on
    with open(src / "mls" / "eng" / "transcript_1h_train.txt", "a", encoding="utf-8") as f:
        f.write("mls_eng_000001 A hello again\n")
    summary, report = import_corpus("mlsuperb", src, tmp_path / "again", progress=False)
    (problem,) = [p for s, p in report.skipped.items() if "mls_eng_000001" in s]
    assert "'mls_eng_000001' listed again in split train_1h" in problem
    assert {k: v["utterances"] for k, v in summary["splits"].items()} == {"train_10min": 2, "train_1h": 4, "dev": 2, "test": 2}
    assert "hello again" not in {c.supervisions[0].text for c in load_cuts(tmp_path / "again", "train_1h")}  # the first kept


def test_wenetspeech(tmp_path, voices):
    import json

    src = tmp_path / "wenetspeech"
    long1 = np.concatenate([v[0] for v in voices[:4]])  # a long recording at 16 kHz, and one at 48 kHz
    long2 = np.repeat(np.concatenate([v[0] for v in voices[4:6]]), 3)  # 3.7 s at 48 kHz (crudely upsampled)
    path1, path2 = "audio/train/youtube/B00000/Y0001.opus", "audio/dev/podcast/B00000/P0002.opus"
    for rel, x, rate in ((path1, long1, 16000), (path2, long2, 48000)):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(src / rel, x, rate, format="OGG", subtype="OPUS")
    dur1 = len(long1) / 16000

    def seg(sid, begin, end, text, subsets):
        return {"sid": sid, "confidence": 1.0, "begin_time": begin, "end_time": end, "subsets": subsets, "text": text}

    meta = {"dataset": "WenetSpeech", "audios": [
        {"aid": "Y0001", "path": path1, "duration": round(dur1, 2), "segments": [
            seg("Y0001_S0", 0.5, 1.7, "你好世界", ["{L}", "{M}"]),  # tags with braces, as some copies write them
            seg("Y0001_S1", 2.0, 3.25, "今天天气很好", ["L"]),
            seg("Y0001_S2", round(dur1 - 0.5, 2), round(dur1 + 0.5, 2), "超出", ["L"]),  # past the recording's end
            {"sid": "Y0001_S3", "begin_time": 1.0, "text": "坏", "subsets": ["L"]},  # no end_time
            seg("Y0001_S4", 3.5, 4.0, "。？", ["L"]),  # empty once normalised
        ]},
        {"aid": "P0002", "path": path2, "segments": [seg("P0002_S0", 0.2, 1.0, "开会", ["DEV"]),
                                                      seg("P0002_S1", 1.0, 2.0, "Meeting 会议", ["TEST_MEETING"])]},
        {"aid": "Y0404", "path": "audio/train/youtube/B00000/Y0404.opus", "segments": [seg("Y0404_S0", 0.0, 1.0, "丢", ["L"])]},
    ]}
    (src / "WenetSpeech.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    summary, report = import_corpus("wenetspeech", src, tmp_path / "out", workers=2, progress=False)
    assert {k: v["utterances"] for k, v in summary["splits"].items()} == {"train_l": 3, "train_m": 1, "dev": 1, "test_meeting": 1}
    assert report.kept == 2
    assert report.skipped[str(src / "audio/train/youtube/B00000/Y0404.opus")] == "no such file"
    past = report.skipped[f"{src / path1} (segment Y0001_S2)"]
    assert "past the end of its recording" in past and f"{dur1:.3f}" in past
    assert "begin_time 1.0, end_time None" in report.skipped[f"{src / 'WenetSpeech.json'}: Y0001_S3"]
    assert len(report.skipped) == 3
    decoded, rate = sf.read(src / path1, dtype="float32")
    assert rate == 16000 and len(decoded) == len(long1)
    train_l = {c.id: c for c in load_cuts(tmp_path / "out", "train_l")}
    assert set(train_l) == {"Y0001_S0", "Y0001_S1", "Y0001_S4"}
    for sid, (begin, end, text) in {"Y0001_S0": (0.5, 1.7, "你好世界"), "Y0001_S1": (2.0, 3.25, "今天天气很好")}.items():
        cut = train_l[sid]
        sup = cut.supervisions[0]
        assert (cut.recording.id, sup.recording_id, sup.language, sup.text, sup.speaker) == ("Y0001", "Y0001", "cmn", text, None)
        assert sup.start == 0 and abs(sup.duration - (end - begin)) < 1e-9 and abs(cut.duration - (end - begin)) < 1e-9
        audio = cut.load_audio()[0]
        assert np.array_equal(audio, decoded[round(begin * 16000):round(end * 16000)])  # exactly that stretch of the long file
    m = next(iter(load_cuts(tmp_path / "out", "train_m")))
    assert m.id == "Y0001_S0" and np.array_equal(m.load_audio(), train_l["Y0001_S0"].load_audio())
    test = next(iter(load_cuts(tmp_path / "out", "test_meeting")))  # a 48 kHz file, its segment resampled on loading
    assert test.sampling_rate == 16000 and test.load_audio().shape == (1, 16000) and test.supervisions[0].text == "Meeting 会议"
    assert _report(tmp_path / "out")["empty_transcripts"] == {"count": 1, "ids": ["Y0001_S4"]}
    # a path leading outside SRC is not followed: that entry is rejected, the rest imported
    meta["audios"].append({"aid": "X0001", "path": "../outside.opus", "segments": [seg("X0001_S0", 0.0, 1.0, "外", ["L"])]})
    (src / "WenetSpeech.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    _, report = import_corpus("wenetspeech", src, tmp_path / "outside", progress=False)
    assert "leads outside" in report.skipped[f"{src / 'WenetSpeech.json'}: audios[3]"] and report.kept == 2
    meta["audios"].pop()
    # one aid for two files is refused, naming both
    meta["audios"][1]["aid"] = "Y0001"
    (src / "WenetSpeech.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(SpeechrqError) as e:
        import_corpus("wenetspeech", src, tmp_path / "again", progress=False)
    assert "'Y0001'" in str(e.value) and "Y0001.opus" in str(e.value) and "P0002.opus" in str(e.value)


def test_commonvoice(tmp_path, voices):
    src = tmp_path / "cv-corpus-17.0"
    columns = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes", "age", "gender",
               "accents", "variant", "locale", "segment"]
    rows = {("en", "train"): [("aaa1", "Café au lait, please."), ("aaa1", 'He said "hi')],  # an unbalanced quote, as CV has
            ("en", "dev"): [("bbb2", "Good night")],
            ("en", "test"): [("ccc3", "Fine thanks")],
            ("ru", "train"): [("ddd4", "Привет мир")],
            ("ru", "dev"): [("eee5", "До свидания")],
            ("ru", "test"): [("fff6", "...")]}  # empty once normalised
    made, k = {}, 0
    for (lang, split), items in rows.items():
        lines = ["\t".join(columns)]
        for client, sentence in items:
            name = f"common_voice_{lang}_{1000 + k}.mp3"
            audio = voices[k % len(voices)][0]
            (src / lang / "clips").mkdir(parents=True, exist_ok=True)
            sf.write(src / lang / "clips" / name, audio, 16000, format="MP3")
            made[name[:-4]] = (split, lang, client, sentence, len(audio))
            lines.append("\t".join([client, name, "s", sentence, "", "2", "0", "twenties", "female_feminine", "", "", lang, ""]))
            k += 1
        if (lang, split) == ("en", "test"):
            lines.append("ggg7\tcommon_voice_en_broken.mp3")  # a short row
            lines.append("\t".join(["hhh8", "common_voice_en_9999.mp3", "s", "lost", "", "2", "0", "", "", "", "", "en", ""]))
        (src / lang / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (src / "en" / "validated.tsv").write_text((src / "en" / "train.tsv").read_text().replace("aaa1", "zzz9"))  # not read
    summary, report = import_corpus("commonvoice", src, tmp_path / "out", workers=2, progress=False)
    assert {k: (v["utterances"], v["speakers"]) for k, v in summary["splits"].items()} == {"train": (3, 2), "dev": (2, 2), "test": (2, 2)}
    assert report.kept == 7
    assert report.skipped[f"{src / 'en' / 'test.tsv'}:3"].startswith("a row with missing fields")
    assert report.skipped[str(src / "en" / "clips" / "common_voice_en_9999.mp3")] == "no such file"
    assert len(report.skipped) == 2
    for split in ("train", "dev", "test"):
        for cut in load_cuts(tmp_path / "out", split):
            sup = cut.supervisions[0]
            assert made[sup.id][:4] == (split, sup.language, sup.speaker, sup.text)
            assert sup.custom["gender"] == "female_feminine" and cut.load_audio().shape == (1, made[sup.id][4])
    assert _report(tmp_path / "out")["empty_transcripts"] == {"count": 1, "ids": ["common_voice_ru_1006"]}


def test_wrong_tree_is_a_one_line_error(tmp_path):
    (tmp_path / "empty").mkdir()
    for kind in ("librispeech", "timit", "voxceleb1", "fsc", "iemocap", "mlsuperb", "wenetspeech", "commonvoice", "folder"):
        with pytest.raises(SpeechrqError) as e:
            import_corpus(kind, tmp_path / "empty", tmp_path / "out", progress=False)
        assert str(tmp_path / "empty") in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SpeechrqError, match=r"no ML-SUPERB transcript_\*\.txt under SRC/DATASET/LANG/"):
        import_corpus("mlsuperb", tmp_path / "empty", tmp_path / "out", progress=False)
    with pytest.raises(SpeechrqError, match="unknown KIND"):
        import_corpus("nosuchcorpus", tmp_path / "empty", tmp_path / "out")
    # WenetSpeech's one label file, unreadable as JSON: nothing to import, one line naming it
    (tmp_path / "empty" / "WenetSpeech.json").write_text('{"audios": [')
    with pytest.raises(SpeechrqError) as e:
        import_corpus("wenetspeech", tmp_path / "empty", tmp_path / "out", progress=False)
    assert str(tmp_path / "empty" / "WenetSpeech.json") in str(e.value) and "\n" not in str(e.value)


# ---------------------------------------------------------------- paths and ids that must not break later


def _minimal_tree(kind: str, src: Path, voices) -> None:
    """A few utterances of ``kind`` under ``src``, laid out as in the tests above: a training split and (but for
    ``folder``) a dev or test split, every file's audio different."""
    if kind == "librispeech":
        for p, (part, spk) in enumerate((("train-clean-100", "103"), ("dev-clean", "84"))):
            chap = src / part / spk / "1240"
            lines = []
            for k, (audio, text, _) in enumerate(voices[2 * p:2 * p + 2]):
                _write(chap / f"{spk}-1240-{k:04d}.flac", audio)
                lines.append(f"{spk}-1240-{k:04d} {text.upper()}")
            (chap / f"{spk}-1240.trans.txt").write_text("\n".join(lines) + "\n")
    elif kind == "timit":
        from lhotse.recipes.timit import get_speakers

        dev_spk = sorted(get_speakers()[0])[0].upper()
        for k, (part, spk) in enumerate((("TRAIN", "FCJF0"), ("TEST", dev_spk), ("TEST", "MXXX9"))):  # MXXX9: in no TIMIT set
            wav = src / "data" / part / "DR1" / spk / "SX0.WAV"
            audio, text, _ = voices[k]
            _write(wav, audio)
            wav.with_suffix(".TXT").write_text(f"0 {len(audio)} {text}\n")
            wav.with_suffix(".PHN").write_text("0 1000 h#\n1000 2000 ax\n")
            wav.with_suffix(".WRD").write_text("0 1000 word\n")
    elif kind == "voxceleb1":
        for k in range(2):
            _write(src / "wav" / "id10001" / "vid0" / f"{k + 1:05d}.wav", voices[k][0])
        (src / "iden_split.txt").write_text("1 id10001/vid0/00001.wav\n3 id10001/vid0/00002.wav\n")
    elif kind == "fsc":
        (src / "data").mkdir(parents=True)
        for k, split in enumerate(("train", "valid", "test")):
            _write(src / "wavs" / "speakers" / "spk0" / f"utt{k}.wav", voices[k][0])
            with open(src / "data" / f"{split}_data.csv", "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=["path", "speakerId", "transcription", "action", "object", "location"])
                w.writeheader()
                w.writerow({"path": f"wavs/speakers/spk0/utt{k}.wav", "speakerId": "spk0", "transcription": "Turn on the lights",
                            "action": "activate", "object": "lights", "location": "none"})
    elif kind == "iemocap":
        for n in (1, 2):
            ses = src / f"Session{n}"
            utt = f"Ses0{n}F_impro01_F000"
            _write(ses / "sentences" / "wav" / f"Ses0{n}F_impro01" / f"{utt}.wav", voices[n][0])
            (ses / "dialog" / "EmoEvaluation").mkdir(parents=True)
            (ses / "dialog" / "EmoEvaluation" / f"Ses0{n}F_impro01.txt").write_text(f"[0.0 - 1.0]\t{utt}\tneu\t[2.5, 2.5, 2.5]\n")
            (ses / "dialog" / "transcriptions").mkdir(parents=True)
            (ses / "dialog" / "transcriptions" / f"Ses0{n}F_impro01.txt").write_text(f"{utt} [000.0000-001.0000]: {voices[n][1]}\n")
    elif kind == "folder":
        for k in range(2):
            _write(src / "a" / f"x{k}.wav", voices[k][0])
    elif kind == "mlsuperb":
        d = src / "mls" / "eng"
        for k, name in enumerate(("10min_train", "1h_train", "10min_dev", "10min_test")):
            _write(d / "wav" / f"mls_eng_{k:06d}.wav", voices[k][0])
            (d / f"transcript_{name}.txt").write_text(f"mls_eng_{k:06d} A {voices[k][1]}\n")
    elif kind == "wenetspeech":
        import json

        audios = []
        for k in range(2):
            rel = f"audio/train/youtube/B00000/Y000{k}.opus"
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(src / rel, voices[k][0], 16000, format="OGG", subtype="OPUS")
            audios.append({"aid": f"Y000{k}", "path": rel, "segments": [
                {"sid": f"Y000{k}_S0", "begin_time": 0.1, "end_time": 0.9, "text": "你好 世界", "subsets": [("L", "DEV")[k]]}]})
        (src / "WenetSpeech.json").write_text(json.dumps({"audios": audios}))
    elif kind == "commonvoice":
        for k, split in enumerate(("train", "dev", "test")):
            (src / "ru" / "clips").mkdir(parents=True, exist_ok=True)
            sf.write(src / "ru" / "clips" / f"common_voice_ru_{k}.mp3", voices[k][0], 16000, format="MP3")
            (src / "ru" / f"{split}.tsv").write_text(f"client_id\tpath\tsentence\nc{k}\tcommon_voice_ru_{k}.mp3\tпривет мир\n")


def _stored_sources(corpus: Path) -> list[str]:
    """The audio paths exactly as the manifests store them (not resolved by the loader)."""
    from lhotse import CutSet

    from speechrq.data.corpus import cut_files

    return [c.recording.sources[0].source for p in cut_files(corpus).values() for c in CutSet.from_file(p)]


def _read_every_cut(corpus) -> int:
    from speechrq.data.corpus import cut_files

    n = 0
    for split in cut_files(corpus):
        for cut in load_cuts(corpus, split):
            assert cut.load_audio().shape[-1] > 1000
            n += 1
    return n


@pytest.mark.parametrize("kind", ["librispeech", "timit", "voxceleb1", "fsc", "iemocap", "mlsuperb", "wenetspeech", "commonvoice", "folder"])
def test_a_relative_source_and_out_give_a_corpus_readable_from_anywhere_and_after_a_move(kind, tmp_path, voices, monkeypatch):
    """Issue 21.4: ``data import folder relsrc out`` stored paths relative to the directory the import ran in, which the
    loader read against the corpus folder: nothing could be read, and ``features stats`` ended in a raw RuntimeError."""
    from speechrq.features import compute_stats

    work = tmp_path / "work"
    _minimal_tree(kind, work / "relsrc", voices)
    monkeypatch.chdir(work)
    _, report = import_corpus(kind, "relsrc", "out", workers=1, progress=False)
    assert report.kept >= 1 and not report.skipped
    sources = _stored_sources(Path("out"))
    assert sources and all(Path(s).is_absolute() and Path(s).is_file() for s in sources)  # outside the corpus: absolute
    assert _read_every_cut("out") == report.kept
    # from another directory, the corpus moved and renamed, given by a relative path
    (tmp_path / "elsewhere").mkdir()
    (work / "out").rename(tmp_path / "moved corpus")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert _read_every_cut("../moved corpus") == report.kept
    split = next(iter(load_cuts("../moved corpus", s) for s in ("train", "train-clean-100", "session1", "train_10min", "train_l") if
                      (tmp_path / "moved corpus" / f"cuts_{s}.jsonl.gz").exists()))
    assert compute_stats(split, progress=False).utterances == len(split)


def test_audio_inside_the_corpus_folder_is_stored_under_it_and_moves_with_it(tmp_path, voices, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _minimal_tree("folder", Path("corpus") / "audio", voices)
    import_corpus("folder", "corpus/audio", "corpus", workers=1, progress=False)
    assert sorted(_stored_sources(Path("corpus"))) == [f"{tmp_path.resolve()}/corpus/audio/a/x{i}.wav" for i in (0, 1)]
    Path("corpus").rename("renamed")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert _read_every_cut("../renamed") == 2
    assert _read_every_cut(tmp_path / "renamed") == 2


def test_a_synthesized_corpus_made_at_a_relative_path_reads_after_a_move(tmp_path, monkeypatch):
    from speechrq.data.synth import SynthConfig, synthesize_corpus

    monkeypatch.chdir(tmp_path)
    synthesize_corpus("rel/corpus", SynthConfig(hours=0.003, speakers=2, seed=1, shard_size=4), workers=1, progress=False)
    assert all(s.startswith(f"{tmp_path.resolve()}/rel/corpus/audio/") for s in _stored_sources(Path("rel/corpus")))
    n = _read_every_cut("rel/corpus")
    Path("rel/corpus").rename(tmp_path / "other")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "deep" / "er")
    assert n > 0 and _read_every_cut("../../other") == n


def test_folder_names_with_spaces_tabs_newlines_and_accents_become_safe_ids_that_keep_the_original(tmp_path, voices):
    """Issue 21.4: ``speaker one/take 1.wav`` imported as an id with a space, so ``units encode`` wrote Kaldi lines whose
    first field was ``speaker``."""
    from speechrq.data.corpus import id_problem

    src = tmp_path / "src"
    from speechrq.io import atomic_path, utterance_file

    names = ["speaker one/take 1.wav", "speaker one/take 2.wav", "tab\there.wav", "new\nline.wav", "naïve ü/ç.wav", "nul\x01ctl.wav",
             "x" * 240 + ".wav"]
    for k, name in enumerate(names):
        _write(src / name, voices[k % len(voices)][0])
    summary, report = import_corpus("folder", src, tmp_path / "out", workers=1, progress=False)
    assert report.kept == len(names) and not report.skipped
    cuts = list(load_cuts(tmp_path / "out", "train"))
    sups = {c.supervisions[0].id: c.supervisions[0] for c in cuts}
    assert {"speaker_one__take_1", "speaker_one__take_2", "tab_here", "new_line", "naïve_ü__ç", "nul_ctl"} <= set(sups)
    long_id = next(i for i in sups if i.startswith("xxx"))
    assert len(long_id.encode()) <= 100 and sups[long_id].custom["source_id"] == "x" * 240
    for uid, sup in sups.items():
        assert id_problem(uid) is None and "/" not in uid and uid == sup.recording_id
    for c in cuts:  # the cut ids too: one field of a text line, and a file name as the caches write it
        assert id_problem(c.id) is None and len(f"{c.id} 1 2".split()) == 3
        with atomic_path(utterance_file(tmp_path / "probe", c.id)) as tmp:
            tmp.write_bytes(b"")
    assert len(list((tmp_path / "probe").iterdir())) == len(names)
    # the original name is kept
    assert sups["speaker_one__take_1"].custom["source_id"] == "speaker one/take 1"
    assert sups["tab_here"].custom["source_id"] == "tab\there" and sups["new_line"].custom["source_id"] == "new\nline"


def test_two_names_that_become_one_id_are_refused_naming_both(tmp_path, voices):
    src = tmp_path / "src"
    _write(src / "a b.wav", voices[0][0])
    _write(src / "a_b.wav", voices[1][0])
    with pytest.raises(SpeechrqError) as e:
        import_corpus("folder", src, tmp_path / "out", progress=False)
    assert "'a b'" in str(e.value) and "'a_b'" in str(e.value) and "\n" not in str(e.value)
    # two speakers likewise (FSC's speakerId column)
    fsc_src = tmp_path / "fsc"
    _minimal_tree("fsc", fsc_src, voices)
    table = fsc_src / "data" / "test_data.csv"
    table.write_text(table.read_text().replace(",spk0,", ",spk 0,"))
    (fsc_src / "data" / "valid_data.csv").write_text((fsc_src / "data" / "valid_data.csv").read_text().replace(",spk0,", ",spk_0,"))
    with pytest.raises(SpeechrqError) as e:
        import_corpus("fsc", fsc_src, tmp_path / "out2", progress=False)
    assert "speakers" in str(e.value) and "'spk 0'" in str(e.value) and "'spk_0'" in str(e.value)


def test_a_speaker_with_a_space_becomes_a_safe_id_with_its_original_kept(tmp_path, voices):
    src = tmp_path / "fsc"
    _minimal_tree("fsc", src, voices)
    for split in ("train", "valid", "test"):
        table = src / "data" / f"{split}_data.csv"
        table.write_text(table.read_text().replace(",spk0,", ",Jane Doe,"))
    import_corpus("fsc", src, tmp_path / "out", workers=1, progress=False)
    sup = next(iter(load_cuts(tmp_path / "out", "train"))).supervisions[0]
    assert sup.speaker == "Jane_Doe" and sup.custom["source_speaker"] == "Jane Doe"


def test_an_import_never_mixes_with_another_corpus_or_leaves_stale_splits(tmp_path, voices, capsys):
    """Reuse keyed by what made it (issue 21, point 1): a folder holding another corpus is refused, not merged."""
    from speechrq.cli import main

    for i, name in enumerate(("one", "two")):
        _write(tmp_path / name / "s" / f"u{i}.wav", voices[i][0])
        _write(tmp_path / name / "s" / f"v{i}.wav", voices[i + 2][0])
    import_corpus("folder", tmp_path / "one", tmp_path / "out", workers=1, progress=False)
    import_corpus("folder", tmp_path / "one", tmp_path / "out", workers=1, progress=False)  # the same source again: fine
    before = (tmp_path / "out" / "cuts_train.jsonl.gz").read_bytes()
    assert main(["data", "import", "folder", str(tmp_path / "two"), str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "already holds a folder import of" in err and str(tmp_path / "one") in err and err.count("\n") == 1
    assert (tmp_path / "out" / "cuts_train.jsonl.gz").read_bytes() == before
    (tmp_path / "synth").mkdir()
    (tmp_path / "synth" / "cuts_dev.jsonl").write_text("")  # e.g. a synthesized corpus: no import report
    with pytest.raises(SpeechrqError, match="a corpus not imported by `data import`"):
        import_corpus("folder", tmp_path / "one", tmp_path / "synth", workers=1, progress=False)
    (tmp_path / "out" / "cuts_dev.jsonl.gz").write_bytes(before)  # a split this source does not make
    with pytest.raises(SpeechrqError, match="cuts_dev.jsonl.gz, which this import"):
        import_corpus("folder", tmp_path / "one", tmp_path / "out", workers=1, progress=False)


# ---------------------------------------------------------------- label files: UTF-8 with an optional BOM, lines on \n and \r\n


LABEL_KINDS = ["librispeech", "timit", "voxceleb1", "fsc", "iemocap", "mlsuperb", "wenetspeech", "commonvoice"]
TRANSCRIPT_KINDS = ["librispeech", "timit", "fsc", "iemocap", "mlsuperb", "wenetspeech", "commonvoice"]


def _label_files(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in (".txt", ".tsv", ".csv", ".json", ".phn", ".wrd"))


def _cut_table(out: Path) -> dict:
    """Every cut as the user reads it (split, id) -> (speaker, text, language, custom, alignment), audio paths left out."""
    from speechrq.data.corpus import cut_files

    table = {}
    for split in cut_files(out):
        for cut in load_cuts(out, split):
            sup = cut.supervisions[0]
            alignment = {k: [(a.symbol, a.start, a.duration) for a in v] for k, v in (sup.alignment or {}).items()}
            table[split, sup.id] = (sup.speaker, sup.text, sup.language, sup.custom, alignment, round(cut.duration, 3))
    return table


@pytest.mark.parametrize("kind", LABEL_KINDS)
def test_label_files_with_a_byte_order_mark_and_crlf_lines_import_exactly_as_without(kind, tmp_path, voices):
    """Issue 34.4: a Common Voice ``train.tsv`` beginning with a UTF-8 byte-order mark was dropped whole ("missing column(s)
    client_id") and the import exited 0 without a train split; every importer's label files had the same fault."""
    import shutil

    _minimal_tree(kind, tmp_path / "plain", voices)
    shutil.copytree(tmp_path / "plain", tmp_path / "bom")
    files = _label_files(tmp_path / "bom")
    assert files
    for f in files:  # as Windows tools write them: a BOM, CRLF line ends
        f.write_bytes(b"\xef\xbb\xbf" + f.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    _, plain = import_corpus(kind, tmp_path / "plain", tmp_path / "out_plain", workers=1, progress=False)
    _, bom = import_corpus(kind, tmp_path / "bom", tmp_path / "out_bom", workers=1, progress=False)
    assert not plain.skipped and not bom.skipped and bom.kept == plain.kept
    assert _cut_table(tmp_path / "out_bom") == _cut_table(tmp_path / "out_plain")
    assert len({split for split, _ in _cut_table(tmp_path / "out_bom")}) >= 2  # every split, none lost


def _separate(kind: str, src: Path, sep: str) -> None:
    """Every space inside every transcript of ``_minimal_tree(kind)`` replaced by ``sep``, the rest of each line as it was."""
    import json
    import re

    def edit(path: Path, change) -> None:
        text = path.read_bytes().decode("utf-8")
        path.write_bytes("\n".join(change(line) if line else line for line in text.split("\n")).encode("utf-8"))

    def after(n: int):  # the text after the first n space-separated fields
        return lambda line: " ".join(line.split(" ")[:n]) + " " + " ".join(line.split(" ")[n:]).replace(" ", sep)

    if kind == "librispeech":
        for f in src.rglob("*.trans.txt"):
            edit(f, after(1))
    elif kind == "timit":
        for f in src.rglob("*.TXT"):
            edit(f, after(2))
    elif kind == "mlsuperb":
        for f in src.rglob("transcript_*.txt"):
            edit(f, after(2))
    elif kind == "iemocap":
        for f in src.glob("Session*/dialog/transcriptions/*.txt"):
            edit(f, lambda line: re.sub(r"(?<=\]: )(.*)$", lambda m: m.group(1).replace(" ", sep), line))
    elif kind in ("commonvoice", "fsc"):  # only the sentence holds spaces
        for f in list(src.rglob("*.tsv")) + list(src.rglob("*_data.csv")):
            f.write_bytes(f.read_bytes().decode("utf-8").replace(" ", sep).encode("utf-8"))
    elif kind == "wenetspeech":
        meta = json.loads((src / "WenetSpeech.json").read_text(encoding="utf-8"))
        for audio in meta["audios"]:
            for seg in audio["segments"]:
                seg["text"] = seg["text"].replace(" ", sep)
        (src / "WenetSpeech.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")


@pytest.mark.parametrize("sep", ["\u2028", "\x85", "\u2029", "\x0b\x0c", "\x1c\x1d\x1e", "\r"],
                         ids=["U+2028", "U+0085", "U+2029", "VT-FF", "FS-GS-RS", "CR"])
@pytest.mark.parametrize("kind", TRANSCRIPT_KINDS)
def test_a_unicode_line_separator_inside_a_transcript_is_text_not_a_line_break(kind, sep, tmp_path, voices):
    """Issue 34.4: a transcript holding U+2028 was cut there and the rest became a phantom utterance, reported as a
    missing file. Lines end at \\n and \\r\\n only: the separator stays in its utterance's text, as written (a lone CR in a
    CSV table as a space), and the text rules make it a space."""
    from speechrq.text import normalize_text

    _minimal_tree(kind, tmp_path / "plain", voices)
    _minimal_tree(kind, tmp_path / "sep", voices)
    _separate(kind, tmp_path / "sep", sep)
    import_corpus(kind, tmp_path / "plain", tmp_path / "out_plain", workers=1, progress=False)
    _, report = import_corpus(kind, tmp_path / "sep", tmp_path / "out_sep", workers=1, progress=False)
    assert not report.skipped  # no phantom utterance, no line rejected
    plain, separated = _cut_table(tmp_path / "out_plain"), _cut_table(tmp_path / "out_sep")
    assert set(separated) == set(plain)
    for key, (speaker, text, *_) in plain.items():
        written = text.replace(" ", sep.replace("\r", " ") if kind == "fsc" else sep)
        assert separated[key][1] == written, (key, separated[key][1], written)
        assert normalize_text(separated[key][1]) == normalize_text(text)


def test_a_commonvoice_sentence_is_stored_stripped_of_surrounding_spaces_and_otherwise_as_written(tmp_path, voices):
    """Issue 34.10: a sentence no longer stripped of its surrounding spaces passed every importer test."""
    src = tmp_path / "cv"
    _minimal_tree("commonvoice", src, voices)
    (src / "ru" / "train.tsv").write_bytes("\ufeffclient_id\tpath\tsentence\r\nc0\tcommon_voice_ru_0.mp3\t  Привет,  мир!\u2028 \r\n"
                                           .encode("utf-8"))
    (src / "ru" / "dev.tsv").write_text("client_id\tpath\tsentence\tage\nc1\tcommon_voice_ru_1.mp3\t\"До\"\tthirties\n", encoding="utf-8")
    import_corpus("commonvoice", src, tmp_path / "out", workers=1, progress=False)
    table = _cut_table(tmp_path / "out")
    assert table["train", "common_voice_ru_0"][:3] == ("c0", "Привет,  мир!", "ru")
    speaker, text, language, custom, *_ = table["dev", "common_voice_ru_1"]
    assert (speaker, text, language, custom) == ("c1", '"До"', "ru", {"age": "thirties", "audio_sha256": custom["audio_sha256"]})
    assert table["test", "common_voice_ru_2"][1] == "привет мир"


def test_stored_transcripts_are_exactly_the_label_text(tmp_path, voices):
    """Issue 34.10: the exact stored text of every transcript importer (ids, speakers and texts a user relies on)."""
    src = tmp_path / "ls"
    chap = src / "train-clean-100" / "103" / "1240"
    _write(chap / "103-1240-0000.flac", voices[0][0])
    _write(chap / "103-1240-0001.flac", voices[1][0])
    (chap / "103-1240.trans.txt").write_text("103-1240-0000 HELLO  THERE \n\n103-1240-0001 GOOD\tNIGHT\n")
    import_corpus("librispeech", src, tmp_path / "ls_out", workers=1, progress=False)
    assert {k: v[:2] for k, v in _cut_table(tmp_path / "ls_out").items()} == {
        ("train-clean-100", "103-1240-0000"): ("103", "HELLO  THERE"), ("train-clean-100", "103-1240-0001"): ("103", "GOOD\tNIGHT")}

    src = tmp_path / "timit"
    _minimal_tree("timit", src, voices)
    wav = src / "data" / "TRAIN" / "DR1" / "FCJF0" / "SX0.WAV"
    wav.with_suffix(".TXT").write_text(f"0 {len(voices[0][0])} She had your  dark suit.\n")
    wav.with_suffix(".PHN").write_text("0 3200 h#\n3200 4800 sh\n")
    import_corpus("timit", src, tmp_path / "timit_out", workers=1, progress=False)
    speaker, text, _, _, alignment, _ = _cut_table(tmp_path / "timit_out")["train", "FCJF0-SX0"]
    assert (speaker, text) == ("FCJF0", "She had your  dark suit.")
    assert alignment["phone"] == [("h#", 0.0, 0.2), ("sh", 0.2, 0.1)] and alignment["word"] == [("word", 0.0, 0.0625)]

    src = tmp_path / "iemocap"
    _minimal_tree("iemocap", src, voices)
    (src / "Session1" / "dialog" / "transcriptions" / "Ses01F_impro01.txt").write_text(
        "Ses01F_impro01_F000 [000.0000-001.0000]:  Excuse me.  \n")
    import_corpus("iemocap", src, tmp_path / "iemocap_out", workers=1, progress=False)
    speaker, text, _, custom, _, _ = _cut_table(tmp_path / "iemocap_out")["session1", "Ses01F_impro01_F000"]
    assert (speaker, text, custom["emotion"], custom["session"]) == ("Ses01F", "Excuse me.", "neutral", "Session1")

    src = tmp_path / "mls"
    _minimal_tree("mlsuperb", src, voices)
    (src / "mls" / "eng" / "transcript_10min_train.txt").write_text("mls_eng_000000 A  hello   world \n")
    import_corpus("mlsuperb", src, tmp_path / "mls_out", workers=1, progress=False)
    assert _cut_table(tmp_path / "mls_out")["train_10min", "mls_eng_000000"][:3] == (None, "hello   world", "eng")

    src = tmp_path / "fsc"
    _minimal_tree("fsc", src, voices)
    table = src / "data" / "train_data.csv"
    table.write_text(table.read_text().replace("Turn on the lights", '"Turn on, the ""lights"""'))
    import_corpus("fsc", src, tmp_path / "fsc_out", workers=1, progress=False)
    speaker, text, _, custom, _, _ = _cut_table(tmp_path / "fsc_out")["train", "utt0"]
    assert (speaker, text, custom["intent"], custom["action"]) == ("spk0", 'Turn on, the "lights"', "activate|lights|none", "activate")


def _one_line_error(excinfo, *words) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and all(w in message for w in words), (message, words)
    return message


def test_a_label_file_that_loses_its_split_or_most_of_its_lines_is_an_error(tmp_path, voices):
    """Issue 34.4: a label file that loses a whole split (a header column not found, undecodable bytes) or more than
    half of its lines is a one-line error naming it, not a warning; fewer lost lines are reported as before."""
    # a Common Voice table whose header lacks client_id: the train split would be lost
    src = tmp_path / "cv"
    _minimal_tree("commonvoice", src, voices)
    (src / "ru" / "train.tsv").write_text("client\tpath\tsentence\nc0\tcommon_voice_ru_0.mp3\tпривет мир\n", encoding="utf-8")
    with pytest.raises(SpeechrqError) as e:
        import_corpus("commonvoice", src, tmp_path / "out_cv", progress=False)
    _one_line_error(e, str(src / "ru" / "train.tsv"), "client_id")
    assert not (tmp_path / "out_cv").exists()
    (src / "ru" / "train.tsv").unlink()  # a split's table missing
    with pytest.raises(SpeechrqError) as e:
        import_corpus("commonvoice", src, tmp_path / "out_cv", progress=False)
    _one_line_error(e, str(src / "ru" / "train.tsv"))
    # an FSC table without its transcription column
    src = tmp_path / "fsc"
    _minimal_tree("fsc", src, voices)
    table = src / "data" / "valid_data.csv"
    table.write_text(table.read_text().replace("transcription", "text"))
    with pytest.raises(SpeechrqError) as e:
        import_corpus("fsc", src, tmp_path / "out_fsc", progress=False)
    _one_line_error(e, str(table), "transcription")
    # IEMOCAP transcripts with undecodable bytes: named, not replaced
    src = tmp_path / "iemocap"
    _minimal_tree("iemocap", src, voices)
    tr = src / "Session2" / "dialog" / "transcriptions" / "Ses02F_impro01.txt"
    tr.write_bytes(b"Ses02F_impro01_F000 [000.0000-001.0000]: caf\xe9\n")
    with pytest.raises(SpeechrqError) as e:
        import_corpus("iemocap", src, tmp_path / "out_iemocap", progress=False)
    _one_line_error(e, str(tr), "UTF-8", "0xe9", "offset 44")
    tr.write_bytes(b"\xef\xbb\xbf" + tr.read_bytes())  # the offset counts the file's bytes, its byte-order mark too
    with pytest.raises(SpeechrqError) as e:
        import_corpus("iemocap", src, tmp_path / "out_iemocap", progress=False)
    _one_line_error(e, str(tr), "0xe9", "offset 47")
    # LibriSpeech, ML-SUPERB, VoxCeleb1: more than half of a file's lines rejected
    src = tmp_path / "ls"
    _minimal_tree("librispeech", src, voices)
    trans = src / "dev-clean" / "84" / "1240" / "84-1240.trans.txt"
    trans.write_text(trans.read_text() + "JUSTONEFIELD\nANOTHER\n")  # 2 of 4 lines: reported, the import goes on
    _, report = import_corpus("librispeech", src, tmp_path / "out_ls", progress=False)
    assert report.skipped[f"{trans}:3"].startswith("expected 'UTTERANCE-ID TRANSCRIPT'") and len(report.skipped) == 2
    assert _report(tmp_path / "out_ls")["problems"][f"{trans}:4"].startswith("expected 'UTTERANCE-ID TRANSCRIPT'")
    trans.write_text(trans.read_text() + "ATHIRD\n")  # 3 of 5
    with pytest.raises(SpeechrqError) as e:
        import_corpus("librispeech", src, tmp_path / "out_ls2", progress=False)
    _one_line_error(e, str(trans), "3 of 5")
    src = tmp_path / "mls"
    _minimal_tree("mlsuperb", src, voices)
    dev = src / "mls" / "eng" / "transcript_10min_dev.txt"
    dev.write_text(dev.read_text() + "bad\nworse\n")
    with pytest.raises(SpeechrqError) as e:
        import_corpus("mlsuperb", src, tmp_path / "out_mls", progress=False)
    _one_line_error(e, str(dev), "2 of 3")
    src = tmp_path / "vox"
    _minimal_tree("voxceleb1", src, voices)
    split = src / "iden_split.txt"
    split.write_text(split.read_text() + "4 id10001/vid0/00001.wav\n1\n2 a b\n")
    with pytest.raises(SpeechrqError) as e:
        import_corpus("voxceleb1", src, tmp_path / "out_vox", progress=False)
    _one_line_error(e, str(split), "3 of 5")
    # TIMIT: an utterance's own label files; a split losing most of its utterances is an error
    src = tmp_path / "timit"
    _minimal_tree("timit", src, voices)
    (src / "data" / "TRAIN" / "DR1" / "FCJF0" / "SX0.PHN").write_text("0 1000\n")
    with pytest.raises(SpeechrqError) as e:
        import_corpus("timit", src, tmp_path / "out_timit", progress=False)
    _one_line_error(e, "FCJF0", "SX0.PHN", "train")
    # WenetSpeech: most segments of its one label file unusable
    import json

    src = tmp_path / "wenet"
    _minimal_tree("wenetspeech", src, voices)
    meta = json.loads((src / "WenetSpeech.json").read_text())
    meta["audios"][0]["segments"] += [{"sid": "Y0000_S1", "text": "x", "subsets": ["L"]}, {"sid": "Y0000_S2", "begin_time": 1}]
    (src / "WenetSpeech.json").write_text(json.dumps(meta))
    _, report = import_corpus("wenetspeech", src, tmp_path / "out_wenet", progress=False)  # 2 of 4: reported
    assert len(report.skipped) == 2 and "Y0000_S2" in str(report.skipped)
    meta["audios"].append({"aid": "Y0009"})
    (src / "WenetSpeech.json").write_text(json.dumps(meta))
    with pytest.raises(SpeechrqError) as e:
        import_corpus("wenetspeech", src, tmp_path / "out_wenet2", progress=False)
    _one_line_error(e, str(src / "WenetSpeech.json"), "3 of 5")


# ---------------------------------------------------------------- the same recording in training and test


def test_a_commonvoice_clip_in_train_and_test_is_refused_unless_allowed_and_always_counted(tmp_path, voices, capsys):
    """Issue 34.5: a clip listed in both train.tsv and test.tsv was imported into both splits with no word."""
    from speechrq.cli import main

    src = tmp_path / "cv"
    _minimal_tree("commonvoice", src, voices)
    assert main(["data", "import", "commonvoice", str(src), str(tmp_path / "clean"), "--quiet", "--workers", "1"]) == 0
    assert _report(tmp_path / "clean")["overlap"] == {"allowed": False, "count": 0, "by_id": 0, "by_content": 0, "pairs": []}
    capsys.readouterr()
    with open(src / "ru" / "test.tsv", "a", encoding="utf-8") as f:
        f.write("c0\tcommon_voice_ru_0.mp3\tпривет мир\n")  # the train clip, listed for test too
    assert main(["data", "import", "commonvoice", str(src), str(tmp_path / "out"), "--quiet", "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "common_voice_ru_0" in err and "train" in err and "test" in err and "--allow-overlap" in err
    assert not (tmp_path / "out" / "cuts_train.jsonl.gz").exists() and not (tmp_path / "out" / "import_report.json").exists()
    assert main(["data", "import", "commonvoice", str(src), str(tmp_path / "out"), "--quiet", "--workers", "1", "--allow-overlap"]) == 0
    err = capsys.readouterr().err
    assert "1 recording" in err and "import_report.json" in err  # said, in one warning line
    overlap = _report(tmp_path / "out")["overlap"]
    assert (overlap["allowed"], overlap["count"], overlap["by_id"], overlap["by_content"]) == (True, 1, 1, 1)
    assert overlap["pairs"] == [{"held_out": "test/common_voice_ru_0", "other": "train/common_voice_ru_0", "by": ["id", "content"]}]
    assert {sup.id for c in load_cuts(tmp_path / "out", "test") for sup in c.supervisions} == {"common_voice_ru_0", "common_voice_ru_2"}
    assert json_summary(tmp_path / "out")["overlap"]["count"] == 1


def json_summary(out: Path) -> dict:
    import json

    return json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("kind", LABEL_KINDS)
def test_identical_audio_under_two_names_in_training_and_held_out_splits_is_caught_by_its_hash(kind, tmp_path, voices):
    """Issue 34.5: not only one id in two splits; two files with the same bytes, one for training and one held out (or,
    for IEMOCAP's leave-one-session-out folds, in two sessions) are the same recording."""
    import shutil

    src = tmp_path / "src"
    _minimal_tree(kind, src, voices)
    import_corpus(kind, src, tmp_path / "first", workers=1, progress=False)
    cuts = _cut_table(tmp_path / "first")
    from speechrq.data.corpus import cut_files

    sources = {split: {c.supervisions[0].id: c.recording.sources[0].source for c in load_cuts(tmp_path / "first", split)}
               for split in cut_files(tmp_path / "first")}
    held_out = sorted(s for s in sources if not s.startswith("train") and s != "session1")
    training = sorted(s for s in sources if s.startswith("train")) or ["session1"]
    (train_id, train_file), = list(sources[training[0]].items())[:1]
    (other_id, other_file), = list(sources[held_out[0]].items())[:1]
    assert train_file != other_file and (training[0], train_id) in cuts
    shutil.copyfile(train_file, other_file)  # another name, the same bytes
    with pytest.raises(SpeechrqError) as e:
        import_corpus(kind, src, tmp_path / "out", workers=1, progress=False)
    _one_line_error(e, str(src), "1 recording", f"{training[0]}/{train_id}", f"{held_out[0]}/{other_id}", "same audio")
    _, report = import_corpus(kind, src, tmp_path / "out", workers=1, progress=False, allow_overlap=True)
    overlap = _report(tmp_path / "out")["overlap"]
    assert (overlap["count"], overlap["by_id"], overlap["by_content"]) == (1, 0, 1)
    assert overlap["pairs"] == [{"held_out": f"{held_out[0]}/{other_id}", "other": f"{training[0]}/{train_id}", "by": ["content"]}]


def test_training_subsets_may_share_recordings_but_held_out_splits_may_not(tmp_path, voices):
    """Issue 34.5: ML-SUPERB's 10-minute set is part of its 1-hour set, WenetSpeech's S of M of L: allowed. The same
    utterance in dev and test, a WenetSpeech segment tagged for training and DEV, or a held-out segment overlapping a
    training segment of the same recording, is refused; another stretch of the same recording is not the same audio."""
    import json

    src = tmp_path / "mls"
    _mlsuperb_tree(src, voices)
    import_corpus("mlsuperb", src, tmp_path / "mls_out", workers=1, progress=False)  # mls_eng_000000 in train_10min and train_1h
    assert _report(tmp_path / "mls_out")["overlap"]["count"] == 0
    with open(src / "mls" / "eng" / "transcript_10min_test.txt", "a", encoding="utf-8") as f:
        f.write("mls_eng_000002 A good night\n")  # a dev utterance listed for test
    with pytest.raises(SpeechrqError) as e:
        import_corpus("mlsuperb", src, tmp_path / "mls_out2", progress=False)
    _one_line_error(e, "dev/mls_eng_000002", "test/mls_eng_000002")

    src = tmp_path / "wenet"
    _minimal_tree("wenetspeech", src, voices)  # Y0000: train_l, Y0001: dev
    meta = json.loads((src / "WenetSpeech.json").read_text())
    y0, y1 = meta["audios"][0]["segments"], meta["audios"][1]["segments"]
    y0[0]["subsets"] = ["S", "M", "L"]
    y1.append({"sid": "Y0001_S1", "begin_time": 0.9, "end_time": 1.05, "text": "好", "subsets": ["L"]})  # after the DEV segment
    (src / "WenetSpeech.json").write_text(json.dumps(meta))
    summary, _ = import_corpus("wenetspeech", src, tmp_path / "w_out", workers=1, progress=False)
    assert {k: v["utterances"] for k, v in summary["splits"].items()} == {"train_s": 1, "train_m": 1, "train_l": 2, "dev": 1}
    assert _report(tmp_path / "w_out")["overlap"]["count"] == 0
    y1[1]["begin_time"] = 0.8  # now it overlaps the DEV segment Y0001_S0 (0.1-0.9 s)
    (src / "WenetSpeech.json").write_text(json.dumps(meta))
    with pytest.raises(SpeechrqError) as e:
        import_corpus("wenetspeech", src, tmp_path / "w_out2", progress=False)
    _one_line_error(e, "train_l/Y0001_S1", "dev/Y0001_S0")
    y1[1]["begin_time"] = 0.9
    y0[0]["subsets"] = ["L", "DEV"]  # one segment tagged for training and held out
    (src / "WenetSpeech.json").write_text(json.dumps(meta))
    with pytest.raises(SpeechrqError) as e:
        import_corpus("wenetspeech", src, tmp_path / "w_out3", progress=False)
    _one_line_error(e, "train_l/Y0000_S0", "dev/Y0000_S0")
    _, report = import_corpus("wenetspeech", src, tmp_path / "w_out3", workers=1, progress=False, allow_overlap=True)
    assert _report(tmp_path / "w_out3")["overlap"]["count"] == 1


def test_a_voxceleb1_file_listed_for_two_splits_is_refused(tmp_path, voices):
    src = tmp_path / "vox"
    _minimal_tree("voxceleb1", src, voices)
    with open(src / "iden_split.txt", "a") as f:
        f.write("2 id10001/vid0/00001.wav\n")  # the training file, listed for dev too
    with pytest.raises(SpeechrqError) as e:
        import_corpus("voxceleb1", src, tmp_path / "out", progress=False)
    _one_line_error(e, "train/id10001-vid0-00001", "dev/id10001-vid0-00001", "--allow-overlap")


def test_a_commonvoice_row_with_more_fields_than_its_header_is_rejected_at_its_line(tmp_path, voices):
    """A tab inside a sentence makes a row longer than the header: it is named with its line, never read shifted or cut."""
    src = tmp_path / "cv"
    _minimal_tree("commonvoice", src, voices)
    (src / "ru" / "test.tsv").write_text("client_id\tpath\tsentence\n\nc2\tcommon_voice_ru_2.mp3\tпривет мир\n"
                                         "c9\tcommon_voice_ru_9.mp3\tпривет\tмир\n", encoding="utf-8")
    _, report = import_corpus("commonvoice", src, tmp_path / "out", workers=1, progress=False)
    assert report.skipped == {f"{src / 'ru' / 'test.tsv'}:4": "a row with missing fields (expected client_id, path, sentence, ... "
                                                              "separated by tabs)"}


def test_an_iemocap_utterance_line_that_does_not_parse_is_named_and_most_of_a_file_lost_is_an_error(tmp_path, voices):
    src = tmp_path / "iemocap"
    _minimal_tree("iemocap", src, voices)
    ev = src / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", "", ev.read_text().strip(), "C-E2:\tNeutral;\t()",
             "A-E3:\tval 3; act 2; dom  2;\t()", "[1.0 - 2.0]\tSes01F_impro01_M001\tfru\t[2.5, 2.5, 2.5]",
             "[2.0 - 3.0]\tSes01F_impro01_M002"]  # evaluators' lines are not utterances; a 4-class-less label is left out
    ev.write_text("\n".join(lines) + "\n")
    summary, report = import_corpus("iemocap", src, tmp_path / "out", workers=1, progress=False)
    assert report.skipped == {f"{ev}:7": "expected '[START - END]<TAB>UTTERANCE<TAB>EMOTION<TAB>[V, A, D]', "
                                         "got '[2.0 - 3.0]\\tSes01F_impro01_M002'"}
    assert summary["utterances"] == 2
    ev.write_text("\n".join(lines + ["[3.0 - 4.0] Ses01F_impro01_M003 neu", "[4.0 - 5.0]"]) + "\n")  # 3 of 5 lost
    with pytest.raises(SpeechrqError) as e:
        import_corpus("iemocap", src, tmp_path / "out2", progress=False)
    _one_line_error(e, str(ev), "3 of 5")
