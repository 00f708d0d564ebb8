"""Bad audio: every problem named with its file, good files never lost."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from speechrq.data.audio import AudioError, inspect_audio
from speechrq.data.batching import make_loader
from speechrq.data.corpus import load_cuts
from speechrq.data.recipes import import_corpus


def _tone(seconds=1.0, rate=16000, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t).astype(np.float32)
    return x if channels == 1 else np.stack([x, 0.5 * x], axis=1)


@pytest.fixture()
def messy_folder(tmp_path):
    root = tmp_path / "messy"
    (root / "sub").mkdir(parents=True)
    sf.write(root / "good1.wav", _tone(1.0), 16000, subtype="PCM_16")
    sf.write(root / "sub" / "good2.flac", _tone(1.5), 16000)
    sf.write(root / "narrow.wav", _tone(1.0, rate=8000), 8000, subtype="PCM_16")
    sf.write(root / "stereo.wav", _tone(1.0, channels=2), 16000, subtype="PCM_16")
    (root / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEnot really audio at all" * 3)
    (root / "empty.wav").write_bytes(b"")
    nan = _tone(0.5)
    nan[100] = np.nan
    sf.write(root / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(root / "whole.wav", _tone(1.0), 16000, subtype="PCM_16")
    data = (root / "whole.wav").read_bytes()
    (root / "truncated.wav").write_bytes(data[: len(data) // 2])
    (root / "whole.wav").unlink()
    sf.write(root / "silence0.wav", np.zeros(0, np.float32), 16000, subtype="PCM_16")
    return root


def test_folder_import_keeps_the_good_and_reports_the_rest(messy_folder, tmp_path):
    summary, report = import_corpus("folder", messy_folder, tmp_path / "out", workers=2, progress=False)
    assert report.kept == 4
    problems = {p.split("/")[-1]: why for p, why in report.skipped.items()}
    assert set(problems) == {"corrupt.wav", "empty.wav", "nan.wav", "truncated.wav", "silence0.wav"}
    assert "unreadable" in problems["corrupt.wav"]
    assert "empty" in problems["empty.wav"]
    assert "non-finite" in problems["nan.wav"]
    assert "truncated" in problems["truncated.wav"]
    assert "zero-length" in problems["silence0.wav"]
    assert any("resampled from 8000" in n for n in report.converted)
    assert any("down-mixed from 2" in n for n in report.converted)
    assert summary["utterances"] == 4
    assert (tmp_path / "out" / "import_report.json").exists()
    text = report.format()
    assert "corrupt.wav" in text and "4 files kept, 5 skipped" in text

    # The loader hands every kept file over at 16 kHz, mono, with its true length.
    cuts = load_cuts(tmp_path / "out", "train")
    lengths = {}
    for batch in make_loader(cuts, max_duration=100, shuffle=False):
        assert batch["audio"].dim() == 2
        for cut, n in zip(batch["cuts"], batch["audio_lens"].tolist()):
            lengths[cut.recording.id] = n
    assert lengths["narrow"] == 16000 and lengths["stereo"] == 16000 and lengths["sub__good2"] == 24000


def test_inspect_audio_names_the_file(tmp_path):
    with pytest.raises(AudioError) as e:
        inspect_audio(tmp_path / "missing.wav")
    assert str(e.value) == f"{tmp_path / 'missing.wav'}: no such file"


def test_loader_skips_a_file_that_went_bad_after_import(messy_folder, tmp_path, caplog):
    import_corpus("folder", messy_folder, tmp_path / "out", workers=1, progress=False)
    (messy_folder / "good1.wav").write_bytes(b"garbage")
    cuts = load_cuts(tmp_path / "out", "train")
    loader = make_loader(cuts, max_duration=100, shuffle=False)
    ids = [c.recording.id for batch in loader for c in batch["cuts"]]
    assert "good1" not in ids and len(ids) == 3
    assert loader.dataset.skipped == 1
    assert any("good1.wav" in r.getMessage() and "unreadable" in r.getMessage() for r in caplog.records)


def test_the_bad_audio_holdout_imports_with_every_good_file_kept_and_every_bad_one_named(tmp_path, monkeypatch):
    """Issue 12's holdout, through the CLI: exit 0, no traceback, each bad file named with its problem."""
    import os
    import subprocess
    import sys

    root = tmp_path / "holdout"
    (root / "dir with spaces").mkdir(parents=True)
    good = {
        "plain.wav": (_tone(1.0), 16000, "PCM_16"),
        "narrow 8k.wav": (_tone(1.0, rate=8000), 8000, "PCM_16"),
        "stereo_44k.wav": (_tone(1.0, rate=44100, channels=2), 44100, "PCM_16"),
        "deep24.wav": (_tone(1.0), 16000, "PCM_24"),
        "float.wav": (_tone(1.0), 16000, "FLOAT"),
        "dir with spaces/ünïcødé ñame.flac": (_tone(1.2), 16000, "PCM_16"),
    }
    for name, (x, rate, subtype) in good.items():
        sf.write(root / name, x, rate, subtype=subtype)
    (root / "empty.wav").write_bytes(b"")
    nan, inf = _tone(0.5), _tone(0.5)
    nan[10], inf[20] = np.nan, np.inf
    sf.write(root / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(root / "inf.wav", inf, 16000, subtype="FLOAT")
    (root / "garbage.wav").write_bytes(os.urandom(3000))
    sf.write(root / "whole.flac", _tone(2.0), 16000)
    data = (root / "whole.flac").read_bytes()
    (root / "truncated.flac").write_bytes(data[: len(data) // 3])
    (root / "whole.flac").unlink()
    sf.write(root / "header_only.wav", np.zeros(0, np.float32), 16000, subtype="PCM_16")
    sf.write(root / "blip.wav", _tone(0.03), 16000, subtype="PCM_16")  # 30 ms: shorter than the import minimum
    sf.write(root / "locked.wav", _tone(1.0), 16000, subtype="PCM_16")
    os.chmod(root / "locked.wav", 0)
    bad = {"empty.wav": "empty", "nan.wav": "non-finite", "inf.wav": "non-finite", "garbage.wav": "unreadable",
           "truncated.flac": "unreadable", "header_only.wav": "zero-length", "blip.wav": "too short", "locked.wav": "cannot open"}
    if os.geteuid() == 0:  # root reads a 0o000 file anyway: make its open fail as a user's would
        sitecustomize = tmp_path / "site" / "sitecustomize.py"
        sitecustomize.parent.mkdir()
        sitecustomize.write_text(
            "import builtins, errno\n_open = builtins.open\n"
            "def _locked(f, *a, **k):\n"
            "    if str(f).endswith('locked.wav'):\n"
            "        raise PermissionError(errno.EACCES, 'Permission denied', str(f))\n"
            "    return _open(f, *a, **k)\nbuiltins.open = _locked\n")
        env = dict(os.environ, PYTHONPATH=f"{sitecustomize.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        bad["locked.wav"] = "cannot open"
    else:
        env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "speechrq", "data", "import", "folder", str(root), str(tmp_path / "out"), "--quiet"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert f"{len(good)} files kept, {len(bad)} skipped" in r.stdout
    import json

    problems = {p.split("/")[-1]: why for p, why in json.loads((tmp_path / "out" / "import_report.json").read_text())["problems"].items()}
    assert set(problems) == set(bad)
    for name, word in bad.items():
        assert word in problems[name], (name, problems[name])
    assert {c.supervisions[0].duration > 0.9 for c in load_cuts(tmp_path / "out", "train")} == {True}


def test_label_files_that_cannot_be_read_are_named_and_the_import_goes_on(tmp_path):
    src = tmp_path / "LibriSpeech" / "dev-clean"
    for spk, chapter, text in (("84", "121123", "HELLO WORLD".encode()), ("85", "200", "CAF\xc9 AU LAIT".encode("latin-1"))):
        d = src / spk / chapter
        d.mkdir(parents=True)
        sf.write(d / f"{spk}-{chapter}-0000.flac", _tone(1.0), 16000)
        (d / f"{spk}-{chapter}.trans.txt").write_bytes(f"{spk}-{chapter}-0000 ".encode() + text + b"\n")
    (src / "84" / "121123" / "84-121123.trans.txt").write_text("84-121123-0000 HELLO WORLD\nJUSTONEFIELD\n")
    # issue 34.4: a file that cannot be decoded loses all its lines: one line naming it and the byte, not a skipped entry
    from speechrq.errors import SpeechrqError

    with pytest.raises(SpeechrqError, match=r"85-200\.trans\.txt: not UTF-8 text \(byte 0xc9 at offset 15\)") as e:
        import_corpus("librispeech", src.parent, tmp_path / "out", workers=1, progress=False)
    assert "\n" not in str(e.value)
    (src / "85" / "200" / "85-200.trans.txt").write_text("85-200-0000 CAFÉ AU LAIT\n", encoding="utf-8")
    summary, report = import_corpus("librispeech", src.parent, tmp_path / "out", workers=1, progress=False)
    assert summary["utterances"] == 2  # a malformed line (1 of 2) is named and the import goes on
    problems = {p.split("/")[-1]: why for p, why in report.skipped.items()}
    assert "expected 'UTTERANCE-ID TRANSCRIPT'" in problems["84-121123.trans.txt:2"] and len(problems) == 1


# ---------------------------------------------------------------- valid audio: finite, no absurd amplitude


def _noise(scale, seconds=0.5, seed=0):
    return np.random.default_rng(seed).standard_normal(int(seconds * 16000)) * scale


def test_valid_audio_is_finite_with_a_peak_of_at_most_max_peak():
    from speechrq.data.audio import MAX_PEAK, audio_problem

    assert audio_problem(np.full(10, 32767 / 32768, np.float32)) is None  # int16 full scale, as decoded
    assert audio_problem(np.array([0.0, MAX_PEAK, -MAX_PEAK])) is None  # the bound itself is valid
    assert audio_problem(np.zeros(0, np.float32)) is None
    assert "absurd amplitude" in audio_problem(np.array([0.0, -MAX_PEAK * 1.01]))  # negative peaks count
    assert "2 non-finite" in audio_problem(np.array([[0.1, np.nan], [np.inf, 0.2]]))  # any shape (channels)
    assert "divide them by 32768" in audio_problem(np.array([0.0, 20000.0]))  # the int16 scale in a float file
    assert "divide" not in audio_problem(np.array([1e20]))


def test_absurd_and_nonfinite_audio_is_named_and_skipped_at_import(tmp_path):
    """Issue 21: white noise x 1e20 in a float WAV was imported as good; the same kind in other shapes too."""
    root = tmp_path / "loud"
    root.mkdir()
    kept = {"tone.wav": (_tone(1.0), "PCM_16"), "hot.wav": (_noise(0.2) * 20, "FLOAT"),  # peaks ~15: headroom, kept
            "double.wav": (_tone(1.0).astype(np.float64), "DOUBLE")}
    bad = {"noise_1e20.wav": (_noise(1e20), "FLOAT", "absurd amplitude"), "noise_1e20_double.wav": (_noise(1e20), "DOUBLE", "absurd amplitude"),
           "noise_1e300_double.wav": (_noise(1e300), "DOUBLE", "absurd amplitude"),  # past float32: must not turn into inf
           "noise_1e6.wav": (_noise(1e6), "FLOAT", "absurd amplitude"), "int16_scale.wav": (_tone(1.0) * 32768, "FLOAT", "divide them by 32768"),
           "inf.wav": (np.where(np.arange(8000) == 5, np.inf, _noise(0.1)), "FLOAT", "1 non-finite")}
    for name, (x, subtype) in kept.items():
        sf.write(root / name, x, 16000, subtype=subtype)
    for name, (x, subtype, _) in bad.items():
        sf.write(root / name, x, 16000, subtype=subtype)
    summary, report = import_corpus("folder", root, tmp_path / "out", workers=2, progress=False)
    assert report.kept == len(kept) and summary["utterances"] == len(kept)
    problems = {p.split("/")[-1]: why for p, why in report.skipped.items()}
    assert set(problems) == set(bad)
    for name, (*_, word) in bad.items():
        assert word in problems[name], (name, problems[name])
    peak = float(np.abs(_noise(1e20)).astype(np.float32).max())
    assert f"peak at {peak:.3g}" in problems["noise_1e20.wav"] and "e+20" in problems["noise_1e20.wav"]  # the peak is named
    with pytest.raises(AudioError, match=r"noise_1e6\.wav: absurd amplitude: samples peak at [0-9.]+e\+06"):
        inspect_audio(root / "noise_1e6.wav")


@pytest.mark.parametrize("x, subtype, word", [(_noise(1e20), "FLOAT", "absurd amplitude"), (_noise(1e6), "DOUBLE", "absurd amplitude"),
                                              (np.full(8000, np.inf), "FLOAT", "non-finite")])
def test_the_loader_skips_audio_that_became_absurd_after_import_and_names_it(tmp_path, caplog, x, subtype, word):
    root = tmp_path / "src"
    root.mkdir()
    for name in ("a", "b", "c"):
        sf.write(root / f"{name}.wav", _tone(1.0), 16000, subtype="PCM_16")
    import_corpus("folder", root, tmp_path / "out", workers=1, progress=False)
    sf.write(root / "b.wav", x, 16000, subtype=subtype)  # same name, now garbage
    ids, audio_peak = [], 0.0
    for batch in make_loader(load_cuts(tmp_path / "out", "train"), max_duration=100, shuffle=False):
        ids += [c.recording.id for c in batch["cuts"]]
        audio_peak = max(audio_peak, float(batch["audio"].abs().max()))
    assert sorted(ids) == ["a", "c"] and audio_peak < 1.0
    assert any("b.wav" in r.getMessage() and word in r.getMessage() for r in caplog.records)


def test_transcribing_a_file_that_is_not_valid_audio_is_a_one_line_error(tmp_path):
    from speechrq.asr.decode import read_audio
    from speechrq.errors import SpeechrqError

    sf.write(tmp_path / "loud.wav", _noise(1e20), 16000, subtype="FLOAT")
    with pytest.raises(SpeechrqError, match=r"loud\.wav: absurd amplitude") as e:
        read_audio(tmp_path / "loud.wav")
    assert "\n" not in str(e.value)
    sf.write(tmp_path / "ok.wav", _tone(1.0), 16000, subtype="FLOAT")
    assert read_audio(tmp_path / "ok.wav").shape == (16000,)
