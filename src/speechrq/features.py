"""Log-Mel features and their normalisation, computed batched in torch on the device.

:class:`LogMel` is Kaldi-compatible 80-bin log-Mel filterbank (25 ms window,
10 ms hop, povey window, pre-emphasis 0.97, no dither), computed for a whole
padded batch at once by lhotse's torch layer, so it runs on the training device.

:class:`FeatureNormalizer` defines normalisation once, because it is a known
source of bugs in public BEST-RQ code: **global** per-bin mean and standard
deviation (over every frame of a sample of the training set, not per utterance
and not along the time axis), computed once by :func:`compute_stats`, and held as
buffers so that every model that uses them saves them in its own state dict.
:class:`Moments` is the one float64 mean/std accumulator (log-Mel statistics
here, a target encoder's layer statistics in :mod:`speechrq.targets.latent`).

Features sit above :mod:`speechrq.data`: :func:`compute_stats` and
:func:`feature_batches` read a corpus through its loader; data never imports
features, and models never import either.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .checks import bad_utterances, describe_cut, name_list
from .errors import SpeechrqError
from .frames import FRAME_SHIFT, SAMPLE_RATE, lengths_to_padding_mask
from .io import atomic_write_json, read_json

log = logging.getLogger(__name__)
STATS_FILE = "feature_stats.json"  # a corpus directory's global log-Mel statistics
FRAME_LENGTH = 0.025
NUM_MEL_BINS = 80
INT16_SCALE = 32768.0
LOG_INT16_POWER = 2.0 * math.log(INT16_SCALE)  # subtracted back: features of [-1, 1] audio
VARIANCE_FLOOR = 1e-10  # Moments floors every variance here, so a computed std is at least 1e-5
MIN_STD = 1e-6  # a statistics file with a smaller std (or zero, negative, NaN) is refused: it would blow inputs up
MAX_LOGMEL_STAT = 1e3  # log-Mel of valid audio (peak <= 1000) lies within about [-40, 60]: a mean or std past this is not one


def num_frames(num_samples: torch.Tensor | int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor | int:
    """Frames of an utterance of ``num_samples`` (Kaldi with ``snip_edges=False``)."""
    hop = int(round(FRAME_SHIFT * sample_rate))
    return (num_samples + hop // 2) // hop


def samples_for_frames(frames: int, sample_rate: int = SAMPLE_RATE) -> int:
    """The fewest samples that give ``frames`` log-Mel frames (the inverse of :func:`num_frames`)."""
    hop = int(round(FRAME_SHIFT * sample_rate))
    return max(1, frames * hop - hop // 2)


class LogMel(nn.Module):
    """Waveforms ``[B, S]`` (16 kHz, float, padded) -> log-Mel ``[B, T, 80]`` and lengths ``[B]``.

    Frames past an utterance's length are set to 0. Each utterance's features
    do not depend on its batch: Kaldi (``snip_edges=False``) reflects the signal
    past its end into the last frames, and lhotse's batched layer reflects only
    the longest utterance's, so each shorter utterance's own reflection is written
    into its padding first. Alone or batched, an utterance gets the same frames
    (to float rounding of the batched FFT and Mel matmul).
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
        wav_lens = wav_lens.long()
        total = num_frames(wav.shape[1], self.sample_rate)
        # Kaldi's convention: samples on the int16 scale, so that the log floor
        # (float epsilon) sits where Kaldi's does, ~-37 rather than ~-16 in our units.
        feats = self.fbank(self._reflect_ends(wav.float(), wav_lens) * INT16_SCALE)[:, :total] - LOG_INT16_POWER
        lens = num_frames(wav_lens, self.sample_rate).clamp(max=feats.shape[1])
        feats = feats.masked_fill(lengths_to_padding_mask(lens, feats.shape[1])[..., None], 0.0)
        return feats, lens

    def _reflect_ends(self, wav: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """``wav`` with each utterance's samples after its end set to Kaldi's reflection, as far as its last frame reads.

        Sample ``n + j`` of an utterance of ``n`` samples becomes sample ``n - 1 - j``.
        The tensor grows by at most one window so every reflection fits.
        """
        hop = int(round(FRAME_SHIFT * self.sample_rate))
        window = int(round(FRAME_LENGTH * self.sample_rate))
        last_end = (num_frames(lens, self.sample_rate) - 1) * hop + window - (window - hop) // 2  # past the last frame's end
        extra = max(0, int(last_end.max()) - wav.shape[1])
        x = torch.nn.functional.pad(wav, (0, extra))
        # only samples from the shortest utterance's end on can change: the index tensors cover that tail alone
        start = min(int(lens.min()), x.shape[1])
        pos = torch.arange(start, x.shape[1], device=x.device)[None]
        fill = (pos >= lens[:, None]) & (pos < last_end[:, None])
        source = (2 * lens[:, None] - 1 - pos).clamp(0, x.shape[1] - 1)
        return torch.cat([x[:, :start], torch.where(fill, x.gather(1, source), x[:, start:])], dim=1)


@dataclass
class FeatureStats:
    """Global per-bin statistics of log-Mel frames.

    Valid statistics (:meth:`problem`): equal non-empty lists, every mean and std finite,
    every std at least :data:`MIN_STD`, none beyond :data:`MAX_LOGMEL_STAT` in magnitude.
    Neither :meth:`save` nor :meth:`load` lets others through.
    """

    mean: list[float]
    std: list[float]
    frames: int
    utterances: int
    source: dict | None = None  # what they were computed from: the corpus's content, split, sample (:mod:`speechrq.identity`)

    def problem(self) -> str | None:
        """What makes these statistics unusable (naming the first bin at fault), or None."""
        if len(self.mean) != len(self.std) or not self.mean:
            return "mean and std must be non-empty lists of one length"
        for name, values in (("mean", self.mean), ("std", self.std)):
            for b, v in enumerate(values):
                if not math.isfinite(v):
                    return f"{name} of bin {b} is {v} (statistics must be finite; recompute them with `speechrq features stats`)"
                if abs(v) > MAX_LOGMEL_STAT:
                    return f"{name} of bin {b} is {v:.3g}, not a log-Mel statistic (at most {MAX_LOGMEL_STAT:g} in magnitude)"
        for b, v in enumerate(self.std):
            if v < MIN_STD:
                return f"std of bin {b} is {v:.3g}: a standard deviation must be at least {MIN_STD:g} (computed ones are floored at 1e-5)"
        return None

    def save(self, path: str | Path) -> None:
        if (problem := self.problem()):
            raise SpeechrqError(f"{path}: refusing to write feature statistics: {problem}")
        atomic_write_json(path, {"kind": "logmel-global-meanvar", **self.__dict__})

    @classmethod
    def load(cls, path: str | Path) -> "FeatureStats":
        d = read_json(path)
        try:
            stats = cls(mean=[float(v) for v in d["mean"]], std=[float(v) for v in d["std"]], frames=int(d["frames"]),
                        utterances=int(d["utterances"]), source=d.get("source"))
        except (KeyError, TypeError, ValueError) as e:
            raise SpeechrqError(f"{path}: not a feature statistics file ({e})") from None
        if (problem := stats.problem()):
            raise SpeechrqError(f"{path}: {problem}")
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


class Moments:
    """Per-dimension mean and std of many ``[n, dim]`` rows, summed in float64 (one pass, bounded memory)."""

    def __init__(self) -> None:
        self.sum = self.sum_sq = None
        self.count = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.double()
        if self.sum is None:
            self.sum = torch.zeros(x.shape[-1], dtype=torch.float64, device=x.device)
            self.sum_sq = torch.zeros_like(self.sum)
        self.sum += x.sum(0)
        self.sum_sq += (x * x).sum(0)
        self.count += x.shape[0]

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        """float64 mean and std (population); the variance is floored at 1e-10. Non-finite sums (rows holding
        NaN or inf, or squares past float64) are refused: callers check their rows first, to name the utterance."""
        if not self.count:
            raise ValueError("no rows to compute statistics from")
        if not bool(torch.isfinite(self.sum).all() and torch.isfinite(self.sum_sq).all()):
            dims = (~(torch.isfinite(self.sum) & torch.isfinite(self.sum_sq))).nonzero().flatten().tolist()
            raise SpeechrqError(f"statistics of {self.count} rows: non-finite sums in dimension {name_list([str(d) for d in dims])} "
                                "(the rows hold NaN or inf)")
        mean = self.sum / self.count
        return mean, (self.sum_sq / self.count - mean * mean).clamp_min(VARIANCE_FLOOR).sqrt()


def feature_batches(cuts, normalizer: FeatureNormalizer, max_duration: float, device: torch.device | str = "cpu",
                    logmel: LogMel | None = None):
    """Normalised log-Mel of ``cuts`` in order, trimmed to whole encoder frames, batch by batch.

    Yields ``(feats [B, T_in, 80], lengths [B], audio [B, S], audio_lens [B], raw [B, T_in, 80])``:
    the audio for encoders that read waveforms, the log-Mel before normalisation for
    one with statistics of its own; audio that cannot be loaded is skipped by the
    loader with a warning naming the file.
    """
    from .data.batching import make_loader
    from .models.conformer import trim_to_frames

    logmel = logmel if logmel is not None else LogMel().to(device)
    for batch in make_loader(cuts, max_duration, shuffle=False, num_buckets=1):
        if not len(batch["cuts"]):
            continue
        audio, audio_lens = batch["audio"].to(device), batch["audio_lens"].to(device)
        feats, lens = trim_to_frames(*logmel(audio, audio_lens))
        check_logmel(feats, lens, audio, batch["cuts"], "log-Mel")
        normed = normalizer(feats, lens)
        check_logmel(normed, lens, audio, batch["cuts"], "normalised log-Mel")  # finite raw features, bad statistics
        yield normed, lens, audio, audio_lens, feats


def check_logmel(feats: torch.Tensor, lens: torch.Tensor, audio: torch.Tensor, cuts, what: str = "log-Mel", where: str = "") -> None:
    """Refuse a batch's (log-Mel) features ``[B, T, F]`` holding NaN or inf in a valid frame, naming each utterance
    at fault, its file and its audio's peak (which tells overflowing audio from other causes). Batched."""
    bad = bad_utterances(feats, lens)
    if not bool(bad.any()):
        return
    from .data.audio import MAX_PEAK

    rows = bad.nonzero().flatten().tolist()
    peaks = audio[rows].abs().amax(-1).tolist()
    cuts = list(cuts)
    named = [f"{describe_cut(cuts[r])}, whose audio peaks at {p:.3g}" for r, p in zip(rows, peaks)]
    why = (f"valid audio is finite and peaks at most at {MAX_PEAK:g}, full scale 1.0" if any(not p <= MAX_PEAK for p in peaks)
           else "the audio is valid: the statistics or the model are at fault" if len(rows) == len(cuts) > 1 else "")
    raise SpeechrqError(f"{where}non-finite {what} from utterance {name_list(named, len(cuts))}" + (f" ({why})" if why else ""))


@torch.no_grad()
def compute_stats(cuts, max_utterances: int = 2000, max_duration: float = 200.0, seed: int = 0, device: str = "cpu", progress: bool = True,
                  ctx=None) -> FeatureStats:
    """Global mean and std of log-Mel over a seeded random sample of ``cuts``.

    Sums are accumulated in float64 over every valid frame (padding excluded). A batch whose
    log-Mel holds NaN or inf is refused, naming the utterance, its file and its audio's peak
    (:func:`check_logmel`); the result is checked again before it is returned (:meth:`FeatureStats.problem`).
    The sample is read in consecutive batches of at most ``max_duration`` padded seconds; ``ctx``
    (:class:`speechrq.distributed.Context`): under torchrun each rank reads its share of those batches
    (:func:`speechrq.distributed.shard_cuts`) and the float64 sums are added over ranks, so every rank
    returns the statistics of one process to float64 rounding.
    """
    from tqdm import tqdm

    from . import distributed
    from .data.batching import no_audio_error, sequential_batches
    from .data.corpus import seeded_subset

    ctx = ctx or distributed.Context()
    logmel = LogMel().to(device)
    moments, utts, skipped = Moments(), 0, []
    sample = list(seeded_subset(cuts, max_utterances, seed))
    share = distributed.rank_cuts(sample, max_duration, ctx)
    batches = sequential_batches(share, max_duration, skipped=skipped)
    for batch in tqdm(batches, desc="feature stats", unit="batch", disable=not progress or not ctx.is_main):
        audio = batch["audio"].to(device)
        feats, lens = logmel(audio, batch["audio_lens"].to(device))
        check_logmel(feats, lens, audio, batch["cuts"], where="feature statistics: ")
        moments.add(feats[~lengths_to_padding_mask(lens, feats.shape[1])])
        utts += feats.shape[0]
    if ctx.distributed:  # the float64 sums of every rank's share, added
        zeros = torch.zeros(logmel.num_mel_bins, dtype=torch.float64)
        sums = torch.stack([moments.sum.cpu() if moments.sum is not None else zeros, moments.sum_sq.cpu() if moments.sum_sq is not None else zeros])
        counts = torch.tensor([moments.count, utts], dtype=torch.float64)
        distributed.all_reduce_sum(sums, ctx)
        distributed.all_reduce_sum(counts, ctx)
        moments.sum, moments.sum_sq = sums[0], sums[1]
        moments.count, utts = int(counts[0]), int(counts[1])
    if moments.count == 0:  # every file failed: why, in one line
        raise no_audio_error([s for part in distributed.gather_objects(skipped, ctx) for s in part])
    mean, std = moments.mean_std()
    stats = FeatureStats(mean=mean.tolist(), std=std.tolist(), frames=moments.count, utterances=utts)
    if (problem := stats.problem()):
        raise SpeechrqError(f"feature statistics over {utts} utterances: {problem}")
    return stats


def corpus_stats(corpus_dir: str | Path, split: str | list[str] = "train", seed: int = 0, **kwargs) -> FeatureStats:
    """``corpus_dir/feature_stats.json``, computed from ``split`` and saved when missing."""
    from .data.corpus import load_cuts

    from .identity import corpus_fingerprint

    path = Path(corpus_dir) / STATS_FILE
    made_from = {"corpus": corpus_fingerprint(corpus_dir, split), "split": split}
    if not path.exists():
        log.warning("%s missing: computing global log-Mel statistics from the %s split", path, split)
        stats = compute_stats(load_cuts(corpus_dir, split), seed=seed, **kwargs)
        stats.source = made_from | {"seed": seed, "max_utterances": kwargs.get("max_utterances", 2000)}
        stats.save(path)
    stats = FeatureStats.load(path)
    if stats.source is not None and stats.source.get("split") != split:  # statistics of another split: is it unchanged?
        made_from = {"corpus": corpus_fingerprint(corpus_dir, stats.source["split"])}
    check_stats_source(path, stats, made_from)
    return stats


def check_stats_source(path: str | Path, stats: FeatureStats, expected: dict) -> None:
    """Refuse statistics computed from another corpus content or split than ``expected`` (keys of ``stats.source``)."""
    from .identity import describe_difference

    if stats.source is None:
        log.warning("%s: holds no record of the corpus it was computed from (an older speechrq); assuming this one", path)
        return
    old = {k: stats.source.get(k) for k in expected}
    if (why := describe_difference(old, expected)):
        raise SpeechrqError(f"{path}: computed from another corpus or split ({why}); recompute it with "
                            "`speechrq features stats CORPUS --force`")
