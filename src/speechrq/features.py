"""Log-Mel features and their normalisation, computed batched in torch on the device.

:class:`LogMel` is Kaldi-compatible 80-bin log-Mel filterbank (25 ms window,
10 ms hop, povey window, pre-emphasis 0.97, no dither), computed for a whole
padded batch at once by lhotse's torch layer, so it runs on the training device.

:class:`FeatureNormalizer` defines normalisation once, because it is a known
source of bugs in public BEST-RQ code: **global** per-bin mean and standard
deviation (over every frame of a sample of the training set, not per utterance
and not along the time axis), computed once by :func:`compute_stats`, and held as
buffers so that every model that uses them saves them in its own state dict.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import SpeechrqError
from .io import atomic_write_json, read_json

SAMPLE_RATE = 16000
FRAME_SHIFT = 0.010
FRAME_LENGTH = 0.025
NUM_MEL_BINS = 80
INT16_SCALE = 32768.0
LOG_INT16_POWER = 2.0 * math.log(INT16_SCALE)  # subtracted back: features of [-1, 1] audio


def num_frames(num_samples: torch.Tensor | int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor | int:
    """Frames of an utterance of ``num_samples`` (Kaldi with ``snip_edges=False``)."""
    hop = int(round(FRAME_SHIFT * sample_rate))
    return (num_samples + hop // 2) // hop


def lengths_to_padding_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """``[B]`` lengths -> ``[B, T]`` bool mask, True at padded positions."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


class LogMel(nn.Module):
    """Waveforms ``[B, S]`` (16 kHz, float, padded) -> log-Mel ``[B, T, 80]`` and lengths ``[B]``.

    Frames past an utterance's length are set to 0. A frame that straddles the
    end of a shorter utterance sees zeros where Kaldi would reflect the signal;
    only the last frame of such an utterance can differ.
    """

    def __init__(self, num_mel_bins: int = NUM_MEL_BINS, sample_rate: int = SAMPLE_RATE):
        super().__init__()
        from lhotse.features.kaldi.layers import Wav2LogFilterBank

        self.num_mel_bins = num_mel_bins
        self.sample_rate = sample_rate
        self.fbank = Wav2LogFilterBank(
            sampling_rate=sample_rate,
            frame_length=FRAME_LENGTH,
            frame_shift=FRAME_SHIFT,
            num_filters=num_mel_bins,
            dither=0.0,
            snip_edges=False,
        )

    @torch.no_grad()
    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if wav.dim() != 2:
            raise ValueError(f"LogMel expects [batch, samples], got {tuple(wav.shape)}")
        if wav_lens is None:
            wav_lens = torch.full((wav.shape[0],), wav.shape[1], device=wav.device, dtype=torch.long)
        # Kaldi's convention: samples on the int16 scale, so that the log floor
        # (float epsilon) sits where Kaldi's does, ~-37 rather than ~-16 in our units.
        feats = self.fbank(wav.float() * INT16_SCALE) - LOG_INT16_POWER
        lens = num_frames(wav_lens.long(), self.sample_rate).clamp(max=feats.shape[1])
        feats = feats.masked_fill(lengths_to_padding_mask(lens, feats.shape[1])[..., None], 0.0)
        return feats, lens


@dataclass
class FeatureStats:
    """Global per-bin statistics of log-Mel frames."""

    mean: list[float]
    std: list[float]
    frames: int
    utterances: int

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, {"kind": "logmel-global-meanvar", **self.__dict__})

    @classmethod
    def load(cls, path: str | Path) -> "FeatureStats":
        d = read_json(path)
        try:
            stats = cls(mean=list(d["mean"]), std=list(d["std"]), frames=int(d["frames"]), utterances=int(d["utterances"]))
        except (KeyError, TypeError, ValueError) as e:
            raise SpeechrqError(f"{path}: not a feature statistics file ({e})") from None
        if len(stats.mean) != len(stats.std) or not stats.mean:
            raise SpeechrqError(f"{path}: mean and std must be non-empty lists of one length")
        return stats


class FeatureNormalizer(nn.Module):
    """``(x - mean) / std`` per Mel bin with global statistics held as buffers.

    Padded frames stay 0 so they carry no signal into the model.
    """

    def __init__(self, num_bins: int = NUM_MEL_BINS):
        super().__init__()
        self.register_buffer("mean", torch.zeros(num_bins))
        self.register_buffer("std", torch.ones(num_bins))

    @classmethod
    def from_stats(cls, stats: FeatureStats) -> "FeatureNormalizer":
        norm = cls(len(stats.mean))
        norm.mean.copy_(torch.tensor(stats.mean))
        norm.std.copy_(torch.tensor(stats.std))
        return norm

    def forward(self, feats: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        out = (feats - self.mean) / self.std
        if lens is not None:
            out = out.masked_fill(lengths_to_padding_mask(lens, feats.shape[1])[..., None], 0.0)
        return out


@torch.no_grad()
def compute_stats(cuts, max_utterances: int = 2000, max_duration: float = 200.0, seed: int = 0, device: str = "cpu", progress: bool = True) -> FeatureStats:
    """Global mean and std of log-Mel over a seeded random sample of ``cuts``.

    Sums are accumulated in float64 over every valid frame (padding excluded).
    """
    from tqdm import tqdm

    from .data.batching import make_loader

    sample = cuts.shuffle(rng=random.Random(seed))
    sample = sample.subset(first=min(max_utterances, len(sample)))
    logmel = LogMel().to(device)
    total = torch.zeros(NUM_MEL_BINS, dtype=torch.float64, device=device)
    total_sq = torch.zeros_like(total)
    frames = utts = 0
    loader = make_loader(sample, max_duration=max_duration, shuffle=False)
    for batch in tqdm(loader, desc="feature stats", unit="batch", disable=not progress):
        feats, lens = logmel(batch["audio"].to(device), batch["audio_lens"].to(device))
        valid = ~lengths_to_padding_mask(lens, feats.shape[1])
        x = feats[valid].double()
        total += x.sum(0)
        total_sq += (x * x).sum(0)
        frames += x.shape[0]
        utts += feats.shape[0]
    if frames == 0:
        raise SpeechrqError("feature statistics: no audio could be loaded from the sample")
    mean = total / frames
    std = (total_sq / frames - mean * mean).clamp_min(1e-10).sqrt()
    return FeatureStats(mean=mean.tolist(), std=std.tolist(), frames=frames, utterances=utts)
