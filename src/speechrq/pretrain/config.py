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
    """The ``data:`` section of a pre-training config: the corpus and split to read, and how its audio is batched
    (lhotse's dynamic bucketing, :mod:`speechrq.data.batching`)."""

    corpus: str = ""
    """A speechrq corpus directory (made by ``speechrq synth`` or ``speechrq data import``). Required. Its global
    log-Mel statistics (``feature_stats.json``) are computed from ``split`` when missing."""
    split: str | list[str] = "train"
    """The corpus split to train on, or a list of splits read as one (LibriSpeech 960 h: ``[train-clean-100,
    train-clean-360, train-other-500]``)."""
    max_duration: float = 60.0
    """Seconds of audio per micro-batch on each rank; an optimizer step reads ``optim.accum_steps`` micro-batches per
    rank. > 0, and at least ``max_utterance_duration``."""
    num_buckets: int = 10
    """Duration buckets of the sampler: utterances of similar length are batched together (a corpus of fewer
    utterances gets as many buckets as it has utterances). >= 1."""
    num_workers: int = 0
    """DataLoader worker processes that read and decode audio; 0 reads it in the training process. >= 0."""
    max_utterance_duration: float = 30.0
    """Seconds: longer training utterances are left out, with a warning saying how many (memory). At most
    ``max_duration``."""

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
    """The ``model:`` section of a pre-training config: the student's Conformer encoder, one of
    :data:`speechrq.models.conformer.PRESETS`."""

    preset: str = "tiny"
    """The encoder preset: ``tiny`` (4 blocks of width 96; minutes on 2 CPU cores), ``small`` (8 blocks of width 256)
    or ``paper`` (17 blocks of width 512, the Latent-RQ paper's). One of ``tiny``, ``small``, ``paper``."""
    dropout: float | None = None
    """Dropout probability inside the encoder; null keeps the preset's (0.0 for ``tiny``, 0.1 for ``small`` and
    ``paper``). In [0, 1) or null."""

    def validate(self) -> None:
        from ..models.conformer import PRESETS

        if self.preset not in PRESETS:
            raise ConfigError(f"preset: {self.preset!r} is not one of {', '.join(PRESETS)}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout: must be in [0, 1), got {self.dropout}")


@dataclass
class QuantizerConfig:
    """The ``quantizer:`` section of a pre-training config: BEST-RQ's random-projection quantizer
    (:class:`~speechrq.targets.random_projection.RandomProjectionQuantizer`), whose codeword indices are the targets
    the student predicts at masked frames. Each codebook is a fixed random projection and fixed random codewords,
    never trained; a branch (``targets.init_from``) must keep its parent's settings."""

    num_codebooks: int = 18
    """N: codebooks, so targets per 40 ms frame (one prediction head each). Latent-RQ splits them evenly over the
    target layers (``targets.layers``), so N must then be a multiple of the layer count. >= 1."""
    codebook_size: int = 4096
    """V: codewords per codebook; each head is a V-way classification. >= 1, and at most 65536 when
    ``targets.cache`` is not ``off``."""
    codebook_dim: int = 16
    """D: the dimension each codebook's projection maps a frame to, and of its codewords (matched by cosine
    similarity). >= 1."""
    seed: int = 1234
    """The seed that alone makes the projections and codebooks (the same on every rank; saved in every checkpoint).
    Any integer."""

    def validate(self) -> None:
        for name in ("num_codebooks", "codebook_size", "codebook_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}: must be >= 1")


@dataclass
class MaskingConfig:
    """The ``masking:`` section of a pre-training config: span masking on the 40 ms encoder grid; see
    :mod:`speechrq.pretrain.masking`.

    ``mode: fraction`` (default) reads ``prob`` as the share of frames to mask;
    ``mode: start`` reads it as BEST-RQ's per-frame span-start probability
    (then 0.4 with 10-frame spans would mask ~99% of every utterance).
    """

    prob: float = 0.4
    """With ``mode: fraction``, the share of each utterance's encoder frames to mask; with ``mode: start``, the
    probability that a frame starts a span. In (0, 1]."""
    span: int = 10
    """Length of each masked span, in 40 ms encoder frames (10: 400 ms, as BEST-RQ). >= 1."""
    mode: Literal["fraction", "start"] = "fraction"
    """How ``prob`` is read: ``fraction`` (about ``prob`` of the frames masked, less where spans overlap) or
    ``start`` (BEST-RQ's span-start probability: about ``1 - (1 - prob) ** span`` of the frames masked)."""

    def validate(self) -> None:
        if not 0 < self.prob <= 1:
            raise ConfigError(f"prob: must be in (0, 1], got {self.prob}")
        if self.span < 1:
            raise ConfigError(f"span: must be >= 1, got {self.span}")


@dataclass
class TargetsConfig:
    """The ``targets:`` section of a pre-training config. Latent-RQ: targets from a frozen target encoder θ after
    stage 0 (Mel); with none of ``refresh_at``, ``init_from`` and ``encoder`` set, the run is BEST-RQ (Mel targets)
    throughout and the other keys are unused. Stages: θ is refreshed from the student at ``refresh_at``, branched
    from a checkpoint (``init_from``, Figure 2), or fixed from step 0 (``encoder``); ``layers: auto`` (the paper's
    future work) picks θ's layers by the label-free ranking of :mod:`speechrq.targets.rank`.
    """

    layers: list[int] | Literal["auto"] | None = None
    """θ's layers whose states are quantized into targets, in the paper's indexing (``-1`` the front end, ``0 .. L-1``
    the blocks): distinct indices within θ's, ``auto``, or null for the preset's default (``[1, 2]`` tiny,
    ``[2, 3, 4]`` small, ``[5, ..., 10]`` paper). ``auto`` ranks θ's layers without labels
    (:mod:`speechrq.targets.rank`) at every refresh and branch and takes the best ``auto_count``; not with a
    Hugging Face ``encoder``."""
    auto_count: int | None = None
    """With ``layers: auto``, how many layers to pick; null: as many as the preset's default layers. >= 1 and at most
    the preset's blocks + 1; only with ``layers: auto``."""
    standardize: bool = True
    """Standardise each dimension of θ's states (mean and std fitted on ``stats_utterances`` utterances at each
    stage's start) before the random projection (not in the paper); ``false``: project them as they are."""
    lr_after_refresh: Literal["reset", "continue"] = "reset"
    """At each new stage: ``reset`` warms the learning rate up again to its peak and decays it to ``optim.max_steps``
    (the paper); ``continue`` follows the run's one schedule."""
    branch_targets: Literal["latent", "mel"] = "latent"
    """What an ``init_from`` branch predicts: ``latent`` (θ's targets, θ the checkpoint's encoder) or ``mel``
    (BEST-RQ continued from the checkpoint with fresh heads and optimizer: the control of a latent branch). ``mel``
    needs ``init_from``."""
    refresh_at: list[int] = field(default_factory=list)
    """Optimizer steps at which θ becomes a copy of the student and a new stage starts (the paper: 100k, 250k and
    400k of 500k). Increasing positive steps before ``optim.max_steps``; empty with a Hugging Face ``encoder``."""
    init_from: str | None = None
    """A speechrq pre-training checkpoint to branch from (Figure 2; ``--init-from``): the student starts from it, θ is
    its encoder, and steps continue from its step. Its preset and quantizer settings must be this run's. Not with
    ``encoder``."""
    encoder: str | None = None
    """θ fixed from step 0, with no Mel stage: a speechrq checkpoint of this run's preset (its encoder) or a local
    Hugging Face WavLM / HuBERT / wav2vec2 / data2vec-audio folder. Not with ``init_from``."""
    stats_utterances: int = 64
    """Training utterances (drawn with ``train.seed``, the same at every stage) whose θ states fit the statistics of
    ``standardize`` and are ranked for ``layers: auto``. >= 1."""
    cache: Literal["off", "memory", "disk"] = "off"
    """Where each utterance's targets are kept while θ is frozen (they do not change within a stage): ``off``
    (computed at every step), ``memory`` (in the training process) or ``disk`` (``OUT/target_cache/rank<R>/``, for
    corpora whose targets exceed memory). Only ``off`` when ``quantizer.codebook_size`` > 65536."""
    cache_max_gb: float = 2.0
    """The target cache's bound per rank, in GiB (2^30 bytes): once reached, further utterances' targets are
    computed and not stored. > 0."""

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
    """A pre-training config (``speechrq pretrain CONFIG``): BEST-RQ's stage 0 and, as ``targets`` says, Latent-RQ's
    later stages. Every key has a default except ``out_dir`` and ``data.corpus``."""

    out_dir: str = ""
    """The run directory: its checkpoints and ``metrics.jsonl``. Required; it may move between a run and its
    ``--resume``."""
    data: DataConfig = field(default_factory=DataConfig)
    """The corpus and its batching."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The student encoder."""
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    """The random-projection quantizer that makes the targets."""
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    """Which frames the student predicts."""
    targets: TargetsConfig = field(default_factory=TargetsConfig)
    """Latent-RQ's target encoder θ and its stages."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """AdamW and its learning-rate schedule."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Seed, device, precision, logging and checkpoints."""

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
    "train.log_every", "train.compile", "train.checkpoint_every", "train.keep_last", "train.max_nonfinite",
    "data.num_workers", "optim.max_steps", "out_dir",  # a run directory may be moved
    # paths whose content the fingerprints in meta.json's inputs check (a corpus or checkpoint moved, or named from elsewhere)
    "data.corpus", "targets.init_from", "targets.encoder",
})
