"""A corpus directory, as every speechrq command reads and writes it.

``OUT/cuts_{split}.jsonl[.gz]`` are lhotse CutSets, one per split, each cut with
one supervision carrying whatever labels the corpus has (``text``, ``speaker``,
``custom.intent`` / ``action`` / ``object`` / ``location``, ``custom.emotion``, ``custom.audio_sha256``
(imported corpora: the first 16 hex digits of the file's sha256, so the manifests, and the corpus
fingerprint of :mod:`speechrq.identity`, change when a re-import finds other audio),
``alignment["phone"]``). ``OUT/summary.json`` holds the counts that :func:`summarize` prints.

**Paths.** Every path speechrq writes into a manifest is absolute (``speechrq synth``'s audio,
``speechrq data import``'s audio, ``speechrq units encode``'s arrays), so lhotse alone
(``CutSet.from_file(...)``, ``cut.load_audio()``, ``cut.load_custom("units")``), ESPnet or a
user's script opens them from any directory. The folder's own path when its manifests were
written is recorded in ``OUT/paths.json`` (:func:`written_root`), which makes a moved folder
work: speechrq reads a path under the recorded folder under the folder's current path
(:class:`LazyCuts`, :func:`relocated`), and :func:`relocate` rewrites the manifests for
everyone else (``python -c "from speechrq.data.corpus import relocate; relocate('NEW/PLACE')"``;
a writer that adds to a moved folder does it first). Relative paths (folders written by older
versions) are relative to the folder, never to the directory a command runs in.
Fingerprints (:func:`speechrq.identity.manifest_fingerprint`) read paths under the folder
as relative to it, so a folder's fingerprint is the same wherever it lies, moved or not,
rewritten or not (and the same as an older version's relative manifests had).

**Ids.** Every utterance, recording and speaker id is valid in every format speechrq
writes: Kaldi / ESPnet text (``utt-id field ...``: no whitespace) and file names
(per-utterance caches, :func:`speechrq.io.utterance_file`). :func:`safe_id` is the one
mapping ``data import`` applies to the names a corpus gives (file paths, label-file ids,
speaker names): ``/`` becomes ``__``, every whitespace or control character (space, tab,
newline, NUL, ...) becomes ``_``, other characters (non-ASCII letters too) stay, and an id
over :data:`MAX_ID_BYTES` bytes of UTF-8 is cut and ends in a hash of the whole name. A
changed utterance id keeps its original in the supervision's ``custom["source_id"]``, a
changed speaker in ``custom["source_speaker"]``; two names that map to one id are refused,
naming both. Writers of text lines check ids again (:func:`text_id`) and refuse, in one
line, an id with whitespace (from a hand-made manifest) rather than write a broken line.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from pathlib import Path

from ..errors import SpeechrqError

MAX_ID_BYTES = 100  # an id's UTF-8 bytes: `<id>.npy` and its temporary name (the id twice when it holds dots) stay under 255


def _unsafe(ch: str) -> bool:
    """Whitespace (any Unicode space, tab, newline) or a control character: what splits or breaks a text line."""
    return ch.isspace() or unicodedata.category(ch) in ("Cc", "Cs", "Zs", "Zl", "Zp")


def safe_id(name: str) -> str:
    """The id of a corpus name (``speaker one/take 1`` -> ``speaker_one__take_1``): see the module docstring.

    Deterministic, and the identity for names that are already safe.
    """
    import hashlib

    name = unicodedata.normalize("NFC", name)  # "café" typed or decomposed is one id (two such files collide, refused)
    safe = "".join("__" if ch == "/" else "_" if _unsafe(ch) else ch for ch in name)
    if len(safe.encode("utf-8")) > MAX_ID_BYTES:
        head = safe.encode("utf-8")[: MAX_ID_BYTES - 17].decode("utf-8", errors="ignore")
        safe = f"{head}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"
    return safe


def id_problem(utt_id) -> str | None:
    """What makes ``utt_id`` unusable as the first field of a Kaldi / ESPnet text line, or None."""
    if not isinstance(utt_id, str) or not utt_id:
        return "is empty"
    bad = sorted({ch for ch in utt_id if _unsafe(ch)})
    if bad:
        return f"holds whitespace or control characters ({', '.join(repr(ch) for ch in bad)})"
    return None


def text_id(utt_id: str, where: str | Path = "") -> str:
    """``utt_id`` as the first field of a Kaldi / ESPnet text line, or a one-line :class:`SpeechrqError`.

    Ids made by ``data import`` and ``synth`` always pass; a hand-made manifest's may not.
    """
    problem = id_problem(utt_id)
    if problem:
        at = f"{where}: " if where else ""
        raise SpeechrqError(f"{at}utterance id {utt_id!r} {problem}: it cannot be the first field of a Kaldi/ESPnet text "
                            "line; give it an id without them in the manifest (`speechrq data import` maps such names itself)")
    return utt_id


def cut_files(corpus_dir: str | Path) -> dict[str, Path]:
    """``{split: manifest path}`` of a corpus directory."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise SpeechrqError(f"{corpus_dir}: no such corpus directory")
    files = {}
    for p in sorted(corpus_dir.glob("cuts_*.jsonl*")):
        split = p.name[len("cuts_") :].split(".jsonl")[0]
        files[split] = p
    if not files:
        raise SpeechrqError(f"{corpus_dir}: holds no cuts_*.jsonl manifest (make one with `speechrq synth` or `speechrq data import`)")
    return files


ROLE_PREFIXES = {"train": ("train",), "dev": ("dev", "valid"), "test": ("test", "eval")}


def default_split(corpus_dir: str | Path, role: str) -> str:
    """The split a command reads for ``role`` (train, dev or test) when none is named: the split called so, else the
    corpus's only split named for the role (``train-clean-100``, ``dev_clean``, ``valid``), else a one-line error
    listing the candidates (ML-SUPERB's ``train_10min`` and ``train_1h``) or the splits it has."""
    files = cut_files(corpus_dir)
    if role in files:
        return role
    found = [s for s in files if s.lower().startswith(ROLE_PREFIXES.get(role, (role,)))]
    if len(found) == 1:
        return found[0]
    why = f"several {role} splits ({', '.join(found)})" if found else f"no {role} split (it has {', '.join(files)})"
    raise SpeechrqError(f"{corpus_dir}: has {why}; name the one to use")


ROOT_FILE = "paths.json"  # {"root": the folder's absolute path when its manifests were written}


def written_root(folder: str | Path) -> str | None:
    """The absolute path ``folder`` had when its manifests were last written (``paths.json``), or None (none recorded)."""
    import json

    try:
        root = json.loads((Path(folder) / ROOT_FILE).read_text(encoding="utf-8")).get("root")
    except (OSError, ValueError, AttributeError):
        return None
    return root if isinstance(root, str) and Path(root).is_absolute() else None


def moved_path(path: str, old: str | None, new: str) -> str:
    """``path`` as it reads in a folder now at ``new``: relative -> under ``new``; under ``old`` -> the same place under
    ``new``; any other absolute path as it is."""
    if not Path(path).is_absolute():
        return str(Path(new) / path)
    if old and old != new:
        base = old.rstrip("/") or "/"
        if path == base or path.startswith(base.rstrip("/") + "/"):
            return new.rstrip("/") + path[len(base.rstrip("/")):]
    return path


def relocated(cut, old: str | None, new: str):
    """``cut`` with its audio files and its custom arrays (``cut.units``) read as in a folder moved from ``old`` to
    ``new`` (:func:`moved_path`); the same object when nothing moves."""
    from lhotse.array import Array, TemporalArray
    from lhotse.utils import fastcopy

    def array(a: Array) -> Array:
        if not a.storage_path or a.storage_type.startswith("memory"):
            return a
        path = moved_path(a.storage_path, old, new)
        return a if path == a.storage_path else fastcopy(a, storage_path=path)

    changes = {}
    rec = getattr(cut, "recording", None)
    if rec is not None:
        sources = [fastcopy(s, source=moved_path(s.source, old, new)) if s.type == "file" else s for s in rec.sources]
        if any(a.source != b.source for a, b in zip(sources, rec.sources)):
            changes["recording"] = fastcopy(rec, sources=sources)
    custom = getattr(cut, "custom", None) or {}
    moved = {}
    for key, value in custom.items():
        if isinstance(value, TemporalArray) and (a := array(value.array)) is not value.array:
            moved[key] = fastcopy(value, array=a)
        elif isinstance(value, Array) and (a := array(value)) is not value:
            moved[key] = a
    if moved:
        changes["custom"] = {**custom, **moved}
    return fastcopy(cut, **changes) if changes else cut


def record_root(folder: str | Path) -> None:
    """Before a writer writes manifests into ``folder``: manifests written when the folder lay elsewhere (or by an older
    version, with relative paths) are rewritten for where it lies now (:func:`relocate`), and its path is recorded."""
    from ..io import atomic_write_json

    folder = Path(folder)
    here = str(folder.resolve())
    if written_root(folder) == here:
        return
    if any(folder.glob("cuts_*.jsonl*")):
        relocate(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / ROOT_FILE, {"root": here, "about": "this folder's path when its manifests were written; "
                                           "after moving the folder, speechrq.data.corpus.relocate rewrites them"})


def relocate(folder: str | Path, old: str | None = None, new: str | None = None) -> list[Path]:
    """Rewrite every manifest of ``folder`` (``cuts_*.jsonl[.gz]``) so that its paths under ``old`` name the same files
    under ``new``; returns the manifests rewritten.

    Defaults: ``old`` the folder's recorded path (``paths.json``), ``new`` its path now: after moving or renaming a
    corpus or units folder, ``relocate(folder)`` makes its manifests open with lhotse alone again. With both given it
    follows another folder: ``relocate("exp/units", "/old/corpus", "/new/corpus")`` for the audio paths a units
    folder's manifests take from a corpus that moved. Relative paths (an older version's) become absolute.
    """
    from lhotse import CutSet
    from lhotse.serialization import load_manifest_lazy

    from ..io import atomic_path, atomic_write_json

    folder = Path(folder)
    here = str(folder.resolve())
    old = str(Path(old).resolve()) if old else written_root(folder)
    new = str(Path(new).resolve()) if new else here
    done = []
    for path in cut_files(folder).values():
        cuts = load_manifest_lazy(path)
        with atomic_path(path) as tmp, CutSet.open_writer(tmp) as writer:
            for cut in cuts if cuts is not None else ():
                writer.write(relocated(cut, old, new))
        done.append(path)
    if new == here:  # the folder's own paths: record where it lies now
        atomic_write_json(folder / ROOT_FILE, {"root": here, "about": "this folder's path when its manifests were written; "
                                               "after moving the folder, speechrq.data.corpus.relocate rewrites them"})
    return done


def load_cuts(corpus_dir: str | Path, split: str | list[str]):
    """The CutSet of one split (or several, concatenated), paths read as :class:`LazyCuts` reads them."""
    from lhotse import CutSet

    if not isinstance(split, str):
        return CutSet.from_cuts([c for s in split for c in load_cuts(corpus_dir, s)])
    return CutSet.from_cuts(list(LazyCuts(corpus_dir, split)))


class LazyCuts:
    """The cuts of one split, read from its manifest one at a time on every iteration, paths resolved.

    Memory does not grow with the corpus: what a one-pass job over a whole corpus
    (unit sampling and encoding) iterates, as often as it needs. ``corpus_dir`` is made absolute
    when the object is made, so a relative ``corpus_dir`` means the same folder whatever the
    current directory is later; a path under the folder's recorded path (``paths.json``: where it
    lay when written) is read under its current path, a relative one (an older version's) under it too.
    """

    def __init__(self, corpus_dir: str | Path, split: str):
        files = cut_files(corpus_dir)
        if split not in files:
            raise SpeechrqError(f"{corpus_dir}: has no split {split!r} (it has {', '.join(files)})")
        self.path, self.root, self.written = files[split], str(Path(corpus_dir).resolve()), written_root(corpus_dir)

    def __iter__(self):
        from lhotse.serialization import load_manifest_lazy

        cuts = load_manifest_lazy(self.path)
        for cut in cuts if cuts is not None else ():  # lhotse reads an empty manifest as None
            yield relocated(cut, self.written, self.root)  # a moved folder reads its own files where they are now


def seeded_subset(cuts, n: int, seed: int):
    """The first ``n`` cuts of ``cuts`` shuffled with ``random.Random(seed)``: the same sample on every rank and run."""
    import random

    return cuts.shuffle(rng=random.Random(seed)).subset(first=min(n, len(cuts)))


def summarize(corpus_dir: str | Path) -> dict:
    """Counts per split: utterances, hours, speakers and every label kind."""
    from lhotse import CutSet

    out = {"splits": {}}
    speakers, emotions, intents, kinds, languages = set(), Counter(), Counter(), Counter(), Counter()
    with_phones = total = 0
    for split, path in cut_files(corpus_dir).items():
        cuts = CutSet.from_file(path)
        n, secs, spk = 0, 0.0, set()
        for cut in cuts:
            n += 1
            secs += cut.duration
            for sup in cut.supervisions:
                if sup.speaker:
                    spk.add(sup.speaker)
                custom = sup.custom or {}
                if "emotion" in custom:
                    emotions[custom["emotion"]] += 1
                if "intent" in custom:
                    intents[custom["intent"]] += 1
                kinds[custom.get("kind", "text" if sup.text else "audio")] += 1
                languages[sup.language] += 1
                with_phones += bool(sup.alignment and sup.alignment.get("phone"))
        total += n
        speakers |= spk
        out["splits"][split] = {"utterances": n, "hours": round(secs / 3600, 4), "speakers": len(spk)}
    out["utterances"] = total
    out["hours"] = round(sum(s["hours"] for s in out["splits"].values()), 4)
    out["speakers"] = len(speakers)
    out["kinds"] = dict(sorted(kinds.items()))
    out["emotions"] = dict(sorted(emotions.items()))
    out["intents"] = len(intents)
    out["phone_aligned"] = with_phones
    if len(languages) > 1:  # a multilingual corpus: utterances per language id (the LID labels)
        out["languages"] = {str(k): v for k, v in sorted(languages.items(), key=lambda kv: str(kv[0]))}
    return out


def format_summary(summary: dict, title: str = "") -> str:
    lines = [title] if title else []
    lines.append(f"{'split':<18}{'utterances':>11}{'hours':>9}{'speakers':>10}")
    for split, s in summary["splits"].items():
        lines.append(f"{split:<18}{s['utterances']:>11}{s['hours']:>9.3f}{s['speakers']:>10}")
    lines.append(f"{'total':<18}{summary['utterances']:>11}{summary['hours']:>9.3f}{summary['speakers']:>10}")
    if summary.get("kinds"):
        lines.append("kinds:    " + ", ".join(f"{k}={v}" for k, v in summary["kinds"].items()))
    if summary.get("languages"):
        lines.append("languages: " + ", ".join(f"{k}={v}" for k, v in summary["languages"].items()))
    if summary.get("emotions"):
        lines.append("emotions: " + ", ".join(f"{k}={v}" for k, v in summary["emotions"].items()))
    if summary.get("intents"):
        lines.append(f"intents:  {summary['intents']} distinct")
    lines.append(f"phone alignments: {summary.get('phone_aligned', 0)} of {summary['utterances']} utterances")
    return "\n".join(lines)
