"""``speechrq data import KIND SRC OUT``: real corpora as speechrq corpus directories.

Every recipe is one function of the same shape, ``recipe(src) -> list[Entry | Rejected]``:
it reads the corpus's own layout and label files and says, per utterance, which
split it belongs to, where its audio is and what its labels are; a label line (row,
segment) it cannot use becomes a :class:`Rejected` naming it, reported like bad audio,
and the import goes on. It never opens audio.

**Label files** are read alike by every recipe (:func:`_read_labels`, :func:`_lines`, :func:`_table_rows`): UTF-8 with
an optional byte-order mark, split into lines at ``\\n`` and ``\\r\\n`` only (not :meth:`str.splitlines`: U+2028,
U+2029, U+0085, a lone CR, VT, FF and \\x1c-\\x1e inside a line are text, kept as written; the text rules make them
spaces). A label file that cannot be decoded or read, a table without a column it needs, a missing split table or
transcript (each would lose a whole split or all its lines), or a file more than half of whose lines, rows or segments
are rejected (:func:`_settle`), is a one-line :class:`SpeechrqError` naming the file, not a warning.

**Overlap.** No recording may be in a training split (a name beginning ``train``) and a held-out split, nor in two
held-out splits: by id and by audio content hash (:func:`find_overlaps`); refused in one line unless ``allow_overlap``,
and always counted under ``overlap`` in ``import_report.json``. :func:`import_corpus` then checks every file (:mod:`speechrq.data.audio`),
keeps the good ones, and writes lhotse manifests (``cuts_{split}.jsonl.gz``), an
``import_report.json`` and a ``summary.json``.

Paths and ids are made safe here, once, for every recipe (the rules are in
:mod:`speechrq.data.corpus`): ``SRC`` is made absolute before the recipe runs, audio
under ``OUT`` is stored relative to ``OUT`` and any other audio as an absolute path, so
the corpus reads the same from any directory and after ``OUT`` is moved; every
utterance and speaker id goes through :func:`~speechrq.data.corpus.safe_id` (the
original kept in ``custom``), and two names that become one id stop the import with
one line naming both.

Why not call lhotse's own recipes (``prepare_librispeech``, ``prepare_timit``,
``prepare_slu``, ``prepare_commonvoice``, ``prepare_wenet_speech``)? They stop at the
first unreadable file or label, and a single bad file must never stop an import. The
label parsing here follows them (TIMIT's split speakers come from lhotse itself);
SID's VoxCeleb1 identification split, IEMOCAP and ML-SUPERB have no lhotse recipe for
what SUPERB needs (ML-SUPERB follows ESPnet's ``egs2/ml_superb``). Each multilingual
recipe says what exactly it takes from lhotse's.

**Languages.** An entry's ``language`` (ML-SUPERB's ISO 639-3 folder, Common Voice's
locale folder, ``cmn`` for WenetSpeech) is written to ``supervisions[0].language``: the
language-id label, and what picks a transcript's text rules.

**Segments.** An entry with a ``segment`` (start, duration in seconds) is one stretch of
a long recording (WenetSpeech): its ``recording`` id names the file, which is checked
once however many segments it holds, and the cut is that stretch of it (``cut.start``
into the recording, the supervision at 0 in the cut, as lhotse's
``trim_to_supervisions`` lays cuts out), so loading the cut's audio gives exactly the
segment. A segment that ends past its recording's end is rejected, named.

**Empty transcripts.** A transcript that is given but normalises to nothing
(:func:`speechrq.text.normalize_text`: only punctuation, say) is kept, never dropped
silently: the import counts them and lists their ids under ``empty_transcripts`` in
``import_report.json`` (the CLI warns), and ASR training reports them.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import SpeechrqError
from ..io import atomic_path, atomic_write_json, read_json
from ..text import normalize_text
from .audio import AUDIO_EXTENSIONS, MIN_DURATION, TARGET_RATE, inspect_many


@dataclass
class Entry:
    """One utterance as a recipe sees it: where its audio is and what it is labelled."""

    split: str
    audio: Path
    id: str
    text: str | None = None
    speaker: str | None = None
    custom: dict = field(default_factory=dict)
    alignment: dict | None = None  # {"phone": [(symbol, start_s, duration_s), ...], ...}
    language: str | None = None  # the language id (supervision.language): LID label, picks text rules
    segment: tuple[float, float] | None = None  # (start_s, duration_s) within the audio file; None: the whole file
    recording: str | None = None  # the audio file's id when it holds segments (else the utterance id)
    gender: str | None = None  # the speaker's sex as the corpus gives it (LibriSpeech's SPEAKERS.TXT: F, M): supervision.gender


@dataclass
class Rejected:
    """A label file (or one line of it) a recipe could not use: skipped and reported like bad audio."""

    source: str
    problem: str


class LabelError(Exception):
    """A label file that cannot be used; the recipe rejects what it labels and goes on."""

    def __init__(self, source, problem: str):
        super().__init__(f"{source}: {problem}")
        self.source, self.problem = str(source), problem


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise SpeechrqError(f"{path}: not found ({what})")
    return path


def _read_labels(path: Path) -> str:
    """A label file's text: UTF-8, a leading byte-order mark dropped, line ends as written (split them with :func:`_lines`).

    A file that is not there is a :class:`LabelError` (the caller says whether that loses one utterance or more); one
    that cannot be read or decoded is a one-line :class:`SpeechrqError` naming it and the first bad byte: none of its
    labels can be used, and replacing bytes would import wrong text without a word.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LabelError(path, "label file not found") from None
    except OSError as e:
        raise SpeechrqError(f"{path}: cannot read this label file ({e.strerror or e})") from None
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpeechrqError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {skip + e.start}); "
                            "label files are read as UTF-8, with or without a byte-order mark") from None


def _lines(text: str) -> list[str]:
    """``text`` split into lines at ``\\n`` and ``\\r\\n`` only. Not :meth:`str.splitlines`, which also breaks at U+2028,
    U+2029, U+0085, a lone CR, VT, FF and \\x1c-\\x1e: inside a line they are text (the text rules make them spaces)."""
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def _label_lines(path: Path) -> list[tuple[int, str]]:
    """A label file's non-blank lines with their numbers (1-based); a file that is missing, unreadable or not UTF-8 is a
    one-line :class:`SpeechrqError` naming it (it would lose every utterance it lists)."""
    try:
        lines = _lines(_read_labels(path))
    except LabelError as e:
        raise SpeechrqError(str(e)) from None
    return [(lineno, line) for lineno, line in enumerate(lines, 1) if line.strip()]


def _settle(path, used: int, lost: list[Rejected], entries: list, what: str = "lines") -> None:
    """The end of one label file: its rejected ``lost`` items join ``entries`` (reported like bad audio, the import goes
    on), unless they are more than half of its ``used + len(lost)`` items: then the file is read wrongly or is not what
    the recipe expects, and that is a one-line :class:`SpeechrqError` naming it, how many were lost and the first."""
    total = used + len(lost)
    if lost and 2 * len(lost) > total:
        raise SpeechrqError(f"{path}: {len(lost)} of {total} {what} cannot be used, more than half "
                            f"(first: {lost[0].source}: {lost[0].problem})")
    entries.extend(lost)


def _table_rows(path: Path, columns, kind: str) -> list[tuple[int, dict]]:
    """A label table's rows, each with the number of its (last) line, read as UTF-8 with an optional byte-order mark.

    ``kind`` "TSV": Common Voice's tab-separated tables without quoting (sentences hold unbalanced quotes), split into
    lines at ``\\n`` and ``\\r\\n`` only and into fields at tabs; a row with fewer fields than the header has None for
    the missing ones and one with more has the extra under the key None (as :class:`csv.DictReader`). ``kind`` "CSV":
    :class:`csv.DictReader`, quoted fields as CSV has them; a lone CR becomes a space first (it is text, and the csv
    module would end a row there). A table that is missing, cannot be read, is malformed or lacks one of ``columns``
    would lose its whole split: a one-line :class:`SpeechrqError` naming it.
    """
    try:
        text = _read_labels(path)
    except LabelError:
        raise SpeechrqError(f"{path}: not found (a split's {kind} table: without it the split would be lost)") from None
    if kind == "TSV":
        lines = _lines(text)
        header = lines[0].split("\t") if lines else []
        rows = []
        for lineno, line in enumerate(lines[1:], 2):
            if not line.strip():
                continue
            fields = line.split("\t")
            row = {name: (fields[k] if k < len(fields) else None) for k, name in enumerate(header)}
            if len(fields) > len(header):
                row[None] = fields[len(header):]
            rows.append((lineno, row))
    else:
        reader = csv.DictReader(io.StringIO(re.sub(r"\r(?!\n)", " ", text), newline=""))
        header, rows = [], []
        try:
            header = reader.fieldnames or []
            rows = [(reader.line_num, row) for row in reader]
        except csv.Error as e:
            raise SpeechrqError(f"{path}: malformed {kind} at line {reader.line_num} ({e})") from None
    if (missing := set(columns) - set(header)):
        raise SpeechrqError(f"{path}: missing column(s) {', '.join(sorted(missing))} in its header line "
                            f"({', '.join(map(repr, header[:8])) or 'empty'}); this {kind} table's split would be lost")
    return rows


# --------------------------------------------------------------------------- recipes


SEXES = ("F", "M")  # the values of SPEAKERS.TXT's sex column


def read_speakers(path: Path) -> tuple[dict[str, str], list[Rejected]]:
    """LibriSpeech's reader table ``SPEAKERS.TXT`` (``ID | SEX | SUBSET | MINUTES | NAME``, ``;`` comments): each
    reader's sex (``F``/``M``) by id, and the lines it cannot use. A name may hold ``|`` (reader 60 is ``|CBW|Simon``):
    the line is split at its first four. More than half the lines unusable, or an unreadable file, is a one-line
    :class:`SpeechrqError` naming it."""
    sexes, lost = {}, []
    for lineno, line in _label_lines(path):
        if line.lstrip().startswith(";"):
            continue
        fields = [f.strip() for f in line.split("|", 4)]
        if len(fields) < 2 or not fields[0] or fields[1] not in SEXES:
            lost.append(Rejected(f"{path}:{lineno}", f"expected 'ID | SEX (F or M) | SUBSET | MINUTES | NAME', got {line[:80]!r}"))
            continue
        sexes[fields[0]] = fields[1]
    found: list = []
    _settle(path, len(sexes), lost, found)
    return sexes, found


def librispeech(src: Path) -> list[Entry | Rejected]:
    """LibriSpeech: ``SRC/{part}/{speaker}/{chapter}/{speaker}-{chapter}.trans.txt`` and
    ``...-{utt}.flac``; every part (train-clean-100, dev-clean, ...) becomes a split. Where ``SRC/SPEAKERS.TXT`` (the
    reader table LibriSpeech ships at its root) is present, each utterance's ``gender`` is its reader's sex
    (:func:`read_speakers`; the ``sex`` probe's label)."""
    entries: list[Entry | Rejected] = []
    parts = sorted(p for p in src.iterdir() if p.is_dir() and any(p.glob("*/*/*.trans.txt")))
    if not parts:
        raise SpeechrqError(f"{src}: no LibriSpeech part found (expected PART/SPEAKER/CHAPTER/*.trans.txt)")
    sexes = {}
    if (src / "SPEAKERS.TXT").exists():
        sexes, lost = read_speakers(src / "SPEAKERS.TXT")
        entries += lost
    for part in parts:
        for trans in sorted(part.glob("*/*/*.trans.txt")):
            used, lost = 0, []
            for lineno, line in _label_lines(trans):
                utt, _, text = line.strip().partition(" ")
                if not text.strip():
                    lost.append(Rejected(f"{trans}:{lineno}", f"expected 'UTTERANCE-ID TRANSCRIPT', got {line[:80]!r}"))
                    continue
                speaker = utt.split("-")[0]
                entries.append(Entry(part.name, trans.parent / f"{utt}.flac", utt, text=text.strip(), speaker=speaker,
                                     gender=sexes.get(speaker)))
                used += 1
            _settle(trans, used, lost, entries)
    return entries


TIMIT_RATE = 16000  # TIMIT's .PHN/.WRD offsets count samples of its own 16 kHz recordings


def _timit_text(path: Path) -> str:
    """A TIMIT ``.TXT``: one line ``START END TEXT``; the text as written, stripped."""
    lines = [(lineno, line) for lineno, line in enumerate(_lines(_read_labels(path)), 1) if line.strip()]
    fields = lines[0][1].split(maxsplit=2) if len(lines) == 1 else []
    if len(fields) != 3 or not (fields[0].isdigit() and fields[1].isdigit()):
        where = f"{path}:{lines[0][0]}" if lines else str(path)
        raise LabelError(where, f"expected one line 'START END TEXT', got {len(lines)} line(s), the first "
                                f"{(lines[0][1] if lines else '')[:80]!r}")
    return fields[2].strip()


def _timit_items(path: Path, rate: int, kind: str) -> list[tuple[str, float, float]]:
    items = []
    for lineno, line in enumerate(_lines(_read_labels(path)), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3 or not (fields[0].isdigit() and fields[1].isdigit()):
            raise LabelError(f"{path}:{lineno}", f"expected 'START END {kind.upper()}', got {line[:80]!r}")
        start, end = int(fields[0]), int(fields[1])
        items.append((fields[2], start / rate, (end - start) / rate))
    return items


def timit(src: Path) -> list[Entry | Rejected]:
    """TIMIT: ``SRC/[data/]{TRAIN,TEST}/DR*/SPEAKER/*.WAV`` with ``.PHN``, ``.WRD``, ``.TXT``.

    Splits as lhotse's recipe: train = TRAIN; dev and test = the TEST speakers of
    the standard development and core test sets. Phones keep TIMIT's 61 symbols.
    """
    from lhotse.recipes.timit import get_speakers

    root = src / "data" if (src / "data").is_dir() else src
    dev_spks, test_spks = (set(s.lower() for s in group) for group in get_speakers())
    entries = []
    used: dict[str, int] = {}
    lost: dict[str, list[Rejected]] = {}
    for part in ("TRAIN", "TEST"):
        part_dir = next((p for p in root.iterdir() if p.name.upper() == part), None) if root.is_dir() else None
        if part_dir is None:
            raise SpeechrqError(f"{root}: no {part} directory (expected [data/]{part}/DR*/SPEAKER/*.WAV)")
        for wav in sorted(p for p in part_dir.glob("*/*/*") if p.suffix.upper() == ".WAV"):
            speaker = wav.parent.name
            split = "train" if part == "TRAIN" else "dev" if speaker.lower() in dev_spks else "test" if speaker.lower() in test_spks else None
            if split is None:
                continue
            txt, phn, wrd = (wav.with_suffix(s if wav.suffix == ".WAV" else s.lower()) for s in (".TXT", ".PHN", ".WRD"))
            try:
                text = _timit_text(txt)
                alignment = {"phone": _timit_items(phn, TIMIT_RATE, "phone"), "word": _timit_items(wrd, TIMIT_RATE, "word")}
            except LabelError as e:  # this utterance's own label file: the utterance is rejected
                lost.setdefault(split, []).append(Rejected(e.source, e.problem))
                continue
            entries.append(Entry(split, wav, f"{speaker}-{wav.stem}", text=text, speaker=speaker, alignment=alignment))
            used[split] = used.get(split, 0) + 1
    for split in ("train", "dev", "test"):  # label files are per utterance: a split losing most utterances is the error
        _settle(f"{root} (split {split})", used.get(split, 0), lost.get(split, []), entries, f"{split} utterances")
    return entries


def voxceleb1(src: Path) -> list[Entry | Rejected]:
    """VoxCeleb1 identification (SUPERB SID): ``SRC/wav/idXXXXX/VIDEO/NNNNN.wav`` and
    ``SRC/iden_split.txt`` (``1|2|3 idXXXXX/VIDEO/NNNNN.wav`` = train|dev|test)."""
    split_file = _require(src / "iden_split.txt", "VoxCeleb1 identification split")
    names = {"1": "train", "2": "dev", "3": "test"}
    entries, lost = [], []
    for lineno, line in _label_lines(split_file):  # the split definition itself: unreadable, nothing can be imported
        fields = line.split()
        if len(fields) != 2 or fields[0] not in names:
            lost.append(Rejected(f"{split_file}:{lineno}", f"expected '1|2|3 SPEAKER/VIDEO/FILE.wav', got {line[:80]!r}"))
            continue
        rel = fields[1]
        speaker = rel.split("/")[0]
        entries.append(Entry(names[fields[0]], src / "wav" / rel, rel.rsplit(".", 1)[0].replace("/", "-"), speaker=speaker))
    _settle(split_file, len(entries), lost, entries)
    return entries


def fsc(src: Path) -> list[Entry | Rejected]:
    """Fluent Speech Commands: ``SRC/data/{train,valid,test}_data.csv`` (columns path,
    speakerId, transcription, action, object, location); valid becomes dev."""
    entries = []
    for name, split in (("train", "train"), ("valid", "dev"), ("test", "test")):
        table = _require(src / "data" / f"{name}_data.csv", "Fluent Speech Commands split table")
        columns = ("path", "speakerId", "transcription", "action", "object", "location")
        used, lost = 0, []
        for lineno, row in _table_rows(table, columns, "CSV"):
            if any(not row.get(k) for k in columns):
                lost.append(Rejected(f"{table}:{lineno}", "a row with empty or missing fields"))
                continue
            intent = {k: row[k] for k in ("action", "object", "location")}
            intent["intent"] = f"{row['action']}|{row['object']}|{row['location']}"
            rid = Path(row["path"]).stem
            entries.append(Entry(split, src / row["path"], rid, text=row["transcription"], speaker=row["speakerId"], custom=intent))
            used += 1
        _settle(table, used, lost, entries, "rows")
    return entries


IEMOCAP_EMOTIONS = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"}
_IEMOCAP_LINE = re.compile(r"^\[[\d.]+ - [\d.]+\]\s+(Ses\w+)\s+(\w+)\s+\[")
_IEMOCAP_TURN = re.compile(r"^\s*\[\s*\d")  # an utterance's line of an EmoEvaluation file begins "[START - END]"


def iemocap(src: Path) -> list[Entry | Rejected]:
    """IEMOCAP, the 4-class setting of SUPERB ER: neutral, happy (with excited merged
    in), angry, sad; other labels are left out. Each session is a split
    (``session1`` .. ``session5``) for leave-one-session-out folds.

    Layout: ``SRC/SessionN/sentences/wav/DIALOG/UTT.wav``, labels in
    ``SRC/SessionN/dialog/EmoEvaluation/DIALOG.txt``, transcripts in
    ``SRC/SessionN/dialog/transcriptions/DIALOG.txt``.
    """
    sessions = sorted(p for p in src.glob("Session*") if p.is_dir())
    if not sessions:
        raise SpeechrqError(f"{src}: no Session1..Session5 directory (expected an IEMOCAP release)")
    entries = []
    for session in sessions:
        split = session.name.lower()
        texts = {}
        for tr in sorted((session / "dialog" / "transcriptions").glob("*.txt")):
            for _, line in _label_lines(tr):
                m = re.match(r"^(Ses\w+) \[[\d.\-]+\]:\s*(.*)$", line)
                if m:
                    texts[m.group(1)] = m.group(2).strip()
        evals = sorted((_require(session / "dialog" / "EmoEvaluation", "IEMOCAP labels")).glob("*.txt"))
        for ev in evals:
            used, lost = 0, []
            for lineno, line in _label_lines(ev):
                m = _IEMOCAP_LINE.match(line)
                if not m:  # evaluators' lines, comments; an utterance's line ("[START - END] ...") that does not parse is lost
                    if _IEMOCAP_TURN.match(line):
                        lost.append(Rejected(f"{ev}:{lineno}", f"expected '[START - END]<TAB>UTTERANCE<TAB>EMOTION<TAB>[V, A, D]', "
                                                               f"got {line[:80]!r}"))
                    continue
                used += 1
                if m.group(2) not in IEMOCAP_EMOTIONS:
                    continue
                utt = m.group(1)
                dialog = utt.rsplit("_", 1)[0]
                # Ses01F_impro01_F000: the speaker's gender is the letter of the last field
                speaker = f"{utt[:5]}{utt.rsplit('_', 1)[1][0]}"
                wav = session / "sentences" / "wav" / dialog / f"{utt}.wav"
                custom = {"emotion": IEMOCAP_EMOTIONS[m.group(2)], "emotion_raw": m.group(2), "session": session.name}
                entries.append(Entry(split, wav, utt, text=texts.get(utt), speaker=speaker, custom=custom))
            _settle(ev, used, lost, entries)
    return entries


def folder(src: Path) -> list[Entry | Rejected]:
    """Any tree of audio files, unlabelled (pre-training data): one split, ``train``."""
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise SpeechrqError(f"{src}: holds no audio file ({', '.join(AUDIO_EXTENSIONS)})")
    # the id is the path under SRC without its extension; import_corpus makes it safe ('/' -> '__', spaces -> '_')
    return [Entry("train", p, str(p.relative_to(src).with_suffix(""))) for p in files]


MLSUPERB_FILES = {  # ESPnet egs2/ml_superb/asr1/local/data_prep.py reads these four per DATASET/LANG
    "transcript_10min_train.txt": "train_10min",
    "transcript_1h_train.txt": "train_1h",
    "transcript_10min_dev.txt": "dev",
    "transcript_10min_test.txt": "test",
}


def mlsuperb(src: Path) -> list[Entry | Rejected]:
    """ML-SUPERB as released (the layout ESPnet's ``egs2/ml_superb/asr1/local/data_prep.py`` reads):
    ``SRC/{DATASET}/{LANG}/transcript_{10min,1h}_train.txt``, ``transcript_10min_{dev,test}.txt``
    and the audio ``SRC/{DATASET}/{LANG}/wav/{UTT-ID}.wav``.

    A transcript line is ``UTT-ID FIELD TRANSCRIPT``, split on whitespace at most twice as ESPnet
    does; the middle field is not used (nor by ESPnet). Splits: ``train_10min``, ``train_1h`` (ESPnet's
    ``train_10min`` / ``train_1h``; an utterance listed in both is in both splits, its file checked
    once), ``dev`` and ``test`` (ESPnet's ``dev_10min`` / ``test_10min``, from the ``10min_dev`` and
    ``10min_test`` files for both durations). Every dataset folder is read (ESPnet lists 14 by name).
    The language is the ISO 639-3 folder name (``supervision.language``), the dataset is ``custom.dataset``;
    ML-SUPERB has no speakers (ESPnet maps each utterance to itself). Not applied here, being benchmark
    protocol rather than data: ESPnet's 20 s cap on training utterances and its few-shot subset of the
    20 reserved languages. The transcript is kept as written (ESPnet upper-cases it and strips
    punctuation when it writes its ``text``).
    """
    lang_dirs = sorted({t.parent for t in src.glob("*/*/transcript_*.txt")})
    if not lang_dirs:
        raise SpeechrqError(f"{src}: no ML-SUPERB transcript_*.txt under SRC/DATASET/LANG/ "
                            "(expected e.g. SRC/mls/eng/transcript_10min_train.txt and SRC/mls/eng/wav/)")
    entries = []
    for lang_dir in lang_dirs:
        dataset, lang = lang_dir.parent.name, lang_dir.name
        for name, split in MLSUPERB_FILES.items():
            transcript = lang_dir / name
            used, lost = 0, []
            for lineno, line in _label_lines(transcript):  # missing: ESPnet's data_prep.py fails too
                fields = line.strip().split(maxsplit=2)
                if len(fields) != 3:
                    lost.append(Rejected(f"{transcript}:{lineno}", f"expected 'UTTERANCE-ID FIELD TRANSCRIPT', got {line[:80]!r}"))
                    continue
                utt, _, text = fields
                entries.append(Entry(split, lang_dir / "wav" / f"{utt}.wav", utt, text=text, language=lang,
                                     custom={"dataset": dataset}))
                used += 1
            _settle(transcript, used, lost, entries)
    return entries


WENETSPEECH_SUBSETS = {  # the JSON's subset tags -> splits, named as WenetSpeech's own WeNet toolkit names them
    "L": "train_l", "M": "train_m", "S": "train_s", "W": "train_w",
    "DEV": "dev", "TEST_NET": "test_net", "TEST_MEETING": "test_meeting",
}


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else None


def wenetspeech(src: Path) -> list[Entry | Rejected]:
    """WenetSpeech: ``SRC/WenetSpeech.json`` (``"audios"``: each with ``aid``, ``path`` relative to SRC
    (an ``.opus`` file) and ``segments``: each with ``sid``, ``begin_time``, ``end_time`` (seconds),
    ``text`` and ``subsets``), the field names lhotse's ``prepare_wenet_speech`` reads.

    Each subset is a split, as in lhotse's recipe (and WeNet's): a segment tagged with several
    subsets is in each of them (S is part of M, M of L). Splits: ``train_l``, ``train_m``,
    ``train_s``, ``train_w`` (the weakly labelled W, which lhotse leaves out), ``dev``,
    ``test_net``, ``test_meeting``; tags are read with or without braces (``"L"`` or ``"{L}"``).
    An utterance is a segment of its audio file (``aid`` is the recording); language ``cmn``;
    WenetSpeech has no speakers. The transcript is kept as written (stripped, as lhotse does).

    Not lhotse's recipe itself: it takes each recording's length from the JSON instead of the file,
    stops at the first entry with a missing field, and lhotse's validation then fails the whole
    import on a segment past its recording's end; here each such segment or entry is rejected, named,
    and the import goes on.
    """
    meta = src / "WenetSpeech.json"
    if not meta.is_file():
        raise SpeechrqError(f"{src}: no WenetSpeech.json (expected SRC/WenetSpeech.json and SRC/audio/...)")
    try:
        audios = json.loads(_read_labels(meta)).get("audios")
    except LabelError as e:  # the one label file: nothing can be imported without it
        raise SpeechrqError(str(e)) from None
    except (json.JSONDecodeError, AttributeError) as e:
        raise SpeechrqError(f"{meta}: not a WenetSpeech JSON ({e})") from None
    if not isinstance(audios, list):
        raise SpeechrqError(f"{meta}: holds no \"audios\" list")
    entries, lost, used = [], [], 0
    for k, audio in enumerate(audios):
        where = f"{meta}: audios[{k}]"
        if not isinstance(audio, dict) or not all(isinstance(audio.get(f), str) and audio.get(f) for f in ("aid", "path")) \
                or not isinstance(audio.get("segments"), list):
            lost.append(Rejected(where, "an entry without \"aid\", \"path\" or a \"segments\" list"))
            continue
        path = src / audio["path"]
        if not os.path.abspath(path).startswith(os.path.abspath(src) + os.sep):  # "path" is relative to SRC, never outside it
            lost.append(Rejected(where, f"path {audio['path']!r} leads outside {src}"))
            continue
        for j, seg in enumerate(audio["segments"]):
            sid = seg.get("sid") if isinstance(seg, dict) else None
            here = f"{meta}: {sid}" if isinstance(sid, str) and sid else f"{where}.segments[{j}]"
            if not isinstance(sid, str) or not sid or not isinstance(seg.get("text"), str) or not isinstance(seg.get("subsets"), list):
                lost.append(Rejected(here, "a segment without \"sid\", \"text\" or a \"subsets\" list"))
                continue
            begin, end = _number(seg.get("begin_time")), _number(seg.get("end_time"))
            if begin is None or end is None or begin < 0 or end <= begin:
                lost.append(Rejected(here, f"begin_time {seg.get('begin_time')!r}, end_time {seg.get('end_time')!r}: "
                                           "not two times with 0 <= begin < end"))
                continue
            tags = [t.strip("{}") for t in seg["subsets"] if isinstance(t, str)]
            splits = [WENETSPEECH_SUBSETS[t] for t in tags if t in WENETSPEECH_SUBSETS]
            if not splits:
                lost.append(Rejected(here, f"subsets {seg['subsets']!r}: none of {', '.join(WENETSPEECH_SUBSETS)}"))
                continue
            custom = {"confidence": seg["confidence"]} if _number(seg.get("confidence")) is not None else {}
            for split in dict.fromkeys(splits):
                entries.append(Entry(split, path, sid, text=seg["text"].strip(), language="cmn", custom=dict(custom),
                                     segment=(begin, end - begin), recording=audio["aid"]))
            used += 1
    _settle(meta, used, lost, entries, "audios and segments")
    return entries


COMMONVOICE_SPLITS = ("train", "dev", "test")
COMMONVOICE_COLUMNS = ("client_id", "path", "sentence")
COMMONVOICE_EXTRA = ("age", "gender", "accents", "accent", "variant", "locale")  # kept in custom when given


def commonvoice(src: Path) -> list[Entry | Rejected]:
    """Common Voice: ``SRC/{LANG}/{train,dev,test}.tsv`` and ``SRC/{LANG}/clips/*.mp3``, any number of
    languages (the folder names: Common Voice locales such as ``en``, ``ru``, ``zh-CN``).

    The tables are read as lhotse's ``prepare_commonvoice`` reads them (tab-separated, no quoting:
    Common Voice sentences hold unbalanced quotes); columns used: ``client_id`` (the speaker), ``path``
    (under ``clips/``; its stem is the utterance id), ``sentence`` (the transcript, stripped as lhotse
    does, otherwise as written); ``age``, ``gender``, ``accents`` (``accent`` in old releases),
    ``variant`` and ``locale`` go to ``custom`` when given. Splits: ``train``, ``dev``, ``test``, each
    holding every language; ``validated``, ``invalidated``, ``other`` and ``reported`` are not read.

    Not lhotse's recipe itself: it opens every clip to measure it and stops at the first unreadable
    one, drops missing clips with only a log line, requires the gender/age/accents/variant columns,
    and with ``languages="auto"`` takes only the 23 locales it lists.
    """
    lang_dirs = sorted(p for p in src.iterdir() if p.is_dir() and any((p / f"{s}.tsv").is_file() for s in COMMONVOICE_SPLITS))
    if not lang_dirs:
        raise SpeechrqError(f"{src}: no Common Voice language folder "
                            "(expected SRC/LANG/train.tsv, dev.tsv, test.tsv and SRC/LANG/clips/)")
    entries = []
    for lang_dir in lang_dirs:
        for split in COMMONVOICE_SPLITS:
            table = lang_dir / f"{split}.tsv"
            used, lost = 0, []
            for lineno, row in _table_rows(table, COMMONVOICE_COLUMNS, "TSV"):
                if not row.get("client_id") or not row.get("path") or row.get("sentence") is None or None in row:
                    lost.append(Rejected(f"{table}:{lineno}", "a row with missing fields (expected client_id, path, sentence, ... "
                                                              "separated by tabs)"))
                    continue
                custom = {k: row[k] for k in COMMONVOICE_EXTRA if row.get(k)}
                entries.append(Entry(split, lang_dir / "clips" / row["path"], Path(row["path"]).stem, text=row["sentence"].strip(),
                                     speaker=row["client_id"], language=lang_dir.name, custom=custom))
                used += 1
            _settle(table, used, lost, entries, "rows")
    return entries


RECIPES: dict[str, Callable[[Path], list[Entry | Rejected]]] = {
    "librispeech": librispeech,
    "timit": timit,
    "voxceleb1": voxceleb1,
    "fsc": fsc,
    "iemocap": iemocap,
    "mlsuperb": mlsuperb,
    "wenetspeech": wenetspeech,
    "commonvoice": commonvoice,
    "folder": folder,
}


# --------------------------------------------------------------------------- driver

SEGMENT_TOLERANCE = 0.01  # s: a segment may end this much past its recording's end (times given to 10 ms); it is cut there
EMPTY_EXAMPLES = 5  # ids of empty transcripts shown in the summary (import_report.json lists them all)


def safe_entries(entries: list[Entry], src: Path) -> tuple[list[Entry], list[Rejected]]:
    """Every utterance, speaker and recording id through :func:`~speechrq.data.corpus.safe_id`, originals kept in ``custom``.

    An empty id is rejected (reported like bad audio), and so is an utterance listed again in a split for the same
    audio (a repeated label line: the first is kept); two different names that become one id, one utterance id for
    two different stretches of audio, or one recording id for two files, stop the import with one line naming both. One utterance may be in several splits
    (an ML-SUPERB utterance listed for both 10 minutes and 1 hour; a WenetSpeech segment in S, M and L).
    """
    from .corpus import safe_id

    kept, rejected = [], []
    utt_names: dict[str, Entry] = {}
    in_split: set[tuple[str, str]] = set()
    speaker_names: dict[str, str] = {}
    recording_names: dict[str, Entry] = {}
    for e in entries:
        uid = safe_id(e.id)
        if not uid:
            rejected.append(Rejected(str(e.audio), "empty utterance id"))
            continue
        if uid in utt_names:
            first = utt_names[uid]
            if first.id != e.id:
                raise SpeechrqError(f"{src}: utterance ids {first.id!r} ({first.audio}) and {e.id!r} ({e.audio}) both become {uid!r} "
                                    "(whitespace and control characters become '_', '/' becomes '__'); rename one of them")
            if (first.audio, first.segment) != (e.audio, e.segment):
                raise SpeechrqError(f"{src}: utterance id {e.id!r} occurs more than once, for two stretches of audio "
                                    f"({first.audio}{_span(first)} and {e.audio}{_span(e)}); rename one of them")
            if (uid, e.split) in in_split:
                rejected.append(Rejected(f"{e.audio}{_span(e)}", f"utterance {e.id!r} listed again in split {e.split} "
                                         "(a repeated label line; the first is kept)"))
                continue
        utt_names.setdefault(uid, e)
        in_split.add((uid, e.split))
        custom = dict(e.custom)
        if uid != e.id:
            custom["source_id"] = e.id
        speaker = e.speaker
        if speaker is not None:
            speaker = safe_id(speaker) or None
            if speaker is not None and speaker_names.setdefault(speaker, e.speaker) != e.speaker:
                raise SpeechrqError(f"{src}: speakers {speaker_names[speaker]!r} and {e.speaker!r} both become {speaker!r} "
                                    "(whitespace and control characters become '_', '/' becomes '__'); rename one of them")
            if speaker != e.speaker:
                custom["source_speaker"] = e.speaker
        recording = uid
        if e.recording is not None:
            recording = safe_id(e.recording)
            if not recording:
                rejected.append(Rejected(str(e.audio), "empty recording id"))
                continue
            if recording != e.recording:
                custom["source_recording"] = e.recording
        first_rec = recording_names.setdefault(recording, e)
        if (first_rec.recording or first_rec.id) != (e.recording or e.id) or first_rec.audio != e.audio:
            raise SpeechrqError(f"{src}: recording {first_rec.recording or first_rec.id!r} ({first_rec.audio}) and "
                                f"{e.recording or e.id!r} ({e.audio}) both have the id {recording!r}; rename one of them")
        kept.append(Entry(e.split, e.audio, uid, text=e.text, speaker=speaker, custom=custom, alignment=e.alignment,
                          language=e.language, segment=e.segment, recording=recording, gender=e.gender))
    return kept, rejected


def _span(e: Entry) -> str:
    return f" at {e.segment[0]:g}-{e.segment[0] + e.segment[1]:g} s" if e.segment else ""


def stored_path(audio: str | Path, out: Path) -> str:
    """How a manifest stores ``audio``: always absolute (lhotse alone reads it from any directory); a file under the
    corpus folder ``out`` as a path under ``out``'s resolved path, which ``paths.json`` records, so a moved corpus still
    reads its own audio (:class:`~speechrq.data.corpus.LazyCuts`, :func:`~speechrq.data.corpus.relocate`).
    """
    absolute = Path(os.path.abspath(audio))
    try:
        return str(out.resolve() / absolute.resolve().relative_to(out.resolve()))
    except ValueError:
        return str(absolute)


OVERLAP_EXAMPLES = 3  # overlaps named in the refusal (import_report.json lists them all)


def split_group(split: str) -> str:
    """The group of splits that may share recordings: every split whose name begins with ``train`` is one group (training
    subsets: ML-SUPERB's 10-minute set inside its 1-hour set, WenetSpeech's S in M in L); any other split (dev, test,
    LibriSpeech's dev-clean, an IEMOCAP session, a leave-one-session-out fold) is held out and a group of its own."""
    return "train" if split.lower().startswith("train") else split


def find_overlaps(entries: list[Entry], digests: dict[str, str], spans: dict[tuple[str, str], tuple[float, float]]) -> dict:
    """Recordings in two groups of splits (:func:`split_group`): a training and a held-out split, or two held-out splits.

    Two utterances overlap when they are the same audio: the same recording id (:attr:`Entry.recording`, after
    :func:`safe_entries`), or the same content hash (``digests``, the fingerprint :func:`inspect_many` computes of each
    kept file), and for segments of one long recording (``spans``: (split, id) -> (start, duration)) stretches that
    overlap in time; another stretch of the same recording is other audio. ``entries`` are the utterances kept.

    Returns ``{"count", "by_id", "by_content", "pairs"}``: each pair ``{"held_out", "other", "by"}`` names two utterances
    as ``split/id`` (the held-out one first: the one in a split not named ``train*``, or of two held-out splits the later
    by name) and how they were found (``"id"``, ``"content"``); the counts are of distinct held-out utterances.
    """
    found: dict[tuple[tuple[str, str], tuple[str, str]], set[str]] = {}
    for how in ("id", "content"):
        by_key: dict[str, list[tuple[float, float, Entry]]] = {}
        for e in entries:
            start, duration = spans[e.split, e.id] if e.segment is not None else (0.0, math.inf)
            by_key.setdefault(e.recording if how == "id" else digests[e.recording], []).append((start, start + duration, e))
        for items in by_key.values():
            if len({split_group(e.split) for _, _, e in items}) < 2:
                continue
            items.sort(key=lambda item: (item[0], item[2].split, item[2].id))
            active: list[tuple[float, float, Entry]] = []
            for start, end, e in items:  # a sweep over start times: each stretch against those not yet ended
                active = [a for a in active if a[1] > start]
                for _, _, other in active:
                    if split_group(other.split) != split_group(e.split):
                        a, b = sorted(((other.split, other.id), (e.split, e.id)), key=lambda x: (split_group(x[0]) != "train", x))
                        found.setdefault((b, a), set()).add(how)
                active.append((start, end, e))
    pairs = [{"held_out": f"{h[0]}/{h[1]}", "other": f"{o[0]}/{o[1]}", "by": [w for w in ("id", "content") if w in by]}
             for (h, o), by in sorted(found.items())]
    held = lambda how: len({p["held_out"] for p in pairs if how is None or how in p["by"]})  # noqa: E731
    return {"count": held(None), "by_id": held("id"), "by_content": held("content"), "pairs": pairs}


def _overlap_refusal(src: Path, overlap: dict) -> str:
    n = overlap["count"]
    what = {"id": "same recording id", "content": "same audio bytes"}
    examples = ", ".join(f"{p['held_out']} = {p['other']}: {' and '.join(what[b] for b in p['by'])}"
                         for p in overlap["pairs"][:OVERLAP_EXAMPLES])
    more = f", ... ({len(overlap['pairs'])} pairs)" if len(overlap["pairs"]) > OVERLAP_EXAMPLES else ""
    return (f"{src}: {n} recording{'s' if n != 1 else ''} held out for evaluation {'is' if n == 1 else 'are'} also in a training "
            f"split or another held-out split ({examples}{more}); list each recording in one split only, or pass "
            "--allow-overlap (allow_overlap=True) to import anyway (the overlap is counted in import_report.json)")


def import_corpus(kind: str, src: str | Path, out: str | Path, workers: int = 4, progress: bool = True,
                  allow_overlap: bool = False):
    """Import corpus ``kind`` from ``src`` into the corpus directory ``out``.

    Returns ``(summary, report)``: the corpus summary (with the audio report under
    ``"audio"`` and ``"empty_transcripts"``: how many transcripts normalise to nothing, with a few ids) and the
    :class:`~speechrq.data.audio.InspectionReport` (``kept`` counts audio files: one file may hold
    several segments, one utterance be in several splits).

    A recording in a training split and a held-out (dev, test) split, or in two held-out splits (:func:`find_overlaps`:
    by id and by content hash), is refused in one line naming the first few, before anything is written, unless
    ``allow_overlap``; either way ``import_report.json`` and ``summary.json`` count it under ``overlap``.
    """
    if kind not in RECIPES:
        raise SpeechrqError(f"data import: unknown KIND {kind!r} (choose from {', '.join(RECIPES)})")
    src = Path(src)
    if not src.is_dir():
        raise SpeechrqError(f"{src}: no such directory")
    # absolute before the recipe runs: every audio path it makes is then absolute, whatever the current directory
    found = RECIPES[kind](Path(os.path.abspath(src)))
    return write_entries(found, kind, src, out, workers=workers, progress=progress, allow_overlap=allow_overlap)


def write_entries(found: list[Entry | Rejected], kind: str, src: str | Path, out: str | Path, workers: int = 4,
                  progress: bool = True, allow_overlap: bool = False):
    """What :func:`import_corpus` does once its recipe has run: the utterances ``found`` (with the label lines it
    rejected) written into the corpus directory ``out`` as a corpus of ``kind`` read from ``src`` (both recorded in
    ``import_report.json``): ids made safe, every audio file checked, overlap between splits refused unless allowed,
    manifests, reports and summary written. Returns ``(summary, report)`` as :func:`import_corpus` does. A corpus
    made from a list of :class:`Entry` (not a registered recipe) is written the same way
    (:mod:`speechrq.studies.real_speech`)."""
    from lhotse import CutSet, MonoCut, MultiCut, RecordingSet, SupervisionSet
    from lhotse.supervision import AlignmentItem, SupervisionSegment
    from lhotse.utils import fastcopy

    from .corpus import cut_files, summarize

    src, out = Path(src), Path(out)
    entries = [e for e in found if isinstance(e, Entry)]
    rejected = [e for e in found if isinstance(e, Rejected)]
    entries, unnamed = safe_entries(entries, src)
    rejected += unnamed
    if not entries:
        reason = f" ({len(rejected)} label problems, e.g. {rejected[0].source}: {rejected[0].problem})" if rejected else ""
        raise SpeechrqError(f"{src}: the {kind} recipe found no utterance{reason}")

    # OUT holds one corpus: an import never mixes its splits with manifests of another corpus, nor leaves stale ones
    if out.is_dir() and (held := sorted(p.name for p in out.glob("cuts_*.jsonl*"))):
        previous = read_json(out / "import_report.json") if (out / "import_report.json").exists() else {}
        made = {"kind": previous.get("kind"), "source": previous.get("source")}
        if made != {"kind": kind, "source": str(src.resolve())}:
            what = f"a {made['kind']} import of {made['source']}" if made["kind"] else "a corpus not imported by `data import`"
            raise SpeechrqError(f"{out}: already holds {what} ({', '.join(held)}); import into another directory or delete it")
        splits = {e.split for e in entries}
        if (stale := [p.name for split, p in cut_files(out).items() if split not in splits]):
            raise SpeechrqError(f"{out}: holds {', '.join(stale)}, which this import of {src} no longer makes; "
                                "import into another directory or delete it")
    # one check per audio file, however many utterances (segments, splits) it holds
    files = {e.recording: e.audio for e in entries}
    recordings, report = inspect_many(((audio, rid) for rid, audio in files.items()), workers=workers, progress=progress)
    report.skipped.update({r.source: r.problem for r in rejected})
    # the stored paths, once per recording (a recording is in several cuts and splits)
    recordings = {rid: fastcopy(rec, sources=[fastcopy(s, source=stored_path(s.source, out)) for s in rec.sources])
                  for rid, rec in recordings.items()}
    spans: dict[tuple[str, str], tuple[float, float]] = {}  # (split, utterance) -> its segment, checked against its recording
    for e in entries:
        if e.segment is None or e.recording not in recordings:
            continue
        total, (start, duration) = recordings[e.recording].duration, e.segment
        where = f"{e.audio} (segment {e.custom.get('source_id', e.id)})"
        if start + duration > total + SEGMENT_TOLERANCE:
            report.skipped[where] = f"ends at {start + duration:.3f} s, past the end of its recording ({total:.3f} s)"
        elif min(duration, total - start) < MIN_DURATION:
            report.skipped[where] = f"too short ({max(0.0, min(duration, total - start)):.3f} s; at least {MIN_DURATION} s)"
        else:
            spans[e.split, e.id] = (start, min(duration, total - start))
    # the same audio for training and evaluation (or in two evaluation splits): refused unless allowed, always counted
    imported = [e for e in entries if e.recording in recordings and (e.segment is None or (e.split, e.id) in spans)]
    overlap = {"allowed": allow_overlap, **find_overlaps(imported, report.digests, spans)}
    if overlap["count"] and not allow_overlap:
        raise SpeechrqError(_overlap_refusal(src, overlap))
    out.mkdir(parents=True, exist_ok=True)
    from .corpus import record_root

    record_root(out)  # where the manifests' paths under OUT point (read under its current path once moved)
    written: dict[tuple[str, str], Entry] = {}
    for split in sorted({e.split for e in entries}):
        recs, sups, segment_cuts = [], [], []
        for e in entries:
            if e.split != split or e.recording not in recordings or (e.segment is not None and (split, e.id) not in spans):
                continue
            rec = recordings[e.recording]
            channel = rec.channel_ids[0] if len(rec.channel_ids) == 1 else rec.channel_ids
            # the audio's content in the manifest: a re-import of changed files changes the corpus's fingerprint
            # (speechrq.identity), so nothing computed from the old audio is reused
            custom = (e.custom or {}) | {"audio_sha256": report.digests[e.recording]}
            written[split, e.id] = e
            if e.segment is not None:  # a stretch of a long recording: the cut starts there, its supervision at 0
                start, duration = spans[split, e.id]
                sup = SupervisionSegment(id=e.id, recording_id=e.recording, start=0.0, duration=duration, channel=channel,
                                         text=e.text, speaker=e.speaker, language=e.language, gender=e.gender, custom=custom)
                cut_type = MonoCut if isinstance(channel, int) else MultiCut
                segment_cuts.append(cut_type(id=e.id, start=start, duration=duration, channel=channel, supervisions=[sup],
                                             recording=rec))
                continue
            alignment = None
            if e.alignment:
                alignment = {
                    k: [AlignmentItem(s, round(st, 5), round(min(du, rec.duration - st), 5)) for s, st, du in items if st < rec.duration]
                    for k, items in e.alignment.items()
                }
            recs.append(rec)
            sups.append(SupervisionSegment(
                id=e.id, recording_id=e.recording, start=0.0, duration=rec.duration, channel=channel,
                text=e.text, speaker=e.speaker, language=e.language, gender=e.gender, custom=custom, alignment=alignment,
            ))
        if not recs and not segment_cuts:
            continue
        cuts = list(CutSet.from_manifests(recordings=RecordingSet.from_recordings(recs),
                                          supervisions=SupervisionSet.from_segments(sups))) if recs else []
        # Other sample rates are resampled lazily, when a cut's audio is loaded.
        cuts = CutSet.from_cuts(c.resample(TARGET_RATE) if c.sampling_rate != TARGET_RATE else c for c in cuts + segment_cuts)
        with atomic_path(out / f"cuts_{split}.jsonl.gz") as tmp:
            cuts.to_file(tmp)
    # given but empty once normalised: kept (ASR training reports them), never dropped silently
    # (an utterance in several splits is counted once, if any of its transcripts is empty)
    empty = list(dict.fromkeys(uid for (_, uid), e in sorted(written.items()) if e.text is not None and not normalize_text(e.text)))
    atomic_write_json(out / "import_report.json", {"kind": kind, "source": str(src.resolve()), **report.to_dict(),
                                                   "empty_transcripts": {"count": len(empty), "ids": empty}, "overlap": overlap})
    if report.kept == 0:
        raise SpeechrqError(f"{src}: no usable audio among {len(files)} files (see {out / 'import_report.json'})")
    summary = summarize(out)
    summary["audio"] = report.to_dict()
    summary["empty_transcripts"] = {"count": len(empty), "examples": empty[:EMPTY_EXAMPLES]}
    summary["overlap"] = {k: overlap[k] for k in ("allowed", "count", "by_id", "by_content")} | \
        {"examples": overlap["pairs"][:EMPTY_EXAMPLES]}
    atomic_write_json(out / "summary.json", summary)
    return summary, report
