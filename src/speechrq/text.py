"""Text and tokens, shared by the evaluation probes and discrete-unit ASR, in every script.

- :func:`normalize_text`: how every transcript is compared and modelled, in any language
  (the rules are in its docstring);
- :func:`char_inventory`: the characters a set of training transcripts uses: the output
  units of the CTC probes and of character ASR (never a fixed alphabet);
- :func:`greedy_ctc`: best CTC path, repeats merged, blanks (index 0) removed;
- :func:`error_rate`: WER or CER (or PER over space-separated phones) by jiwer, with an
  empty hypothesis counted as all deletions;
- :class:`BPETokenizer`: sentencepiece BPE over normalised transcripts (ASR output tokens).
"""

from __future__ import annotations

import logging
import unicodedata
from pathlib import Path

import regex
import torch

from .errors import SpeechrqError
from .io import atomic_path

log = logging.getLogger(__name__)

# The English alphabet of the embedded corpus: tests and examples only; vocabularies come from
# the training transcripts (char_inventory).
CHARS = " abcdefghijklmnopqrstuvwxyz'"

# Scripts written without spaces between words: a space between two of their characters is
# dropped, so CER counts their characters as ML-SUPERB and WenetSpeech score them.
SPACELESS_SCRIPTS = ("Han", "Hiragana", "Katakana", "Thai", "Lao", "Myanmar", "Khmer", "Tibetan")
_SPACELESS = "".join(rf"\p{{{s}}}" for s in SPACELESS_SCRIPTS)
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u02bc": "'", "\uff07": "'"})  # right single quote, modifier letter, full-width
_NOT_OTHER_NUMBER = regex.compile(r"[^\p{No}]+")  # NFKC would turn ½ into "1⁄2" and 10⁵ into "105"
# written but not read: format characters (ZWJ, ZWNJ, soft hyphen, direction marks), variation selectors, tatweel
_INVISIBLE = regex.compile(r"[\p{Cf}\uFE00-\uFE0F\U000E0100-\U000E01EF\u0640]+")
_DROP = regex.compile(r"[^\p{L}\p{M}\p{N}' ]+")  # everything but letters, marks, digits, the apostrophe
_ORPHAN = regex.compile(r"(?<![\p{L}\p{N}\p{M}])\p{M}+")  # marks left on nothing (an emoji's skin tone, say)
_LONE_APOSTROPHE = regex.compile(r"(?<!\p{L})'+(?!\p{L})")
_GAP = regex.compile(rf"(?<=[{_SPACELESS}]) (?=[{_SPACELESS}])")
_SPACELESS_CHAR = regex.compile(rf"[{_SPACELESS}]")


def normalize_text(text: str | None) -> str:
    r"""A transcript as speechrq compares and models it, in any script.

    The rules, in order:

    1. Unicode NFKC (full-width and compatibility forms to their plain letters and digits,
       ligatures split, ``"２"`` to ``"2"``), except numbers such as ``½`` and ``⁵`` (``\p{No}``),
       which NFKC would turn into other numbers (``"1 2"``, and ``"105"`` from ``"10⁵"``); the
       apostrophes ``’``, ``ʼ`` and ``＇`` read as ``'``.
    2. Lower case where the script has case (Unicode's lowercase mapping: ``"CAFÉ"`` to
       ``"café"``; ``ß`` and a final ``ς`` stay as written; ``"İ"`` to ``"i"``).
    3. Characters written but not read are removed: format characters (zero-width joiners and
       non-joiners, soft hyphens, direction marks), variation selectors and the Arabic tatweel, so
       ``"می‌خواهم"`` stays one word.
    4. Letters (``\p{L}``) and combining marks (``\p{M}``, Devanagari vowel signs, Arabic harakat)
       of every script are kept, and the apostrophe beside a letter; punctuation, symbols and
       control characters of every script become a space; marks left on nothing (an emoji's
       modifiers) and apostrophes beside no letter go.
    5. **Digits are kept as written** (``\p{N}``: ``"ROOM 101"`` is ``"room 101"``): spelling a
       number out depends on the language and on how it was read, which the transcript does not say.
    6. Spaces are collapsed, and a space between two characters of a script written without
       spaces (:data:`SPACELESS_SCRIPTS`: Han, kana, Thai, ...) is removed, so
       ``"你好， 世界"`` is ``"你好世界"`` and its CER counts characters; ``"hello 世界"`` keeps its space.

    The rules are the same for every language, so one corpus may mix languages (ML-SUPERB).
    """
    text = _NOT_OTHER_NUMBER.sub(lambda m: unicodedata.normalize("NFKC", m.group()), text or "")
    text = text.translate(_APOSTROPHES).lower().replace("i\u0307", "i")
    text = _DROP.sub(" ", _INVISIBLE.sub("", text))
    text = " ".join(_LONE_APOSTROPHE.sub("", _ORPHAN.sub("", text)).split())
    return _GAP.sub("", text)


def written_without_spaces(texts) -> bool:
    """Whether most of ``texts`` (normalised here) are in a script written without spaces (Mandarin, Thai): then a
    word is not what such a transcript is scored in, and CER is the measure (as WenetSpeech scores)."""
    texts = [t for t in (normalize_text(x) for x in texts) if t]
    return bool(texts) and 2 * sum(1 for t in texts if " " not in t and _SPACELESS_CHAR.search(t)) > len(texts)


def legacy_ascii_text(text: str | None) -> str:
    """The rule transcripts were read by before :func:`normalize_text` kept every script: lower case, ``a-z``, the
    apostrophe and single spaces, everything else dropped. Used only to tell whether work made then read the same
    transcripts as today (:func:`transcripts_digest`); never to score."""
    return " ".join("".join(ch for ch in (text or "").lower() if ch in _LEGACY).split())


_LEGACY = set(CHARS)


def transcripts_digest(texts, rule=normalize_text) -> str:
    """sha256 (16 hex digits) of ``texts`` as ``rule`` reads them, in order: what a model trained on them learnt.

    Work recorded before the digest existed was made under :func:`legacy_ascii_text`; its digest under that rule
    standing in for the missing one, work is reused exactly when both rules read the corpus alike (plain English)."""
    import hashlib

    h = hashlib.sha256()
    for t in texts:
        h.update(rule(t).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def char_inventory(texts) -> str:
    """The characters of normalised ``texts``, space first then in code-point order: a CTC or character ASR vocabulary.

    ``texts`` are normalised here. Raises :class:`SpeechrqError` when none holds a character.
    """
    chars = set()
    for t in texts:
        chars.update(normalize_text(t))
    if not chars - {" "}:
        raise SpeechrqError("no transcript holds a character after normalisation (speechrq.text.normalize_text)")
    return " " + "".join(sorted(chars - {" "}))


def greedy_ctc(logp: torch.Tensor, lens: torch.Tensor) -> list[list[int]]:
    """``logp [B, T, V]``, ``lens [B]`` -> per utterance the best path's token ids, repeats merged, blanks (0) removed."""
    best = logp.argmax(-1)
    keep = best != 0
    keep[:, 1:] &= best[:, 1:] != best[:, :-1]
    keep &= torch.arange(best.shape[1], device=best.device)[None] < lens[:, None].to(best.device)
    return [row[k].tolist() for row, k in zip(best.cpu(), keep.cpu())]


def ids_to_text(ids: list[int], vocab, sep: str = "") -> str:
    """CTC ids (1-based: ``vocab[k - 1]``) joined by ``sep``, spaces normalised."""
    return " ".join(sep.join(vocab[k - 1] for k in ids).split())


def greedy_ctc_text(logp: torch.Tensor, lens: torch.Tensor, vocab=CHARS, sep: str = "") -> list[str]:
    """Greedy CTC decoding straight to text: tokens ``vocab[k - 1]`` joined by ``sep``."""
    return [ids_to_text(ids, vocab, sep) for ids in greedy_ctc(logp, lens)]


def error_rate(refs: list[str], hyps: list[str], unit: str = "word") -> float:
    """Percent WER (``unit="word"``, also PER over space-separated phones) or CER (``"char"``), by jiwer."""
    import jiwer

    hyps = [h if h else "" for h in hyps]
    if unit == "char":
        return 100.0 * jiwer.cer(refs, hyps)
    return 100.0 * jiwer.wer(refs, [h or "<empty>" for h in hyps])


def utterance_errors(refs: list[str], hyps: list[str], unit: str = "char") -> tuple[list[int], list[int]]:
    """Each utterance's edit count and reference length, in characters (``"char"``) or words (``"word"``), counted
    as :func:`error_rate` counts them (an empty hypothesis is the word ``<empty>``), so ``100 * sum(errors) /
    sum(lengths)`` is its rate: what a bootstrap over utterances resamples."""
    import jiwer

    if unit == "char":
        out = jiwer.process_characters(refs, [h or "" for h in hyps])
        lengths = [len(r) for r in refs]
    else:
        out = jiwer.process_words(refs, [h or "<empty>" for h in hyps])
        lengths = [len(r.split()) for r in refs]
    errors = []
    for chunks in out.alignments:
        errors.append(sum((c.hyp_end_idx - c.hyp_start_idx) if c.type == "insert" else (c.ref_end_idx - c.ref_start_idx)
                          for c in chunks if c.type != "equal"))
    return errors, lengths


def train_sentencepiece(sentences: list[str], vocab_size: int, path: str | Path, **options) -> Path:
    """sentencepiece BPE over ``sentences`` into ``path`` (atomically); one thread, so deterministic.

    ``options`` add to or override the trainer's settings (unit BPE, for one, merges across
    a whole utterance: ``split_by_whitespace=False``).
    """
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    settings = dict(model_type="bpe", character_coverage=1.0, num_threads=1, minloglevel=2, bos_id=-1, eos_id=-1, unk_id=0,
                    hard_vocab_limit=False) | options
    try:
        spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size, **settings)
    except RuntimeError as e:
        import re

        if (m := re.search(r"smaller than required_chars\. (\d+) vs (\d+)", str(e))):  # sentencepiece names its own flag
            raise SpeechrqError(f"BPE of {vocab_size} tokens: the text holds {m.group(2)} distinct characters, each of which "
                                f"needs a token; ask for more than {m.group(2)} (e.g. data.vocab_size)") from None
        raise SpeechrqError(f"BPE of {vocab_size} tokens: {str(e).splitlines()[0]}") from None
    made = spm.SentencePieceProcessor(model_proto=model.getvalue()).get_piece_size()
    if made != vocab_size:  # hard_vocab_limit=False: a small corpus holds fewer merges than asked for
        log.warning("BPE: asked for %d tokens, the training text supports only %d; %s holds %d (recorded as its vocabulary)",
                    vocab_size, made, path, made)
    with atomic_path(path) as tmp:
        tmp.write_bytes(model.getvalue())
    return Path(path)


class BPETokenizer:
    """sentencepiece BPE over normalised transcripts; ids ``0..V-1`` (``unk`` is 0)."""

    def __init__(self, path: str | Path | None = None, proto: bytes | None = None):
        import sentencepiece as spm

        self.path = Path(path) if path is not None else None
        if proto is not None:  # a model kept inside a checkpoint
            self.sp = spm.SentencePieceProcessor(model_proto=proto)
            return
        if not self.path.exists():
            raise SpeechrqError(f"{self.path}: no BPE model")
        self.sp = spm.SentencePieceProcessor(model_file=str(self.path))

    @classmethod
    def train(cls, texts: list[str], vocab_size: int, path: str | Path, **options) -> "BPETokenizer":
        """Train on ``texts`` (normalised here) into ``path``; sentencepiece is deterministic with one thread.
        ``options`` go to sentencepiece (``model_type="char"``: one token per character, :meth:`characters`)."""
        texts = [t for t in (normalize_text(x) for x in texts) if t]
        if not texts:
            raise SpeechrqError("BPE: no transcripts to train on")
        return cls(train_sentencepiece(texts, vocab_size, path, **options))

    @classmethod
    def characters(cls, texts: list[str], path: str | Path) -> "BPETokenizer":
        """Character output tokens: one per character of :func:`char_inventory` (``texts`` normalised here), plus
        sentencepiece's word boundary and ``unk``: the RPQ paper's Mandarin character units (Table V)."""
        return cls.train(texts, len(char_inventory(texts)) + 1, path, model_type="char")

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(normalize_text(text))

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode(list(ids))
