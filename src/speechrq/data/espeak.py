"""A thin ctypes binding to libespeak-ng, shipped with its data by ``espeakng-loader``.

Only the synchronous API is used: ``espeak_Synth`` returns once the whole text is
spoken, the samples and events having been handed to our callback on the way.

espeak-ng keeps hidden state between calls (wave-generator phases, flutter tables,
its random generator), so the same text does not give the same samples twice in
one process. The output *is* a pure function of the sequence of calls made since
the library was loaded, so deterministic corpora load the library in a fresh
process and make their calls in a fixed order (see :mod:`speechrq.data.synth`).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

from ..errors import SpeechrqError

# espeak_AUDIO_OUTPUT and initialisation options (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_BUFFER_MS = 1000  # callback buffer: long buffers mean few Python callbacks
# espeak_EVENT_TYPE
EVENT_LIST_TERMINATED = 0
EVENT_WORD = 1
EVENT_SENTENCE = 2
EVENT_END = 5
EVENT_MSG_TERMINATED = 6
EVENT_PHONEME = 7
# espeak_PARAMETER
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character position in the text
        ("length", ctypes.c_int),  # characters, for word events
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),  # samples since the start of this message
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Prosody:
    """espeak-ng's prosody parameters, all set before every utterance.

    They carry over between voice changes inside the library, so leaving one unset
    would silently inherit the previous speaker's value.
    """

    rate: int  # words per minute, 80..450
    pitch: int  # base pitch, 0..100
    range: int  # pitch range, 0..100
    volume: int  # 0..200, 100 = normal


@dataclass
class Synthesis:
    """Samples and events of one utterance, at :attr:`Espeak.sample_rate`."""

    samples: np.ndarray  # int16 [num_samples]
    phones: list[tuple[str, int]]  # (espeak phoneme mnemonic, start sample)
    words: list[tuple[int, int, int]]  # (text position (1-based), length in chars, start sample)


# espeak-ng's breath noise (the "breath" line of a variant) is not reproducible: the same utterance
# differs between processes started apart in time, and libc's srand does not reach it. These
# variants keep their timbre (formants, pitch, echo, roughness) without it, as "<name>-still".
BREATHLESS = ("f2", "f3", "f5", "victor")
STILL = "-still"


def data_path() -> str:
    """espeak-ng's data, plus the breath-free variants of :data:`BREATHLESS`.

    The package's data directory is read-only in spirit, so a mirror of symbolic links
    to it is made once under ``~/.cache/speechrq`` (or ``$SPEECHRQ_CACHE``), with the
    extra variant files in its own ``voices/!v``.
    """
    import hashlib
    import os
    import tempfile
    from pathlib import Path

    import espeakng_loader

    src = Path(espeakng_loader.get_data_path())
    variants = src / "voices" / "!v"
    extra = {f"{v}{STILL}": "".join(line for line in (variants / v).read_text().splitlines(keepends=True)
                                     if line.split()[:1] not in (["breath"], ["breathw"]))
             for v in BREATHLESS}
    key = hashlib.sha256((str(src) + repr(sorted(extra.items()))).encode()).hexdigest()[:12]
    root = Path(os.environ.get("SPEECHRQ_CACHE", Path.home() / ".cache" / "speechrq")) / f"espeak-ng-data-{key}"
    if (root / ".complete").exists():
        return str(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".espeak-ng-data-", dir=root.parent))
    for entry in src.iterdir():
        if entry.name != "voices":
            (tmp / entry.name).symlink_to(entry)
    (tmp / "voices" / "!v").mkdir(parents=True)
    for entry in (src / "voices").iterdir():
        if entry.name != "!v":
            (tmp / "voices" / entry.name).symlink_to(entry)
    for entry in variants.iterdir():
        (tmp / "voices" / "!v" / entry.name).symlink_to(entry)
    for name, text in extra.items():
        (tmp / "voices" / "!v" / name).write_text(text)
    (tmp / ".complete").write_text("")
    try:
        os.replace(tmp, root)  # another process may have won the race: then use its copy
    except OSError:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return str(root)


class Espeak:
    """One initialised libespeak-ng in this process.

    Create at most one per process: the library is a process-wide singleton.
    """

    def __init__(self) -> None:
        import espeakng_loader

        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_GetCurrentVoice.restype = ctypes.POINTER(_Voice)
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        data = data_path().encode()
        rate = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data, _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed with {rate} (data at {data.decode()})")
        self.sample_rate = int(rate)
        self._voice = ""
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, bytes]] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: C holds only a pointer
        self._lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.frombuffer(ctypes.string_at(wav, 2 * num_samples), dtype=np.int16))
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type in (EVENT_PHONEME, EVENT_WORD):
                name = e.id.string if e.type == EVENT_PHONEME else b""
                self._events.append((e.type, e.text_position, e.length, e.sample, name))
            i += 1
        return 0  # 0 = continue synthesis

    def set_voice(self, name: str) -> str:
        """Select a voice such as ``en-gb-scotland+f2``; returns espeak's identifier.

        espeak-ng ignores an unknown variant without an error (``en-us+M3`` silently
        gives plain ``en-us``), so the identifier actually set is checked.
        """
        rc = self._lib.espeak_SetVoiceByName(name.encode())
        voice = self._lib.espeak_GetCurrentVoice()
        identifier = voice.contents.identifier.decode() if voice and voice.contents.identifier else ""
        language, _, variant = name.partition("+")
        got_language, _, got_variant = identifier.rpartition("/")[2].partition("+")
        if rc != 0 or got_language.lower() != language.lower() or got_variant != variant:
            raise SpeechrqError(f"espeak-ng voice {name!r}: not available (espeak selected {identifier!r})")
        return identifier

    def synthesize(self, text: str, voice: str, prosody: Prosody) -> Synthesis:
        if voice != self._voice:  # loading a voice costs as much as a short utterance
            self.set_voice(voice)
            self._voice = voice
        for param, value in ((_RATE, prosody.rate), (_VOLUME, prosody.volume), (_PITCH, prosody.pitch), (_RANGE, prosody.range)):
            self._lib.espeak_SetParameter(param, int(value), 0)
        self._chunks.clear()
        self._events.clear()
        data = text.encode("utf-8")
        rc = self._lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
        if rc != 0:
            raise RuntimeError(f"espeak_Synth failed with {rc} for {text!r}")
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        phones = [(name.decode(), sample) for kind, _, _, sample, name in self._events if kind == EVENT_PHONEME]
        words = [(pos, length, sample) for kind, pos, length, sample, _ in self._events if kind == EVENT_WORD]
        return Synthesis(samples=samples, phones=phones, words=words)
