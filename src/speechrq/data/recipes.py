"""``speechrq data import KIND SRC OUT``: real corpora as speechrq corpus directories.

Every recipe is one function of the same shape, ``recipe(src) -> list[Entry | Rejected]``:
it reads the corpus's own layout and label files and says, per utterance, which
split it belongs to, where its audio is and what its labels are; a label file (or
line) it cannot use becomes a :class:`Rejected` naming it, reported like bad audio,
and the import goes on. It never opens audio. :func:`import_corpus` then checks every file (:mod:`speechrq.data.audio`),
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
``prepare_slu``)? They stop at the first unreadable file, and a single bad file
must never stop an import. The label parsing here follows them (TIMIT's split
speakers come from lhotse itself); SID's VoxCeleb1 identification split and
IEMOCAP have no lhotse recipe for what SUPERB needs.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import SpeechrqError
from ..io import atomic_path, atomic_write_json, read_json
from .audio import AUDIO_EXTENSIONS, TARGET_RATE, inspect_many


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
    """A label file's text, or :class:`LabelError` naming it (missing, unreadable, not UTF-8)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabelError(path, "label file not found") from None
    except UnicodeDecodeError as e:
        raise LabelError(path, f"not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
    except OSError as e:
        raise LabelError(path, f"cannot read ({e.strerror or e})") from None


# --------------------------------------------------------------------------- recipes


def librispeech(src: Path) -> list[Entry | Rejected]:
    """LibriSpeech: ``SRC/{part}/{speaker}/{chapter}/{speaker}-{chapter}.trans.txt`` and
    ``...-{utt}.flac``; every part (train-clean-100, dev-clean, ...) becomes a split."""
    entries = []
    parts = sorted(p for p in src.iterdir() if p.is_dir() and any(p.glob("*/*/*.trans.txt")))
    if not parts:
        raise SpeechrqError(f"{src}: no LibriSpeech part found (expected PART/SPEAKER/CHAPTER/*.trans.txt)")
    for part in parts:
        for trans in sorted(part.glob("*/*/*.trans.txt")):
            try:
                lines = _read_labels(trans).splitlines()
            except LabelError as e:
                entries.append(Rejected(e.source, e.problem))
                continue
            for lineno, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                utt, _, text = line.strip().partition(" ")
                if not text:
                    entries.append(Rejected(f"{trans}:{lineno}", f"expected 'UTTERANCE-ID TRANSCRIPT', got {line[:80]!r}"))
                    continue
                entries.append(Entry(part.name, trans.parent / f"{utt}.flac", utt, text=text, speaker=utt.split("-")[0]))
    return entries


TIMIT_RATE = 16000  # TIMIT's .PHN/.WRD offsets count samples of its own 16 kHz recordings


def _timit_items(path: Path, rate: int, kind: str) -> list[tuple[str, float, float]]:
    items = []
    for lineno, line in enumerate(_read_labels(path).splitlines(), 1):
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
                text = " ".join(_read_labels(txt).split()[2:])
                alignment = {"phone": _timit_items(phn, TIMIT_RATE, "phone"), "word": _timit_items(wrd, TIMIT_RATE, "word")}
            except LabelError as e:
                entries.append(Rejected(e.source, e.problem))
                continue
            entries.append(Entry(split, wav, f"{speaker}-{wav.stem}", text=text, speaker=speaker, alignment=alignment))
    return entries


def voxceleb1(src: Path) -> list[Entry | Rejected]:
    """VoxCeleb1 identification (SUPERB SID): ``SRC/wav/idXXXXX/VIDEO/NNNNN.wav`` and
    ``SRC/iden_split.txt`` (``1|2|3 idXXXXX/VIDEO/NNNNN.wav`` = train|dev|test)."""
    split_file = _require(src / "iden_split.txt", "VoxCeleb1 identification split")
    names = {"1": "train", "2": "dev", "3": "test"}
    entries = []
    try:
        lines = _read_labels(split_file).splitlines()
    except LabelError as e:  # the split definition itself: nothing can be imported without it
        raise SpeechrqError(str(e)) from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or fields[0] not in names:
            entries.append(Rejected(f"{split_file}:{lineno}", f"expected '1|2|3 SPEAKER/VIDEO/FILE.wav', got {line[:80]!r}"))
            continue
        rel = fields[1]
        speaker = rel.split("/")[0]
        entries.append(Entry(names[fields[0]], src / "wav" / rel, rel.rsplit(".", 1)[0].replace("/", "-"), speaker=speaker))
    return entries


def fsc(src: Path) -> list[Entry | Rejected]:
    """Fluent Speech Commands: ``SRC/data/{train,valid,test}_data.csv`` (columns path,
    speakerId, transcription, action, object, location); valid becomes dev."""
    entries = []
    for name, split in (("train", "train"), ("valid", "dev"), ("test", "test")):
        table = _require(src / "data" / f"{name}_data.csv", "Fluent Speech Commands split table")
        try:
            reader = csv.DictReader(io.StringIO(_read_labels(table), newline=""))
            columns = ("path", "speakerId", "transcription", "action", "object", "location")
            missing = set(columns) - set(reader.fieldnames or [])
            if missing:
                raise LabelError(table, f"missing column(s) {', '.join(sorted(missing))}")
            rows = list(reader)
        except (LabelError, csv.Error) as e:
            entries.append(Rejected(*(e.source, e.problem) if isinstance(e, LabelError) else (table, f"malformed CSV ({e})")))
            continue
        for lineno, row in enumerate(rows, 2):
            if any(not row.get(k) for k in columns):
                entries.append(Rejected(f"{table}:{lineno}", "a row with empty or missing fields"))
                continue
            intent = {k: row[k] for k in ("action", "object", "location")}
            intent["intent"] = f"{row['action']}|{row['object']}|{row['location']}"
            rid = Path(row["path"]).stem
            entries.append(Entry(split, src / row["path"], rid, text=row["transcription"], speaker=row["speakerId"], custom=intent))
    return entries


IEMOCAP_EMOTIONS = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"}
_IEMOCAP_LINE = re.compile(r"^\[[\d.]+ - [\d.]+\]\s+(Ses\w+)\s+(\w+)\s+\[")


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
            for line in tr.read_text(errors="replace").splitlines():
                m = re.match(r"^(Ses\w+) \[[\d.\-]+\]:\s*(.*)$", line)
                if m:
                    texts[m.group(1)] = m.group(2).strip()
        evals = sorted((_require(session / "dialog" / "EmoEvaluation", "IEMOCAP labels")).glob("*.txt"))
        for ev in evals:
            for line in ev.read_text(errors="replace").splitlines():
                m = _IEMOCAP_LINE.match(line)
                if not m or m.group(2) not in IEMOCAP_EMOTIONS:
                    continue
                utt = m.group(1)
                dialog = utt.rsplit("_", 1)[0]
                # Ses01F_impro01_F000: the speaker's gender is the letter of the last field
                speaker = f"{utt[:5]}{utt.rsplit('_', 1)[1][0]}"
                wav = session / "sentences" / "wav" / dialog / f"{utt}.wav"
                custom = {"emotion": IEMOCAP_EMOTIONS[m.group(2)], "emotion_raw": m.group(2), "session": session.name}
                entries.append(Entry(split, wav, utt, text=texts.get(utt), speaker=speaker, custom=custom))
    return entries


def folder(src: Path) -> list[Entry | Rejected]:
    """Any tree of audio files, unlabelled (pre-training data): one split, ``train``."""
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise SpeechrqError(f"{src}: holds no audio file ({', '.join(AUDIO_EXTENSIONS)})")
    # the id is the path under SRC without its extension; import_corpus makes it safe ('/' -> '__', spaces -> '_')
    return [Entry("train", p, str(p.relative_to(src).with_suffix(""))) for p in files]


RECIPES: dict[str, Callable[[Path], list[Entry | Rejected]]] = {
    "librispeech": librispeech,
    "timit": timit,
    "voxceleb1": voxceleb1,
    "fsc": fsc,
    "iemocap": iemocap,
    "folder": folder,
}


# --------------------------------------------------------------------------- driver


def safe_entries(entries: list[Entry], src: Path) -> tuple[list[Entry], list[Rejected]]:
    """Every utterance and speaker id through :func:`~speechrq.data.corpus.safe_id`, originals kept in ``custom``.

    An empty id is rejected (reported like bad audio); two different names that become one id, or one
    utterance id given twice, stop the import with one line naming both.
    """
    from .corpus import safe_id

    kept, rejected = [], []
    utt_names: dict[str, Entry] = {}
    speaker_names: dict[str, str] = {}
    for e in entries:
        uid = safe_id(e.id)
        if not uid:
            rejected.append(Rejected(str(e.audio), "empty utterance id"))
            continue
        if uid in utt_names:
            first = utt_names[uid]
            if first.id == e.id:
                raise SpeechrqError(f"{src}: utterance id {e.id!r} occurs more than once ({first.audio} and {e.audio})")
            raise SpeechrqError(f"{src}: utterance ids {first.id!r} ({first.audio}) and {e.id!r} ({e.audio}) both become {uid!r} "
                                "(whitespace and control characters become '_', '/' becomes '__'); rename one of them")
        utt_names[uid] = e
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
        kept.append(Entry(e.split, e.audio, uid, text=e.text, speaker=speaker, custom=custom, alignment=e.alignment))
    return kept, rejected


def stored_path(audio: str | Path, out: Path) -> str:
    """How a manifest stores ``audio``: relative to the corpus folder ``out`` when under it, else absolute.

    Relative paths are read against the corpus folder (:class:`~speechrq.data.corpus.LazyCuts`), so a
    corpus keeps reading its own audio when moved; outside audio keeps its absolute path.
    """
    absolute = Path(os.path.abspath(audio))
    try:
        return str(absolute.resolve().relative_to(out.resolve()))
    except ValueError:
        return str(absolute)


def import_corpus(kind: str, src: str | Path, out: str | Path, workers: int = 4, progress: bool = True):
    """Import corpus ``kind`` from ``src`` into the corpus directory ``out``.

    Returns ``(summary, report)``: the corpus summary (with the audio report under
    ``"audio"``) and the :class:`~speechrq.data.audio.InspectionReport`.
    """
    from lhotse import CutSet, RecordingSet, SupervisionSet
    from lhotse.supervision import AlignmentItem, SupervisionSegment
    from lhotse.utils import fastcopy

    from .corpus import cut_files, summarize

    if kind not in RECIPES:
        raise SpeechrqError(f"data import: unknown KIND {kind!r} (choose from {', '.join(RECIPES)})")
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise SpeechrqError(f"{src}: no such directory")
    # absolute before the recipe runs: every audio path it makes is then absolute, whatever the current directory
    found = RECIPES[kind](Path(os.path.abspath(src)))
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
    recordings, report = inspect_many(((e.audio, e.id) for e in entries), workers=workers, progress=progress)
    report.skipped.update({r.source: r.problem for r in rejected})
    out.mkdir(parents=True, exist_ok=True)
    for split in sorted({e.split for e in entries}):
        recs, sups = [], []
        for e in entries:
            if e.split != split or e.id not in recordings:
                continue
            rec = recordings[e.id]
            alignment = None
            if e.alignment:
                alignment = {
                    k: [AlignmentItem(s, round(st, 5), round(min(du, rec.duration - st), 5)) for s, st, du in items if st < rec.duration]
                    for k, items in e.alignment.items()
                }
            channel = rec.channel_ids[0] if len(rec.channel_ids) == 1 else rec.channel_ids
            rec.sources = [fastcopy(source, source=stored_path(source.source, out)) for source in rec.sources]
            recs.append(rec)
            # the audio's content in the manifest: a re-import of changed files changes the corpus's fingerprint
            # (speechrq.identity), so nothing computed from the old audio is reused
            custom = (e.custom or {}) | {"audio_sha256": report.digests[e.id]}
            sups.append(SupervisionSegment(
                id=e.id, recording_id=e.id, start=0.0, duration=rec.duration, channel=channel,
                text=e.text, speaker=e.speaker, custom=custom, alignment=alignment,
            ))
        if not recs:
            continue
        cuts = CutSet.from_manifests(recordings=RecordingSet.from_recordings(recs), supervisions=SupervisionSet.from_segments(sups))
        # Other sample rates are resampled lazily, when a cut's audio is loaded.
        cuts = CutSet.from_cuts(c.resample(TARGET_RATE) if c.sampling_rate != TARGET_RATE else c for c in cuts)
        with atomic_path(out / f"cuts_{split}.jsonl.gz") as tmp:
            cuts.to_file(tmp)
    atomic_write_json(out / "import_report.json", {"kind": kind, "source": str(src.resolve()), **report.to_dict()})
    if report.kept == 0:
        raise SpeechrqError(f"{src}: no usable audio among {len(entries)} files (see {out / 'import_report.json'})")
    summary = summarize(out)
    summary["audio"] = report.to_dict()
    atomic_write_json(out / "summary.json", summary)
    return summary, report
