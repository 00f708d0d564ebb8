"""The settings of any training loop: optimizer and schedule, seed, device, precision, checkpoints.

Sections of a job's config (``optim:`` and ``train:``), shared by pre-training
and, later, discrete-unit ASR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..config import ConfigError


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
