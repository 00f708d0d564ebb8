"""The discrete-unit ASR config: ``speechrq asr train CONFIG`` (typed dataclasses, loaded from YAML, validated)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import ConfigError
from ..training.config import OptimConfig, TrainConfig

INPUTS = ("units", "dedup", "bpe", "continuous")


@dataclass
class ASRDataConfig:
    """``units``: a ``speechrq units encode`` output directory (its manifests carry the corpus's cuts and units).

    ``input``: ``units`` (every stream, one frame per 40 ms), ``dedup`` (single stream, repeats
    removed), ``bpe`` (de-duplicated units in the unit BPE of ``units encode --bpe``), or
    ``continuous`` (the quantizer's own encoder layer, the paper's "Continuous SSL").
    """

    units: str = ""
    input: Literal["units", "dedup", "bpe", "continuous"] = "units"
    train_split: str = "train"
    dev_split: str = "dev"
    max_duration: float = 60.0  # seconds of audio per micro-batch, per rank
    num_buckets: int = 10
    num_workers: int = 0
    vocab_size: int = 0  # output BPE tokens; 0: min(6000, distinct training words // 2, at least 32)
    # output tokens: "bpe" (sentencepiece BPE of vocab_size), or "char": one per character of the training transcripts,
    # in any script (the RPQ paper's Mandarin character output, Table V; vocab_size is then unused)
    output: Literal["bpe", "char"] = "bpe"

    def validate(self) -> None:
        if not self.units:
            raise ConfigError("units: the directory of `speechrq units encode` to train on")
        if self.max_duration <= 0:
            raise ConfigError(f"max_duration: must be > 0, got {self.max_duration}")
        if self.vocab_size < 0:
            raise ConfigError(f"vocab_size: must be >= 0 (0 = automatic), got {self.vocab_size}")


@dataclass
class ASRModelSection:
    preset: Literal["tiny", "paper"] = "tiny"
    stream_weighting: Literal["mean", "learned"] = "mean"  # the paper averages the M embeddings
    dropout: float | None = None  # None: the preset's


@dataclass
class ASRLossConfig:
    ctc_weight: float = 0.3
    label_smoothing: float = 0.1
    time_masks: int = 2  # time masks on the embedded input per utterance (SpecAugment-style)
    time_mask_width: int = 5  # frames of 40 ms, at most

    def validate(self) -> None:
        if not 0 <= self.ctc_weight <= 1:
            raise ConfigError(f"ctc_weight: must be in [0, 1], got {self.ctc_weight}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing: must be in [0, 1), got {self.label_smoothing}")


@dataclass
class DecodeConfig:
    beam: int = 10
    ctc_weight: float = 0.3
    mode: Literal["joint", "attention", "ctc"] = "joint"

    def validate(self) -> None:
        if self.beam < 1:
            raise ConfigError(f"beam: must be >= 1, got {self.beam}")
        if not 0 <= self.ctc_weight <= 1:
            raise ConfigError(f"ctc_weight: must be in [0, 1], got {self.ctc_weight}")


@dataclass
class ASRConfig:
    out_dir: str = "exp/asr"
    data: ASRDataConfig = field(default_factory=ASRDataConfig)
    model: ASRModelSection = field(default_factory=ASRModelSection)
    loss: ASRLossConfig = field(default_factory=ASRLossConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        for name in ("data", "loss", "decode", "optim", "train"):  # sections left out of the YAML are checked here too
            try:
                getattr(self, name).validate()
            except ConfigError as e:
                raise ConfigError(f"{name}.{e}") from None
