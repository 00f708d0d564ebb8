"""The masked-prediction model: what one pre-training step computes.

``MaskedPredictionModel(normalizer, encoder, targets, heads, masking)``:

1. log-Mel ``[B, T_in, 80]`` is normalised with the global statistics the model
   holds (saved with it);
2. the target provider maps the *clean* normalised features to ``[B, T, N]``
   codeword indices (:mod:`speechrq.targets.latent`: stacked Mel frames in
   stage 0, a frozen target encoder's layers later);
   targets are computed before masking, under ``no_grad``, and the encoder never
   sees them;
3. a span mask is drawn per utterance on the encoder grid; the masked input
   frames are replaced by a learned mask embedding;
4. the encoder runs on the corrupted input, the heads run on the masked frames
   only, and the loss is their cross-entropy against the targets.

:func:`build_model` is the factory: a config in, the composed model out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..features import FeatureNormalizer, FeatureStats
from ..models.conformer import SUBSAMPLING, SpeechEncoder, speech_encoder, trim_to_frames
from ..targets.latent import LatentTargets, MelTargets, StagedTargets
from ..targets.random_projection import RandomProjectionQuantizer
from .config import PretrainConfig
from .masking import expand_to_input, span_mask
from .objective import PredictionHeads, PredictionResult, masked_prediction_loss


@dataclass(frozen=True)
class Masking:
    prob: float = 0.4
    span: int = 10
    mode: str = "fraction"


@dataclass
class StepOutput:
    """What a forward pass reports: the objective plus what the meters need."""

    result: PredictionResult
    targets: torch.Tensor  # [B, T, N] codeword indices
    frame_lens: torch.Tensor  # [B] valid encoder frames
    mask: torch.Tensor  # [B, T] True = masked

    @property
    def loss(self) -> torch.Tensor:
        return self.result.loss


class MaskedPredictionModel(nn.Module):
    def __init__(self, normalizer: FeatureNormalizer, encoder: SpeechEncoder, targets: nn.Module, heads: PredictionHeads, masking: Masking):
        super().__init__()
        self.normalizer, self.encoder, self.targets, self.heads = normalizer, encoder, targets, heads
        self.masking = masking
        # the learned vector that stands in for every masked input frame
        self.mask_embedding = nn.Parameter(torch.randn(encoder.config.input_dim) * 0.1)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, generator: torch.Generator | None = None,
                targets: torch.Tensor | None = None, audio: torch.Tensor | None = None, audio_lens: torch.Tensor | None = None) -> StepOutput:
        """``feats [B, T_in, 80]`` raw log-Mel, ``lengths [B]`` -> :class:`StepOutput`.

        ``generator`` (a CPU generator) draws the masks, so that a run can give each
        batch its own reproducible mask whatever the rank or accumulation layout.
        ``targets [B, T_in // 4, N]``, when given (a target cache hit), are used
        instead of computing them. ``audio [B, S]``, ``audio_lens``: the waveforms, for
        a target encoder that reads them (a Hugging Face model).
        """
        raw, lengths = trim_to_frames(feats, lengths)
        feats = self.normalizer(raw, lengths)
        t_in, t = feats.shape[1], feats.shape[1] // SUBSAMPLING
        frame_lens = torch.div(lengths, SUBSAMPLING, rounding_mode="floor")
        if targets is None:
            targets = self.targets(feats, lengths, audio, audio_lens, raw)
        targets = targets[:, :t]  # [B, T, N]
        m = self.masking
        mask = span_mask(frame_lens, t, m.prob, m.span, m.mode, generator=generator)
        input_mask = expand_to_input(mask, SUBSAMPLING, t_in)
        corrupted = torch.where(input_mask[..., None], self.mask_embedding.to(feats.dtype), feats)
        hidden, _ = self.encoder(corrupted, lengths)
        logits = self.heads(hidden[mask])
        return StepOutput(masked_prediction_loss(logits, targets[mask]), targets, frame_lens, mask)


def build_model(cfg: PretrainConfig, stats: FeatureStats | None = None) -> MaskedPredictionModel:
    """The model of ``cfg``, initialised from ``train.seed`` (same on every rank).

    With Latent-RQ targets the model also holds θ (its weights are set at the
    first refresh or from ``targets.init_from``/``targets.encoder``) and the
    per-layer projections and codebooks, made from ``quantizer.seed``. θ is built
    under a forked RNG, so stage 0 starts exactly as a plain BEST-RQ run would.
    """
    torch.manual_seed(cfg.train.seed)
    overrides = {} if cfg.model.dropout is None else {"dropout": cfg.model.dropout}
    encoder = speech_encoder(cfg.model.preset, **overrides)
    q = cfg.quantizer
    quantizer = RandomProjectionQuantizer(encoder.config.input_dim * SUBSAMPLING, q.num_codebooks, q.codebook_size, q.codebook_dim, seed=q.seed)
    normalizer = FeatureNormalizer.from_stats(stats) if stats is not None else FeatureNormalizer(encoder.config.input_dim)
    heads = PredictionHeads(encoder.config.dim, q.num_codebooks, q.codebook_size)
    latent = None
    if cfg.targets.latent:
        from ..encoders.hf import HuggingFaceEncoder, is_pretrained_folder

        own_stats = None
        if cfg.targets.encoder and is_pretrained_folder(cfg.targets.encoder):
            theta = HuggingFaceEncoder(cfg.targets.encoder, depth=max(cfg.target_layers()) + 1)
        else:
            with torch.random.fork_rng(devices=[]):
                theta = speech_encoder(cfg.model.preset, **overrides)
            if cfg.targets.encoder:  # another run's encoder keeps that run's log-Mel statistics
                own_stats = FeatureNormalizer(encoder.config.input_dim)
        latent = LatentTargets(theta, cfg.target_layers(), q.num_codebooks, q.codebook_size, q.codebook_dim, seed=q.seed,
                               input_normalizer=own_stats)
    m = cfg.masking
    return MaskedPredictionModel(normalizer, encoder, StagedTargets(MelTargets(quantizer), latent), heads, Masking(m.prob, m.span, m.mode))
