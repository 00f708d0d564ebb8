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
    """The ``optim:`` section of a pre-training or ASR config: AdamW and its learning-rate schedule
    (:mod:`speechrq.training.optim`), counted in optimizer steps."""

    lr: float = 8e-4
    """The peak learning rate of AdamW, reached at the end of warm-up. > 0."""
    betas: tuple[float, float] = (0.9, 0.98)
    """AdamW's (β1, β2): the decay rates of its running means of the gradient and of its square. Each in [0, 1)
    (refused by torch's AdamW when the optimizer is built; the config does not check)."""
    eps: float = 1e-8
    """AdamW's ε, added to the root of the squared-gradient mean. >= 0 (refused by torch's AdamW otherwise; the
    config does not check)."""
    weight_decay: float = 0.01
    """AdamW's decoupled weight decay, on weight matrices only (not on biases, norms or the mask embedding). >= 0
    (refused by torch's AdamW otherwise; the config does not check)."""
    warmup_steps: int = 1000
    """Optimizer steps of linear warm-up from ``lr / warmup_steps`` to ``lr``, at the start of the run (and of each
    Latent-RQ stage with ``targets.lr_after_refresh: reset``); 0: none. In [0, ``max_steps``]."""
    max_steps: int = 10000
    """The optimizer step the run ends at, where the schedule reaches ``final_lr_ratio``; counted over the whole run
    (a branch continues from its checkpoint's step). >= 1; it may be raised on ``--resume``."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """The learning rate after warm-up: ``cosine`` or ``linear`` decay from ``lr`` to ``final_lr_ratio × lr`` at
    ``max_steps``, or ``constant`` at ``lr``."""
    final_lr_ratio: float = 0.05
    """The learning rate at ``max_steps`` as a share of ``lr`` (``cosine`` and ``linear``). In [0, 1]."""
    clip_norm: float | None = 5.0
    """The largest global L2 norm of the gradient: a larger one is scaled down to it; null: no clipping
    (pre-training still logs the norm). > 0 or null."""
    accum_steps: int = 1
    """Micro-batches (``data.max_duration`` seconds each, per rank) whose gradients make one optimizer step. >= 1."""

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
    """The ``train:`` section of a pre-training or ASR config: the training loop's seed, device, precision, logging
    and checkpoints."""

    seed: int = 0
    """The seed of the model's initialisation, the data order, the masks and dropout; a replicate of a run differs in
    it alone. Any integer."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto`` (CUDA when torch sees a GPU, else the CPU), ``cpu`` or ``cuda`` (refused when torch sees no GPU).
    Under torchrun each rank takes the GPU of its ``LOCAL_RANK``."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """``bf16``: bfloat16 autocast in the training step; ``fp32``: none; ``auto``: bf16 on CUDA, fp32 on the CPU."""
    compile: bool = False
    """``torch.compile`` the encoder blocks in place (pre-training: the student's and a speechrq θ's; ASR: the encoder's,
    and the decoder), with dynamic shapes and batch lengths padded to a multiple of 32 encoder frames, so a run
    compiles one graph per multiple its batches reach; the run prints how many graphs it compiled. Losses equal eager
    ones within float rounding (``tests/test_compiling.py``). Off by default: on a 2-core CPU the compiled tiny preset
    is slower, and the first step waits about a minute for the compiler (a C++ compiler is needed on a CPU); on a CUDA
    GPU measure it (``benchmarks/bench_peer.py --compile``)."""
    deterministic: bool = False
    """``torch.use_deterministic_algorithms``: repeatable kernels where torch has them (slower; an operation without
    one raises)."""
    log_every: int = 10
    """Optimizer steps between records of ``metrics.jsonl`` (the last step is always recorded). >= 1."""
    checkpoint_every: int = 500
    """Optimizer steps between checkpoints (one is also written at ``optim.max_steps``). >= 1."""
    keep_last: int = 3
    """How many of the newest checkpoints are kept; older ones are deleted as new ones are written. >= 1."""
    max_nonfinite: int = 5
    """Skipped optimizer steps in a row (a non-finite loss or gradient) after which the run stops with its last good
    weights saved, naming the cause. >= 1."""

    def validate(self) -> None:
        for name in ("log_every", "checkpoint_every", "keep_last", "max_nonfinite"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1")
