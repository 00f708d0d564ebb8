"""Audio checks: every importer and loader meets bad audio with a clear message.

:func:`inspect_audio` decodes a file completely (headers alone miss truncation and
NaNs) and either returns a lhotse ``Recording`` plus notes on what will be fixed
on the fly (resampling to 16 kHz, down-mixing to mono), or raises
:class:`AudioError` naming the file and the problem. :func:`inspect_many` runs it
over many files in parallel and keeps going past bad ones, so one bad file never
stops an import or loses the good ones.

**Valid audio** is defined once, by :func:`audio_problem`, and checked wherever audio
enters: at import (:func:`inspect_audio`), in the loader
(:class:`speechrq.data.batching.AudioBatches`) and for user files at inference
(:func:`speechrq.asr.decode.read_audio`). Samples are floats on the full scale of
[-1, 1] (integer PCM is mapped there by the decoder, so it is always valid); they must
all be finite, and the peak ``|x|`` may not exceed :data:`MAX_PEAK` = 1000, i.e.
60 dB above full scale. A float file may legitimately go a little past 1.0 (mixing
headroom, resampler overshoot: peaks of 2-30 at most in practice); a peak of 1000 or
more is not sound but a wrong scale (samples written on the int16 scale, up to 32768)
or garbage (white noise times 1e20), and would dominate the corpus's log-Mel
statistics (log-Mel itself overflows float32 only near 1e12, so the bound keeps nine
orders of magnitude of margin).
"""

from __future__ import annotations

import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ..frames import SAMPLE_RATE as TARGET_RATE  # every file is resampled to it when loaded
MIN_DURATION = 0.1  # seconds: shorter files are rejected at import (a speech encoder frame is 40 ms, a window 25 ms)
MAX_PEAK = 1000.0  # largest valid |sample| (full scale is 1.0): 60 dB of headroom; see the module docstring
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".sph", ".aiff", ".aif")


class AudioError(Exception):
    """A file that cannot be used; ``str()`` names the file and the problem."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def audio_problem(samples: np.ndarray) -> str | None:
    """What makes decoded samples (floats, full scale 1.0, any shape) invalid audio, or None when they are valid.

    Invalid: any NaN or inf sample, or a peak ``|x|`` above :data:`MAX_PEAK`. Two reductions, no copy
    of the samples unless one is non-finite (then they are counted).
    """
    if samples.size == 0:
        return None
    hi, lo = float(np.max(samples)), float(np.min(samples))
    if not (np.isfinite(hi) and np.isfinite(lo)):
        bad = int(samples.size - np.count_nonzero(np.isfinite(samples)))
        return f"{bad} non-finite (NaN or inf) samples"
    peak = max(abs(hi), abs(lo))
    if peak > MAX_PEAK:
        hint = ": samples on the int16 scale? divide them by 32768" if peak <= 32768.0 else ""
        return (f"absurd amplitude: samples peak at {peak:.3g}, over {MAX_PEAK:g} times full scale "
                f"(float audio is full scale at 1.0{hint})")
    return None


def _riff_truncation(path: Path) -> str | None:
    """libsndfile quietly shortens a WAV whose data chunk is cut off; catch that here."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                have = size - pos - 8
                if chunk_size != 0xFFFFFFFF and have < chunk_size:
                    return f"truncated: the header announces {chunk_size} bytes of audio, the file holds {have}"
                return None
            pos += 8 + chunk_size + (chunk_size & 1)
    return None


def inspect_audio(path: str | os.PathLike, recording_id: str | None = None):
    """Decode ``path`` fully and describe it as a lhotse Recording.

    Returns ``(recording, notes)``; ``notes`` lists the conversions the loader will
    make (resampling, down-mixing). Raises :class:`AudioError` for unusable files:
    unreadable, truncated, empty, or not valid audio (:func:`audio_problem`: non-finite
    samples or an absurd amplitude).
    """
    import soundfile as sf
    from lhotse import Recording
    from lhotse.audio import AudioSource

    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "no such file")
    try:
        if path.stat().st_size == 0:
            raise AudioError(path, "empty file (0 bytes)")
        truncated = _riff_truncation(path)
    except OSError as e:  # e.g. no read permission
        raise AudioError(path, f"cannot open ({e.strerror or e})") from None
    if truncated:
        raise AudioError(path, truncated)
    try:
        with sf.SoundFile(path) as f:
            rate, channels, frames = f.samplerate, f.channels, f.frames
            # float64 files are checked in float64: a huge finite sample must not turn into inf on the way
            data = f.read(dtype="float64" if f.subtype == "DOUBLE" else "float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as e:
        raise AudioError(path, f"unreadable audio ({str(e).split(': ', 1)[-1].strip()})") from None
    if data.shape[0] == 0:
        raise AudioError(path, "zero-length audio (no samples)")
    if frames > 0 and data.shape[0] < frames:
        raise AudioError(path, f"truncated: the header announces {frames} samples, {data.shape[0]} could be decoded")
    problem = audio_problem(data)
    if problem:
        raise AudioError(path, problem)
    if data.shape[0] < MIN_DURATION * rate:
        raise AudioError(path, f"too short ({data.shape[0] / rate:.3f} s; at least {MIN_DURATION} s)")
    notes = []
    if rate != TARGET_RATE:
        notes.append(f"resampled from {rate} Hz")
    if channels > 1:
        notes.append(f"down-mixed from {channels} channels")
    n = data.shape[0]
    recording = Recording(
        id=recording_id or path.stem,
        sources=[AudioSource(type="file", channels=list(range(channels)), source=str(path))],
        sampling_rate=rate,
        num_samples=n,
        duration=n / rate,
    )
    return recording, notes


@dataclass
class InspectionReport:
    """What an import kept, fixed and skipped, for the summary and ``import_report.json``."""

    kept: int = 0
    converted: dict[str, list[str]] = field(default_factory=dict)  # note -> files
    skipped: dict[str, str] = field(default_factory=dict)  # file -> problem
    digests: dict[str, str] = field(default_factory=dict)  # recording id -> its file's fingerprint (speechrq.io.file_fingerprint)

    def to_dict(self) -> dict:
        return {"kept": self.kept, "skipped": len(self.skipped), "problems": self.skipped, "converted": self.converted}

    def format(self) -> str:
        lines = [f"audio: {self.kept} files kept, {len(self.skipped)} skipped"]
        for note, files in sorted(self.converted.items()):
            lines.append(f"  {len(files)} {note.split(' from')[0]} ({note}): {', '.join(files[:3])}{' ...' if len(files) > 3 else ''}")
        for path, problem in self.skipped.items():
            lines.append(f"  skipped {path}: {problem}")
        return "\n".join(lines)


def inspect_many(items: Iterable[tuple[str | os.PathLike, str]], workers: int = 4, progress: bool = True):
    """Inspect ``(path, recording_id)`` pairs in parallel, in order.

    Returns ``({recording_id: Recording}, InspectionReport)``; bad files are in the
    report, not in the result, and each kept file's content fingerprint is in
    ``report.digests`` (hashed right after decoding, while the file is in the page cache).
    Decoding happens in libsndfile and hashing in hashlib, which release the GIL, so
    threads use every core.
    """
    from tqdm import tqdm

    from ..io import file_fingerprint

    items = list(items)
    report = InspectionReport()
    found = {}

    def one(item):
        path, rid = item
        try:
            recording, notes = inspect_audio(path, rid)
            return rid, path, (recording, notes, file_fingerprint(path)), None
        except AudioError as e:
            return rid, path, None, e.problem
        except Exception as e:  # a decoder's surprise must not stop the import or lose the good files
            return rid, path, None, f"unexpected error ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for rid, path, result, problem in tqdm(pool.map(one, items), total=len(items), desc="checking audio", unit="file", disable=not progress):
            if problem is not None:
                report.skipped[str(path)] = problem
                continue
            recording, notes, report.digests[rid] = result
            found[rid] = recording
            report.kept += 1
            for note in notes:
                report.converted.setdefault(note, []).append(str(path))
    return found, report
