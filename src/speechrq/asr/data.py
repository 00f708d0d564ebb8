"""What discrete-unit ASR reads: a units manifest, its input kind, and output tokens.

A ``speechrq units encode`` directory holds ``cuts_SPLIT.jsonl.gz`` (the corpus's cuts, each
with its ``units`` array), ``encode.json`` (which quantizer made them) and, with ``--bpe``,
the unit BPE model. :class:`UnitSource` reads it; :class:`ASRBatches` maps a batch of cuts
to padded tensors for one input kind:

- ``units``: ``[B, T, M]`` unit ids of every stream;
- ``dedup``: ``[B, T', 1]`` single-stream units with repeats removed;
- ``bpe``: ``[B, T'', 1]`` unit-BPE ids of the de-duplicated units;
- ``continuous``: the audio (the trainer runs the quantizer's encoder layer on it).

Output tokens are sentencepiece BPE ids of the normalised transcript (:mod:`speechrq.text`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import SpeechrqError
from ..io import read_json
from ..text import BPETokenizer, normalize_text


class UnitSource:
    """A ``units encode`` output directory: manifests, the quantizer that made them, the unit BPE."""

    def __init__(self, directory: str | Path):
        from ..units.quantizers import UnitQuantizer

        self.dir = Path(directory)
        if not (self.dir / "encode.json").exists():
            raise SpeechrqError(f"{self.dir}: not a `speechrq units encode` output (no encode.json)")
        self.summary = read_json(self.dir / "encode.json")
        # the copy `units encode` keeps beside the units (older folders: the path it was fitted in)
        own = self.dir / "quantizer"
        self.quantizer_dir = own if (own / "units.json").exists() else Path(self.summary["quantizer"])
        self.quantizer = UnitQuantizer.load(self.quantizer_dir)

    @property
    def fingerprint(self) -> str:
        """What made these units (quantizer weights, encoder, corpus content), as 16 hex digits: the
        identity ``units encode`` recorded (:mod:`speechrq.identity`)."""
        from ..identity import digest, recorded
        from ..io import file_fingerprint
        from ..units.quantizers import WEIGHTS_FILE

        return digest(recorded(self.dir) or {"encode": self.summary, "quantizer": file_fingerprint(self.quantizer_dir / WEIGHTS_FILE)})

    def manifest_fingerprint(self, split: str) -> str:
        """The content of one split's units manifest (:func:`speechrq.identity.manifest_fingerprint`)."""
        from ..identity import manifest_fingerprint

        return manifest_fingerprint(self._manifest(split))

    @property
    def num_streams(self) -> int:
        return self.quantizer.num_streams

    @property
    def unit_vocab(self) -> int:
        return self.quantizer.spec.k

    @property
    def encoder(self) -> tuple[str, int, int]:
        """The encoder path, layer and frame shift (ms) the units were made at (the continuous baseline reads the same)."""
        from ..units.run import recorded_frame_ms

        return self.quantizer.source["encoder"], int(self.quantizer.source["layer"]), recorded_frame_ms(self.quantizer.source)

    def _manifest(self, split: str) -> Path:
        from ..units.encode import manifest_path

        path = manifest_path(self.dir, split)
        if not path.exists():
            raise SpeechrqError(f"{self.dir}: has no split {split!r} (encode it: `speechrq units encode ... --splits {split}`)")
        return path

    def cuts(self, split: str):
        from ..units.encode import load_units

        return load_units(self._manifest(split))

    def unit_bpe(self):
        from ..units.bpe import load_bpe

        path = self.dir / "bpe.model"
        if not path.exists():
            raise SpeechrqError(f"{self.dir}: no unit BPE (bpe.model); encode with `speechrq units encode ... --bpe V` for input: bpe")
        return load_bpe(path)


def auto_vocab_size(texts: list[str]) -> int:
    """The output BPE size that fits a corpus: half its distinct words, between 32 and the paper's 6000."""
    words = {w for t in texts for w in normalize_text(t).split()}
    return int(min(6000, max(32, len(words) // 2)))


def unit_sequence(units: np.ndarray, kind: str, unit_bpe=None) -> np.ndarray:
    """``uint16 [T, M]`` units -> the model's input ids ``[T', M']`` for ``kind``."""
    from ..units.bpe import deduplicate, encode_bpe

    if kind == "units":
        return units.astype(np.int64)
    if units.shape[1] != 1:
        raise SpeechrqError(f"input {kind}: for single-stream units; these have {units.shape[1]} streams (use input: units)")
    dedup = deduplicate(units[:, 0]).astype(np.int64)
    if kind == "dedup":
        return dedup[:, None]
    return np.asarray(encode_bpe(unit_bpe, dedup), dtype=np.int64)[:, None]


def pad_ids(seqs: list[np.ndarray | list[int]], fill: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences ``[T_i, ...]`` -> padded ``[B, T, ...]`` long tensor and lengths."""
    arrays = [torch.as_tensor(np.asarray(s), dtype=torch.long) for s in seqs]
    lens = torch.tensor([len(a) for a in arrays], dtype=torch.long)
    out = torch.full((len(arrays), int(lens.max()) if arrays else 0, *arrays[0].shape[1:]), fill, dtype=torch.long)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out, lens


class ASRBatches(torch.utils.data.Dataset):
    """A CutSet (one sampler batch) -> ``{"cuts", "inputs", "input_lens", "tokens", "token_lens"}`` (+ audio for continuous)."""

    def __init__(self, kind: str, tokenizer: BPETokenizer, unit_bpe=None):
        from ..data.batching import AudioBatches

        self.kind, self.tokenizer, self.unit_bpe = kind, tokenizer, unit_bpe
        self.audio = AudioBatches() if kind == "continuous" else None
        self.skipped = 0

    def __getitem__(self, cuts) -> dict:
        from lhotse import CutSet

        keep = [c for c in cuts if normalize_text(c.supervisions[0].text if c.supervisions else "")]
        self.skipped += len(cuts) - len(keep)
        out: dict = {}
        if self.kind == "continuous":
            out = self.audio[CutSet.from_cuts(keep)]
            keep = list(out["cuts"])
        elif keep:
            inputs = [unit_sequence(c.load_custom("units"), self.kind, self.unit_bpe) for c in keep]
            out["inputs"], out["input_lens"] = pad_ids(inputs)
        out["cuts"] = CutSet.from_cuts(keep)
        if keep:
            out["tokens"], out["token_lens"] = pad_ids([self.tokenizer.encode(c.supervisions[0].text) for c in keep])
        return out
