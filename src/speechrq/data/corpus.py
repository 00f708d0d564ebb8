"""A corpus directory, as every speechrq command reads and writes it.

``OUT/cuts_{split}.jsonl[.gz]`` are lhotse CutSets, one per split, each cut with
one supervision carrying whatever labels the corpus has (``text``, ``speaker``,
``custom.intent`` / ``action`` / ``object`` / ``location``, ``custom.emotion``, ``custom.audio_sha256``
(imported corpora: the first 16 hex digits of the file's sha256, so the manifests, and the corpus
fingerprint of :mod:`speechrq.identity`, change when a re-import finds other audio),
``alignment["phone"]``). ``OUT/summary.json`` holds the counts that :func:`summarize` prints.

**Audio paths.** A relative audio path in a manifest is relative to ``OUT`` (the corpus
folder), never to the directory a command runs in; :class:`LazyCuts` and :func:`load_cuts`
join it to the corpus folder as given when read (resolved against the current directory
at that moment). Writers keep to this: ``speechrq synth`` writes its audio under ``OUT`` and
stores paths relative to it; ``speechrq data import`` stores a file under ``OUT`` relative to
``OUT`` and any other file as an absolute path (the source folder made absolute first, so a
relative ``SRC`` works). Moving or renaming the corpus folder therefore keeps it readable:
its own audio moves with it, outside audio stays where the absolute path says (moving
*that* needs the manifests rewritten).

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


def load_cuts(corpus_dir: str | Path, split: str | list[str]):
    """The CutSet of one split (or several, concatenated), relative audio paths joined to ``corpus_dir`` (made absolute)."""
    from lhotse import CutSet

    if not isinstance(split, str):
        return CutSet.from_cuts([c for s in split for c in load_cuts(corpus_dir, s)])
    return CutSet.from_cuts(list(LazyCuts(corpus_dir, split)))


class LazyCuts:
    """The cuts of one split, read from its manifest one at a time on every iteration, paths resolved.

    Memory does not grow with the corpus: what a one-pass job over a whole corpus
    (unit sampling and encoding) iterates, as often as it needs. A relative audio path is
    joined to ``corpus_dir`` made absolute when the object is made, so a relative
    ``corpus_dir`` means the same folder whatever the current directory is later.
    """

    def __init__(self, corpus_dir: str | Path, split: str):
        files = cut_files(corpus_dir)
        if split not in files:
            raise SpeechrqError(f"{corpus_dir}: has no split {split!r} (it has {', '.join(files)})")
        self.path, self.root = files[split], str(Path(corpus_dir).resolve())

    def __iter__(self):
        from lhotse.serialization import load_manifest_lazy

        cuts = load_manifest_lazy(self.path)
        for cut in cuts if cuts is not None else ():  # lhotse reads an empty manifest as None
            src = cut.recording.sources[0] if cut.has_recording else None
            relative = src is not None and src.type == "file" and not Path(src.source).is_absolute()
            yield cut.with_recording_path_prefix(self.root) if relative else cut


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
