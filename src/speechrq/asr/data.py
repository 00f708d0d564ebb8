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

:class:`ASRData` holds all of it for one model: made from the config's ``data`` section for training
(:meth:`ASRData.from_config`), or from a trained model's saved spec for decoding and transcription
(:meth:`ASRData.for_model`). The trainer, ``asr decode``, ``asr transcribe`` and ``asr compare`` read
their units, input ids, output tokens and the identity of what they read through it.
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


class ASRData:
    """What one discrete-unit ASR model reads: its units folder, its input kind, the unit BPE, and the output tokens.

    Args:
        kind: ``units``, ``dedup``, ``bpe`` or ``continuous`` (:data:`speechrq.asr.config.INPUTS`).
        source: the ``units encode`` folder; None for transcription from audio alone (:meth:`for_model` with
            ``units=None`` and ``need_units=False``), where only the quantizer is read.
        unit_bpe: the unit BPE model (``input: bpe``); read from ``source`` when not given.
        quantizer_dir: where the quantizer is, when there is no ``source``.

    Raises:
        SpeechrqError: an unknown kind, a ``bpe`` input without a unit BPE, or (``for_model``) units made by
            another quantizer than the model's, each in one line.
    """

    def __init__(self, kind: str, source: UnitSource | None = None, unit_bpe=None, quantizer_dir: str | Path | None = None):
        from .config import INPUTS

        if kind not in INPUTS:
            raise SpeechrqError(f"input {kind!r}: one of {', '.join(INPUTS)}")
        self.kind, self._source = kind, source
        self.quantizer_dir = Path(quantizer_dir) if quantizer_dir is not None else (source.quantizer_dir if source else None)
        self._quantizer = source.quantizer if source is not None else None
        self.unit_bpe = unit_bpe if unit_bpe is not None or kind != "bpe" else self.source.unit_bpe()

    @classmethod
    def from_config(cls, data) -> "ASRData":
        """For training: ``data`` is the config's :class:`~speechrq.asr.config.ASRDataConfig` (``units``, ``input``)."""
        return cls(data.input, UnitSource(data.units))

    @classmethod
    def for_model(cls, spec: dict, unit_bpe=None, units: str | Path | None = None, need_units: bool = True) -> "ASRData":
        """For a trained model (its saved ``spec``, :func:`speechrq.asr.trainer.model_spec`): the units folder it was
        trained on, or ``units`` made elsewhere by the same quantizer (checked by the quantizer's weights, one line if
        not); with ``need_units=False`` and no ``units``, no units folder is read (transcription from audio)."""
        if units is None and not need_units:
            return cls(spec["input"], None, unit_bpe, spec["quantizer_dir"])
        source = UnitSource(units or spec["units_dir"])
        from ..io import file_fingerprint
        from ..units.quantizers import WEIGHTS_FILE

        if file_fingerprint(source.quantizer_dir / WEIGHTS_FILE) != quantizer_fingerprint(spec):
            raise SpeechrqError(f"{source.dir}: its units come from {source.quantizer_dir}, not from the quantizer the model was "
                                f"trained on ({spec['quantizer_dir']})")
        return cls(spec["input"], source, unit_bpe)

    @property
    def source(self) -> UnitSource:
        if self._source is None:
            raise SpeechrqError("no units folder given (this ASR data reads audio only)")
        return self._source

    @property
    def quantizer(self):
        """The quantizer the units come from (loaded on first use when there is no units folder)."""
        if self._quantizer is None:
            from ..units.quantizers import UnitQuantizer

            self._quantizer = UnitQuantizer.load(self.quantizer_dir)
        return self._quantizer

    def cuts(self, split: str):
        """One split's units cuts (lazy CutSet; one line when the folder has no such split)."""
        return self.source.cuts(split)

    def identity(self, cuts, split: str) -> tuple[dict, dict]:
        """``(inputs, defaults)`` for :func:`speechrq.training.engine.resume_point`: what a run on ``split`` (its
        ``cuts``) reads besides its config — the units (quantizer, encoder, corpus content), the split's manifest, the
        unit BPE (``input: bpe``) and the transcripts as read; ``defaults`` stand in for inputs older runs did not record."""
        from ..text import legacy_ascii_text, transcripts_digest

        inputs = {"units": self.source.fingerprint, "train": self.source.manifest_fingerprint(split)}
        if self.kind == "bpe":  # the unit BPE is retrained when `units encode --bpe` runs again
            from ..io import file_fingerprint

            path = self.source.dir / "bpe.model"
            inputs["unit_bpe"] = file_fingerprint(path) if path.exists() else None
        texts = [c.supervisions[0].text if c.supervisions else "" for c in cuts]
        inputs["transcripts"] = transcripts_digest(texts)
        return inputs, {"transcripts": transcripts_digest(texts, legacy_ascii_text)}

    def model_inputs(self) -> dict:
        """The input side of a model's spec (saved in ``meta.json``): where the units come from (folder, quantizer and
        its weights' fingerprint, encoder, layer, frame shift in ms), streams, unit vocabulary or feature dimension."""
        from ..io import file_fingerprint
        from ..units.quantizers import WEIGHTS_FILE

        encoder, layer, frame_ms = self.source.encoder
        spec = {"units_dir": str(self.source.dir.resolve()), "quantizer_dir": str(self.source.quantizer_dir.resolve()),
                "encoder": str(Path(encoder).resolve()), "layer": layer, "frame_ms": frame_ms, "num_streams": 1, "unit_vocab": 0,
                "input_dim": 0}
        # the quantizer by content too: a decode checks units made elsewhere against it after the units folder moved
        spec["quantizer_fingerprint"] = file_fingerprint(self.source.quantizer_dir / WEIGHTS_FILE)
        if self.kind == "units":
            spec |= {"num_streams": self.source.num_streams, "unit_vocab": self.source.unit_vocab}
        elif self.kind == "dedup":
            spec |= {"unit_vocab": self.source.unit_vocab}
        elif self.kind == "bpe":
            spec |= {"unit_vocab": len(self.unit_bpe)}
        else:
            spec |= {"input_dim": self.quantizer.dim}
        return spec

    def output_tokens(self, cuts, output: str, vocab_size: int, path: Path) -> "BPETokenizer":
        """Train the output tokenizer on ``cuts``' transcripts into ``path``: characters (``output: char``), or BPE of
        ``vocab_size`` tokens (0: :func:`auto_vocab_size`)."""
        texts = [c.supervisions[0].text or "" for c in cuts if c.supervisions]
        if output == "char":
            BPETokenizer.characters(texts, path)
        else:
            BPETokenizer.train(texts, vocab_size or auto_vocab_size(texts), path)
        return BPETokenizer(path)

    def sequence(self, units: np.ndarray) -> np.ndarray:
        """One utterance's ``[T, M]`` units -> the model's input ids ``[T', M']`` (:func:`unit_sequence`)."""
        return unit_sequence(units, self.kind, self.unit_bpe)

    def inputs(self, cuts) -> tuple[torch.Tensor, torch.Tensor]:
        """Units cuts -> padded input ids ``[B, T', M']`` and their lengths ``[B]``."""
        return pad_ids([self.sequence(c.load_custom("units")) for c in cuts])

    def inputs_from_states(self, states: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder-layer states ``[B, T, D]`` (frames ``lens``) -> the model's input: the states themselves
        (continuous), or each utterance's units through the quantizer, as input ids ``[B, T', M']``."""
        if self.kind == "continuous":
            return states, lens
        seqs = [self.sequence(self.quantizer.encode(states[i, :n].float().cpu().numpy())) for i, n in enumerate(lens.tolist())]
        return pad_ids(seqs)

    def batches(self, tokenizer: "BPETokenizer") -> "ASRBatches":
        """The training dataset: a sampler's CutSet -> padded inputs and output tokens."""
        return ASRBatches(self, tokenizer)


def quantizer_fingerprint(spec: dict) -> str:
    """The weights fingerprint of the quantizer a model's units came from: recorded at training, so it holds after the
    units folder moved (a model saved before it was recorded: read where the quantizer was, one line if it is gone)."""
    if spec.get("quantizer_fingerprint"):
        return spec["quantizer_fingerprint"]
    from ..io import file_fingerprint
    from ..units.quantizers import WEIGHTS_FILE

    path = Path(spec["quantizer_dir"]) / WEIGHTS_FILE
    if not path.exists():
        raise SpeechrqError(f"the model was trained on the quantizer in {spec['quantizer_dir']}, which is no longer there (its "
                            "units folder moved?); this checkpoint predates recording the quantizer's fingerprint")
    return file_fingerprint(path)


class ASRBatches(torch.utils.data.Dataset):
    """A CutSet (one sampler batch) -> ``{"cuts", "inputs", "input_lens", "tokens", "token_lens"}`` (+ audio for continuous)."""

    def __init__(self, data: ASRData, tokenizer: BPETokenizer):
        from ..data.batching import AudioBatches

        self.data, self.kind, self.tokenizer = data, data.kind, tokenizer
        self.audio = AudioBatches() if data.kind == "continuous" else None
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
            out["inputs"], out["input_lens"] = self.data.inputs(keep)
        out["cuts"] = CutSet.from_cuts(keep)
        if keep:
            out["tokens"], out["token_lens"] = pad_ids([self.tokenizer.encode(c.supervisions[0].text) for c in keep])
        return out
