"""The discrete-unit ASR config: ``speechrq asr train CONFIG`` (typed dataclasses, loaded from YAML, validated)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import ConfigError
from ..training.config import OptimConfig, TrainConfig

INPUTS = ("units", "dedup", "bpe", "continuous")


@dataclass
class ASRDataConfig:
    """The ``data:`` section of an ASR config: the units (or continuous features) to train on, their batching, and
    the output tokens."""

    units: str = ""
    """A ``speechrq units encode`` output directory: its manifests carry the corpus's cuts, transcripts and units.
    Required."""
    input: Literal["units", "dedup", "bpe", "continuous"] = "units"
    """What the model reads: ``units`` (every stream, one input per unit frame: 40 ms, or 20 ms for a Hugging Face
    source's own frames), ``dedup`` (one stream, repeats removed), ``bpe`` (de-duplicated units in the unit BPE of
    ``units encode --bpe``) or ``continuous`` (the states of the quantizer's own encoder layer, the paper's
    "Continuous SSL")."""
    train_split: str = "train"
    """The split of the units directory to train on; its transcripts also train the output tokens."""
    dev_split: str = "dev"
    """The name of the development split. Kept in the run's config only: ``asr train`` scores no dev set, and
    ``asr decode`` takes its splits from ``--splits``."""
    max_duration: float = 60.0
    """Seconds of audio per micro-batch on each rank; an optimizer step reads ``optim.accum_steps`` micro-batches per
    rank. > 0."""
    num_buckets: int = 10
    """Duration buckets of the sampler: utterances of similar length are batched together (at most one per
    utterance; under 2, no bucketing). Any integer (not checked)."""
    num_workers: int = 0
    """DataLoader worker processes that read the inputs; 0 reads them in the training process. >= 0 (the config does
    not check; torch refuses a negative count)."""
    vocab_size: int = 0
    """Output BPE tokens (sentencepiece); 0: automatic, half the training transcripts' distinct words, between 32 and
    6000. Unused with ``output: char``. >= 0."""
    output: Literal["bpe", "char"] = "bpe"
    """The output tokens: ``bpe`` (a sentencepiece BPE of ``vocab_size`` tokens) or ``char`` (one token per character
    of the training transcripts, in any script: the RPQ paper's Mandarin character output, Table V)."""

    def validate(self) -> None:
        if not self.units:
            raise ConfigError("units: the directory of `speechrq units encode` to train on")
        if self.max_duration <= 0:
            raise ConfigError(f"max_duration: must be > 0, got {self.max_duration}")
        if self.vocab_size < 0:
            raise ConfigError(f"vocab_size: must be >= 0 (0 = automatic), got {self.vocab_size}")


@dataclass
class ASRModelSection:
    """The ``model:`` section of an ASR config: an E-Branchformer encoder and a Transformer decoder trained with
    hybrid CTC/attention, one of :data:`speechrq.asr.model.ASR_PRESETS`."""

    preset: Literal["tiny", "paper"] = "tiny"
    """``tiny`` (3 encoder and 2 decoder layers of width 96; minutes on 2 CPU cores) or ``paper`` (12 + 6 layers of
    width 256, the RPQ paper's ESPnet recipe)."""
    stream_weighting: Literal["mean", "learned"] = "mean"
    """How the embeddings of the M unit streams are combined: ``mean`` (their average, the paper's) or ``learned``
    (a learned softmax weight per stream). Unit inputs only."""
    dropout: float | None = None
    """Dropout probability in the encoder and decoder; null keeps the preset's (0.1). In [0, 1] or null (the config
    does not check; torch refuses other values when the model is built)."""


@dataclass
class ASRLossConfig:
    """The ``loss:`` section of an ASR config: the hybrid CTC/attention loss, and SpecAugment-style time masks on
    the embedded input."""

    ctc_weight: float = 0.3
    """The weight of the CTC loss; the attention decoder's cross-entropy gets ``1 - ctc_weight``. In [0, 1]."""
    label_smoothing: float = 0.1
    """Label smoothing of the attention decoder's cross-entropy. In [0, 1)."""
    time_masks: int = 2
    """Time masks per training utterance on the embedded input (drawn with ``train.seed``); 0: none. >= 0 (not
    checked: a negative count also means none)."""
    time_mask_width: int = 5
    """The widest time mask, in input frames (a unit frame: 40 ms, or 20 ms for a Hugging Face source's own; one
    token after de-duplication or BPE), and never over a fifth of the utterance. >= 1 (not checked: under 1 means
    no masks)."""

    def validate(self) -> None:
        if not 0 <= self.ctc_weight <= 1:
            raise ConfigError(f"ctc_weight: must be in [0, 1], got {self.ctc_weight}")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing: must be in [0, 1), got {self.label_smoothing}")


@dataclass
class DecodeConfig:
    """The ``decode:`` section of an ASR config: a search's settings, kept in the run's config (they may change on
    ``--resume``). ``asr decode``, ``asr compare`` and ``asr transcribe`` take theirs from ``--mode``, ``--beam`` and
    ``--ctc-weight``, whose defaults are these."""

    beam: int = 10
    """Hypotheses kept at each step of the beam search (``mode: attention`` with 1: greedy). >= 1."""
    ctc_weight: float = 0.3
    """The weight of the CTC prefix score in the joint search's score (the attention score gets
    ``1 - ctc_weight``). In [0, 1]."""
    mode: Literal["joint", "attention", "ctc"] = "joint"
    """``joint`` CTC/attention beam search, ``attention`` beam search, or ``ctc`` (greedy CTC)."""

    def validate(self) -> None:
        if self.beam < 1:
            raise ConfigError(f"beam: must be >= 1, got {self.beam}")
        if not 0 <= self.ctc_weight <= 1:
            raise ConfigError(f"ctc_weight: must be in [0, 1], got {self.ctc_weight}")


@dataclass
class ASRConfig:
    """A discrete-unit ASR config (``speechrq asr train CONFIG``): a frozen encoder layer's units (or its continuous
    states) to text. Every key has a default except ``data.units``."""

    out_dir: str = "exp/asr"
    """The run directory: its checkpoints, output tokens (``tokens.model``) and ``metrics.jsonl``."""
    data: ASRDataConfig = field(default_factory=ASRDataConfig)
    """The inputs, their batching and the output tokens."""
    model: ASRModelSection = field(default_factory=ASRModelSection)
    """The ASR model."""
    loss: ASRLossConfig = field(default_factory=ASRLossConfig)
    """The training loss and its input masking."""
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    """The search's settings, kept with the run."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """AdamW and its learning-rate schedule."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Seed, device, precision, logging and checkpoints."""

    def validate(self) -> None:
        for name in ("data", "loss", "decode", "optim", "train"):  # sections left out of the YAML are checked here too
            try:
                getattr(self, name).validate()
            except ConfigError as e:
                raise ConfigError(f"{name}.{e}") from None
