"""A corpus directory, as every speechrq command reads and writes it.

``OUT/cuts_{split}.jsonl[.gz]`` are lhotse CutSets, one per split, each cut with
one supervision carrying whatever labels the corpus has (``text``, ``speaker``,
``custom.intent`` / ``action`` / ``object`` / ``location``, ``custom.emotion``,
``alignment["phone"]``). Relative audio paths are relative to ``OUT``.
``OUT/summary.json`` holds the counts that :func:`summarize` prints.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..errors import SpeechrqError


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
    """The CutSet of one split (or several, concatenated), audio paths resolved against ``corpus_dir``."""
    from lhotse import CutSet

    if not isinstance(split, str):
        return CutSet.from_cuts([c for s in split for c in load_cuts(corpus_dir, s)])
    return CutSet.from_cuts(list(LazyCuts(corpus_dir, split)))


class LazyCuts:
    """The cuts of one split, read from its manifest one at a time on every iteration, paths resolved.

    Memory does not grow with the corpus: what a one-pass job over a whole corpus
    (unit sampling and encoding) iterates, as often as it needs.
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
    speakers, emotions, intents, kinds = set(), Counter(), Counter(), Counter()
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
    return out


def format_summary(summary: dict, title: str = "") -> str:
    lines = [title] if title else []
    lines.append(f"{'split':<18}{'utterances':>11}{'hours':>9}{'speakers':>10}")
    for split, s in summary["splits"].items():
        lines.append(f"{split:<18}{s['utterances']:>11}{s['hours']:>9.3f}{s['speakers']:>10}")
    lines.append(f"{'total':<18}{summary['utterances']:>11}{summary['hours']:>9.3f}{summary['speakers']:>10}")
    if summary.get("kinds"):
        lines.append("kinds:    " + ", ".join(f"{k}={v}" for k, v in summary["kinds"].items()))
    if summary.get("emotions"):
        lines.append("emotions: " + ", ".join(f"{k}={v}" for k, v in summary["emotions"].items()))
    if summary.get("intents"):
        lines.append(f"intents:  {summary['intents']} distinct")
    lines.append(f"phone alignments: {summary.get('phone_aligned', 0)} of {summary['utterances']} utterances")
    return "\n".join(lines)
