"""One micro-batch of pre-training, the same in the training loop and in ``speechrq bench pretrain``."""

from __future__ import annotations

import torch

from ..models.conformer import SUBSAMPLING, trim_to_frames
from ..targets.cache import TargetCache
from ..training.engine import autocast
from .model import MaskedPredictionModel, StepOutput

MASK_SEED_STRIDE = 1_000_003  # separates the per-batch mask streams of different train.seed values


def mask_generator(seed: int, index: int) -> torch.Generator:
    """The CPU generator of micro-batch ``index``'s masks (its index in the one-process sequence)."""
    return torch.Generator().manual_seed(seed * MASK_SEED_STRIDE + index)


def micro_step(model: MaskedPredictionModel, forward, feats: torch.Tensor, lens: torch.Tensor, audio: torch.Tensor,
               audio_lens: torch.Tensor, ids: list[str], generator: torch.Generator, precision: str,
               cache: TargetCache | None = None, accum_steps: int = 1) -> StepOutput:
    """Forward (under autocast) and backward of ``loss / accum_steps``; gradients accumulate in ``model``.

    ``feats [B, T_in, 80]`` raw log-Mel and ``lens``; ``audio``/``audio_lens`` for a
    target encoder that reads waveforms; ``ids`` key the target cache. ``forward`` is
    ``model`` or its DDP wrapper. While θ is frozen, targets come from ``cache`` when
    it holds every utterance of the batch, and are stored in it otherwise.
    """
    cached = None
    use_cache = cache is not None and model.targets.uses_latent
    if use_cache:
        trimmed, frame_lens = trim_to_frames(feats, lens)
        cached = cache.lookup(ids, frame_lens // SUBSAMPLING, trimmed.shape[1] // SUBSAMPLING, feats.device)
    with autocast(precision, feats.device):
        out = forward(feats, lens, generator=generator, targets=cached, audio=audio, audio_lens=audio_lens)
    (out.loss / accum_steps).backward()
    if use_cache and cached is None:
        cache.store(ids, out.targets, out.frame_lens)
    return out
