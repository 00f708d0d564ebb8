"""The pre-training config: one YAML file, typed and checked before any work starts.

See ``configs/pretrain/*.yaml`` for complete examples; every key has a default
here except ``out_dir`` and ``data.corpus``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import ConfigError
from ..training.config import OptimConfig, TrainConfig


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
class TargetsConfig:
    """Latent-RQ: targets from a frozen target encoder θ after stage 0 (Mel).

    ``refresh_at``: steps at which θ becomes a copy of the student (paper: 100k,
    250k, 400k); ``init_from``: a checkpoint to branch from (Figure 2: φ starts
    from it, θ is its encoder, steps continue from its step); ``encoder``: a
    checkpoint whose encoder is θ from step 0 (no Mel stage).

    ``layers: auto`` picks θ's ``auto_count`` best layers at every refresh and branch
    by the label-free ranking of :mod:`speechrq.targets.rank` (the paper's future
    work); ``standardize`` sets the per-dimension standardisation of θ's states
    before projection (not in the paper); ``lr_after_refresh``: ``reset`` warms the
    learning rate up again to its peak at each new stage (the paper), ``continue``
    follows the run's one schedule; ``branch_targets: mel`` makes an ``init_from``
    branch continue with Mel targets (BEST-RQ continued from a checkpoint, with fresh
    heads and optimizer, the control of a latent branch).
    """

    layers: list[int] | Literal["auto"] | None = None  # paper indexing: -1 front end, 0..L-1 blocks; None: the preset's default
    auto_count: int | None = None  # layers: auto picks this many (None: as many as the preset's default layers)
    standardize: bool = True
    lr_after_refresh: Literal["reset", "continue"] = "reset"
    branch_targets: Literal["latent", "mel"] = "latent"
    refresh_at: list[int] = field(default_factory=list)
    init_from: str | None = None
    encoder: str | None = None
    stats_utterances: int = 64  # utterances whose θ features set each layer's mean/std
    cache: Literal["off", "memory", "disk"] = "off"
    cache_max_gb: float = 2.0

    @property
    def latent(self) -> bool:
        return bool(self.refresh_at or self.init_from or self.encoder)

    def validate(self) -> None:
        if self.init_from and self.encoder:
            raise ConfigError("init_from and encoder: give one (init_from branches a run; encoder fixes θ)")
        if list(self.refresh_at) != sorted(set(self.refresh_at)) or any(s < 1 for s in self.refresh_at):
            raise ConfigError(f"refresh_at: must be increasing positive steps, got {self.refresh_at}")
        if self.layers not in (None, "auto") and (not self.layers or len(set(self.layers)) != len(self.layers)):
            raise ConfigError(f"layers: must be distinct layer indices or 'auto', got {self.layers}")
        if self.auto_count is not None and (self.auto_count < 1 or self.layers != "auto"):
            raise ConfigError(f"auto_count: {self.auto_count} needs layers: auto and must be >= 1")
        if self.branch_targets == "mel" and not self.init_from:
            raise ConfigError("branch_targets: mel continues a branch with Mel targets; it needs init_from")
        if self.stats_utterances < 1 or self.cache_max_gb <= 0:
            raise ConfigError("stats_utterances must be >= 1 and cache_max_gb > 0")


@dataclass
class PretrainConfig:
    out_dir: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    targets: TargetsConfig = field(default_factory=TargetsConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def auto_layers(self) -> bool:
        return self.targets.layers == "auto"

    def target_layers(self) -> list[int]:
        """The configured target layers; with ``layers: auto``, the preset's deepest ``auto_count`` blocks as
        placeholders (the layers are picked when θ is set, and saved in the run's history)."""
        from ..targets.latent import configured_layers

        return configured_layers(self.model.preset, self.targets.layers, self.targets.auto_count)

    def validate(self) -> None:
        from ..models.conformer import PRESETS

        if not self.out_dir:
            raise ConfigError("out_dir: required (the run directory)")
        t = self.targets
        pretrained = False
        if t.encoder:
            from pathlib import Path

            from ..encoders.hf import is_pretrained_folder, pretrained_config

            if not (Path(t.encoder) / "config.json").exists() and not (Path(t.encoder) / "meta.json").exists():
                raise ConfigError(f"targets.encoder: {t.encoder} is neither a speechrq checkpoint nor a Hugging Face model folder")
            pretrained = is_pretrained_folder(t.encoder)
            if pretrained and self.auto_layers:
                raise ConfigError(f"targets.layers: auto ranks the layers of a speechrq θ; {t.encoder} is a Hugging Face "
                                  "model: name its layers")
            if pretrained:
                depth = int(pretrained_config(t.encoder)["num_hidden_layers"])
                if any(not -1 <= k < depth for k in self.target_layers()):
                    raise ConfigError(f"targets.layers: {self.target_layers()} outside -1..{depth - 1} (the layers of {t.encoder})")
                if t.refresh_at:
                    raise ConfigError("targets.refresh_at: a Hugging Face target encoder cannot take the student's weights; "
                                      "leave refresh_at empty (or branch later stages with init_from)")
        if t.latent:
            layers, depth = self.target_layers(), PRESETS[self.model.preset].num_layers
            if self.auto_layers and len(layers) > depth + 1:
                raise ConfigError(f"targets.auto_count: {len(layers)} layers, but the {self.model.preset} preset has {depth + 1} "
                                  "(front end and blocks)")
            if not pretrained and any(not -1 <= k < depth for k in layers):
                raise ConfigError(f"targets.layers: {layers} outside -1..{depth - 1} (the {self.model.preset} preset has {depth} blocks)")
            if self.quantizer.num_codebooks % len(layers):
                raise ConfigError(f"targets.layers: {self.quantizer.num_codebooks} codebooks do not split evenly over "
                                  f"{len(layers)} layers {layers}")
            if t.refresh_at and t.refresh_at[-1] >= self.optim.max_steps:
                raise ConfigError(f"targets.refresh_at: {t.refresh_at[-1]} is not before optim.max_steps={self.optim.max_steps}")
        if t.cache != "off" and self.quantizer.codebook_size > 2**16:
            raise ConfigError(f"targets.cache: stores uint16 codeword indices; codebook_size {self.quantizer.codebook_size} > 65536")


# Keys a resumed run may change: they do not alter the trajectory.
RESUMABLE_CHANGES = frozenset({
    "train.log_every", "train.checkpoint_every", "train.keep_last", "train.max_nonfinite",
    "data.num_workers", "optim.max_steps", "out_dir",  # a run directory may be moved
    # paths whose content the fingerprints in meta.json's inputs check (a corpus or checkpoint moved, or named from elsewhere)
    "data.corpus", "targets.init_from", "targets.encoder",
})
