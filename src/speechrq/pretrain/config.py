"""The pre-training config: one YAML file, typed and checked before any work starts.

See ``configs/pretrain/*.yaml`` for complete examples; every key has a default
here except ``out_dir`` and ``data.corpus``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import ConfigError


@dataclass
class DataConfig:
    corpus: str = ""  # a speechrq corpus directory (``speechrq synth`` or ``speechrq data import``)
    split: str | list[str] = "train"  # a list is concatenated (LibriSpeech 960 h: its three train parts)
    max_duration: float = 60.0  # seconds of audio per micro-batch, per rank
    num_buckets: int = 10
    num_workers: int = 0  # DataLoader processes that decode audio
    max_utterance_duration: float = 30.0  # longer utterances are left out (memory)

    def validate(self) -> None:
        if not self.corpus:
            raise ConfigError("corpus: required (a corpus directory made by `speechrq synth` or `speechrq data import`)")
        if self.max_duration <= 0:
            raise ConfigError(f"max_duration: must be > 0, got {self.max_duration}")
        if self.max_utterance_duration > self.max_duration:
            raise ConfigError(f"max_utterance_duration ({self.max_utterance_duration}) exceeds max_duration ({self.max_duration}): such utterances could never be batched")
        if self.num_buckets < 1 or self.num_workers < 0:
            raise ConfigError("num_buckets must be >= 1 and num_workers >= 0")


@dataclass
class ModelConfig:
    preset: str = "tiny"  # tiny | small | paper (speechrq.models.conformer.PRESETS)
    dropout: float | None = None  # overrides the preset's

    def validate(self) -> None:
        from ..models.conformer import PRESETS

        if self.preset not in PRESETS:
            raise ConfigError(f"preset: {self.preset!r} is not one of {', '.join(PRESETS)}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout: must be in [0, 1), got {self.dropout}")


@dataclass
class QuantizerConfig:
    num_codebooks: int = 18
    codebook_size: int = 4096
    codebook_dim: int = 16
    seed: int = 1234  # projections and codebooks are made from this seed alone

    def validate(self) -> None:
        for name in ("num_codebooks", "codebook_size", "codebook_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1")


@dataclass
class MaskingConfig:
    """Span masking on the 40 ms encoder grid; see :mod:`speechrq.pretrain.masking`.

    ``mode: fraction`` (default) reads ``prob`` as the share of frames to mask;
    ``mode: start`` reads it as BEST-RQ's per-frame span-start probability
    (then 0.4 with 10-frame spans would mask ~99% of every utterance).
    """

    prob: float = 0.4
    span: int = 10  # encoder frames (400 ms, as BEST-RQ)
    mode: Literal["fraction", "start"] = "fraction"

    def validate(self) -> None:
        if not 0 < self.prob <= 1:
            raise ConfigError(f"prob: must be in (0, 1], got {self.prob}")
        if self.span < 1:
            raise ConfigError(f"span: must be >= 1, got {self.span}")


@dataclass
class OptimConfig:
    lr: float = 8e-4
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    weight_decay: float = 0.01  # not applied to biases, norms and the mask embedding
    warmup_steps: int = 1000
    max_steps: int = 10000
    schedule: Literal["cosine", "linear", "constant"] = "cosine"  # after warm-up
    final_lr_ratio: float = 0.05  # lr at max_steps / lr
    clip_norm: float | None = 5.0  # None: no clipping (the norm is still logged)
    accum_steps: int = 1  # micro-batches per optimizer step

    def validate(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"lr: must be > 0, got {self.lr}")
        if self.max_steps < 1 or self.accum_steps < 1:
            raise ConfigError("max_steps and accum_steps must be >= 1")
        if not 0 <= self.warmup_steps <= self.max_steps:
            raise ConfigError(f"warmup_steps: must be in [0, max_steps={self.max_steps}], got {self.warmup_steps}")
        if not 0 <= self.final_lr_ratio <= 1:
            raise ConfigError(f"final_lr_ratio: must be in [0, 1], got {self.final_lr_ratio}")
        if self.clip_norm is not None and self.clip_norm <= 0:
            raise ConfigError(f"clip_norm: must be > 0 or null, got {self.clip_norm}")


@dataclass
class TrainConfig:
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    deterministic: bool = False  # torch.use_deterministic_algorithms
    log_every: int = 10
    checkpoint_every: int = 500
    keep_last: int = 3
    max_nonfinite: int = 5  # consecutive skipped steps before the run stops

    def validate(self) -> None:
        for name in ("log_every", "checkpoint_every", "keep_last", "max_nonfinite"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1")


@dataclass
class PretrainConfig:
    out_dir: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        if not self.out_dir:
            raise ConfigError("out_dir: required (the run directory)")


# Keys a resumed run may change: they do not alter the trajectory.
RESUMABLE_CHANGES = frozenset({
    "train.log_every", "train.checkpoint_every", "train.keep_last", "train.max_nonfinite",
    "data.num_workers", "optim.max_steps",
})
