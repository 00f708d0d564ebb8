"""De-duplication and sentencepiece BPE over single-stream units (RPQ paper, section III and Table VI).

Units become characters for sentencepiece as ``chr(0xF0000 + id)`` (Unicode's
supplementary private-use plane: one code point per unit, never a surrogate, no
clash with text), one utterance per sentence without spaces, so merges can span a
whole utterance as ESPnet's asr2 recipes allow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SpeechrqError

UNIT_CHAR_BASE = 0xF0000
MAX_UNITS = 0xFFFFE - UNIT_CHAR_BASE


def deduplicate(units: np.ndarray) -> np.ndarray:
    """Consecutive repeats removed: ``[5, 5, 7, 7, 7, 5] -> [5, 7, 5]`` (``[T]`` or ``[T, M]``: a frame repeats when all streams do)."""
    u = np.asarray(units)
    if len(u) == 0:
        return u
    same = (u[1:] == u[:-1]) if u.ndim == 1 else (u[1:] == u[:-1]).all(1)
    return u[np.concatenate([[True], ~same])]


def units_to_text(units: np.ndarray) -> str:
    """``[T]`` unit ids -> one character per unit."""
    u = np.asarray(units, dtype=np.int64)
    if len(u) and int(u.max()) >= MAX_UNITS:
        raise SpeechrqError(f"unit id {int(u.max())}: BPE takes ids below {MAX_UNITS}")
    return "".join(map(chr, (u + UNIT_CHAR_BASE).tolist()))


def train_bpe(texts: list[str], vocab_size: int, path: str | Path) -> Path:
    """Train sentencepiece BPE over unit strings; writes ``path`` (``.model``), returns it."""
    from ..text import train_sentencepiece

    alphabet = len(set("".join(texts)))
    if vocab_size <= alphabet:
        raise SpeechrqError(f"--bpe {vocab_size}: must exceed the {alphabet} distinct units seen, or BPE merges nothing")
    return train_sentencepiece(texts, vocab_size, path, split_by_whitespace=False, max_sentence_length=1 << 20,
                               max_sentencepiece_length=64, add_dummy_prefix=False)


def load_bpe(path: str | Path):
    import sentencepiece as spm

    if not Path(path).exists():
        raise SpeechrqError(f"{path}: no BPE model")
    return spm.SentencePieceProcessor(model_file=str(path))


def encode_bpe(sp, units: np.ndarray) -> list[int]:
    """``[T]`` units -> BPE token ids."""
    return sp.encode(units_to_text(units))
