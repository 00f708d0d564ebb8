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
