"""Hidden states of a frozen encoder, computed once per utterance and kept on disk, within a budget.

``root/<fingerprint>/<utterance id>.npy`` holds float16 ``[L + 1, T, dim]`` (every
state, layer -1 first); ``<utterance id>.mean.npy`` float32 ``[L + 1, dim]``, the
states averaged over the utterance's frames, which is all an utterance-level probe
(SID, IC, ER, LID) reads (:func:`utterance_means`). The fingerprint is a hash of the
encoder's weights, so another checkpoint never reads stale states; probes, unit
fitting and analyses read the states back instead of running the encoder again.

**One batch per utterance.** Encoders are not batch-invariant to the last bit (padding
changes the shapes of the matrix products, and so the order of their sums), so every
utterance's states are computed in one fixed batch: consecutive cuts of its part's
manifest, at most :data:`STATES_BATCH_SECONDS` padded (:func:`speechrq.data.batching.padded_groups`).
The cache pass, a resumed pass, a rank of a sharded pass (:mod:`speechrq.distributed`) and the
recomputation of states that were not cached (:class:`Recomputer`) all compute that batch, so
they give the same bits (with the same threads per process).

**Within a budget** (:func:`plan_cache`): what probes read is estimated from the manifest before
any audio is read; what fits the budget is cached (means first, then frames in manifest order), the
rest is recomputed on the fly whenever a probe reads it (s3prl's way), each time at the cost of its
whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_path, read_cache_array, utterance_file

STATES_BATCH_SECONDS = 30.0
"""Padded seconds of audio per batch of the hidden-state pass: an utterance recomputed on the fly costs its whole batch,
so batches are kept short (about two LibriSpeech utterances)."""
NPY_HEADER = 128  # bytes of a .npy file besides its array


class HiddenStateCache:
    """``root/<fingerprint>/<utterance id>.npy``: float16 ``[L + 1, T, dim]`` per utterance, and ``<id>.mean.npy``:
    float32 ``[L + 1, dim]``, its mean over frames."""

    def __init__(self, root: str | Path, fingerprint: str):
        self.dir = Path(root) / fingerprint
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, utt_id: str) -> Path:
        return utterance_file(self.dir, utt_id)

    def mean_path(self, utt_id: str) -> Path:
        return utterance_file(self.dir, utt_id, ".mean.npy")

    def get(self, utt_id: str) -> np.ndarray | None:
        """The utterance's cached states, or None when they are not cached.

        Raises:
            TornCacheFile: the file does not load (a system crash's leftover; removed, computed again by the next pass).
            SpeechrqError: a folder or an unreadable file stands in its place (:func:`speechrq.io.read_cache_array`).
        """
        return read_cache_array(self.path(utt_id))

    def get_mean(self, utt_id: str) -> np.ndarray | None:
        return read_cache_array(self.mean_path(utt_id))

    def put(self, utt_id: str, states: np.ndarray) -> None:
        with atomic_path(self.path(utt_id), durable=False) as tmp:  # a cache: computed again if a system crash tears it
            np.save(tmp, states.astype(np.float16))

    def put_mean(self, utt_id: str, mean: np.ndarray) -> None:
        with atomic_path(self.mean_path(utt_id), durable=False) as tmp:
            np.save(tmp, mean.astype(np.float32))


def utterance_means(states) -> torch.Tensor:
    """``[L + 1, T, dim]`` states (float16, as cached) -> float32 ``[L + 1, dim]``, their mean over the ``T`` frames.

    Summed in float64, so the result does not depend on the order of the sum (threads, memory layout): the mean
    cached beside the states and the one computed later from them are the same bits."""
    t = torch.as_tensor(states)
    return (t.double().sum(1) / max(t.shape[1], 1)).float()


def state_shape(encoder) -> tuple[int, int]:
    """``(L + 1, dim)`` of a frozen encoder's states, without running it."""
    dim = getattr(encoder, "dim", None) or encoder.encoder.config.dim
    return int(encoder.num_states), int(dim)


@dataclass
class CachePlan:
    """Which states of one encoder are cached, and what is recomputed when read (:func:`plan_cache`)."""

    frames: set = field(default_factory=set)  # ids whose frames are cached
    means: set = field(default_factory=set)  # ids whose utterance means are cached
    recomputed: set = field(default_factory=set)  # ids read by a probe but cached neither way it reads them
    bytes_needed: int = 0  # everything the probes read, cached
    bytes_cached: int = 0  # what the plan caches

    @property
    def complete(self) -> bool:
        return not self.recomputed


def estimate_bytes(num_states: int, dim: int, seconds: float, frame_seconds: float = 0.04) -> int:
    """Bytes of one utterance's cached frames (float16 ``[L + 1, T, dim]``), ``T`` from its duration."""
    return num_states * int(seconds / frame_seconds) * dim * 2 + NPY_HEADER


def plan_cache(shape: tuple[int, int], frame_items: list[tuple[str, float]], mean_ids: list[str], budget: float | None) -> CachePlan:
    """What to cache for one encoder of ``shape`` ``(L + 1, dim)`` within ``budget`` bytes (None: no limit).

    ``frame_items``: ``(id, seconds)`` of the utterances whose frames probes read, in priority order
    (manifest order); ``mean_ids``: those whose utterance means they read. Means come first (they are
    ``T`` times smaller), then frames in order while they fit; what does not fit is recomputed on the fly."""
    num_states, dim = shape
    mean_bytes = num_states * dim * 4 + NPY_HEADER
    plan = CachePlan()
    plan.bytes_needed = len(mean_ids) * mean_bytes + sum(estimate_bytes(num_states, dim, s) for _, s in frame_items)
    left = float("inf") if budget is None else float(budget)
    for i in mean_ids:
        if mean_bytes > left:
            break
        plan.means.add(i)
        left -= mean_bytes
    for i, seconds in frame_items:
        size = estimate_bytes(num_states, dim, seconds)
        if size > left:
            break
        plan.frames.add(i)
        left -= size
    plan.bytes_cached = len(plan.means) * mean_bytes + sum(estimate_bytes(num_states, dim, s) for i, s in frame_items if i in plan.frames)
    frame_ids = {i for i, _ in frame_items}
    plan.recomputed = (frame_ids - plan.frames) | (set(mean_ids) - plan.means - plan.frames)
    return plan


def _encode_group(encoder, loader, group, skipped: list | None = None) -> tuple[list, torch.Tensor | None, torch.Tensor | None]:
    """One batch of the pass: its loaded cuts, their states ``[B, L + 1, T, dim]`` float16 on the CPU (checked finite), lengths."""
    from lhotse import CutSet

    from ..checks import FLOAT16_MAX, describe_cut, require_finite  # stored as float16: finite and within its range

    device = next(iter([*encoder.parameters(), *encoder.buffers()])).device
    batch = loader[CutSet.from_cuts(group)]
    if skipped is not None:
        skipped += batch["skipped"]
    if not len(batch["cuts"]):  # every file of the batch failed to load (each was named by a warning)
        return [], None, None
    states, lens = encoder(batch["audio"].to(device), batch["audio_lens"].to(device))
    stacked = torch.stack(states, dim=1)  # [B, L + 1, T, dim], stacked once: checked as [B, T, L + 1, dim] (a view)
    require_finite(stacked.transpose(1, 2), lens, [describe_cut(c) for c in batch["cuts"]],
                   f"hidden states of {encoder.fingerprint}", limit=FLOAT16_MAX)
    return list(batch["cuts"]), stacked.to("cpu", torch.float16), lens.cpu()


def cache_hidden_states(encoder, cuts, cache: HiddenStateCache, max_duration: float = STATES_BATCH_SECONDS, progress: bool = True,
                        plan: CachePlan | None = None, ctx=None) -> int:
    """Run a frozen ``encoder`` over ``cuts`` (one part of a corpus, in manifest order) and cache what ``plan`` says
    (default: every utterance's frames) that is not cached yet; returns how many utterances were written.

    Batches are the pass's fixed ones (see the module docstring); one holding nothing to write is skipped unread.
    ``ctx`` (:class:`speechrq.distributed.Context`): under torchrun each rank runs its share of the batches."""
    from tqdm import tqdm

    from .. import distributed
    from ..data.batching import AudioBatches, padded_groups

    ctx = ctx or distributed.Context()
    cuts = list(cuts)

    def todo(c) -> tuple[bool, bool]:  # (frames, mean) to write
        frames = (plan is None or c.id in plan.frames) and not cache.path(c.id).exists()
        mean = plan is not None and c.id in plan.means and not cache.mean_path(c.id).exists()
        return frames, mean

    share = list(distributed.rank_cuts(cuts, max_duration, ctx))
    groups = [g for g in padded_groups(share, max_duration) if any(any(todo(c)) for c in g)]
    if not groups:
        return 0
    loader = AudioBatches(getattr(encoder, "min_samples", 1))
    done, skipped = 0, []
    for group in tqdm(groups, desc=f"hidden states {encoder.fingerprint}", unit="batch", disable=not progress or not ctx.is_main):
        loaded, stacked, lens = _encode_group(encoder, loader, group, skipped)
        for i, cut in enumerate(loaded):
            frames, mean = todo(cut)
            states = stacked[i, :, : int(lens[i])].contiguous()
            if frames:
                cache.put(cut.id, states.numpy())
            if mean:
                cache.put_mean(cut.id, utterance_means(states).numpy())
            done += frames or mean
    if not done and skipped:  # not one file of the pass loaded: why, in one line
        from ..data.batching import no_audio_error

        raise no_audio_error(skipped)
    return done


class Recomputer:
    """States of utterances that were not cached, computed when read, in the batch the cache pass computes them in, so the
    same bits as cached ones: float16 ``[L + 1, T, dim]`` per utterance.

    ``parts``: each part's cuts in manifest order (the pass's batches are formed per part). Reading one utterance
    costs its whole batch (at most ``max_duration`` padded seconds); utterances of one batch read together cost it once.
    """

    def __init__(self, encoder, parts: list[list], max_duration: float = STATES_BATCH_SECONDS):
        from ..data.batching import AudioBatches, padded_groups

        self.encoder = encoder
        self.loader = AudioBatches(getattr(encoder, "min_samples", 1))
        self.groups: list[list] = []
        self.group_of: dict[str, int] = {}
        for cuts in parts:
            for g in padded_groups(list(cuts), max_duration):
                for c in g:
                    self.group_of.setdefault(c.id, len(self.groups))
                self.groups.append(g)
        self.batches = 0  # batches computed so far

    def states(self, ids) -> dict[str, np.ndarray]:
        """``{id: float16 [L + 1, T, dim]}`` for ``ids`` (those whose audio loads)."""
        from ..errors import SpeechrqError

        wanted = set(ids)
        if unknown := [i for i in wanted if i not in self.group_of]:
            raise SpeechrqError(f"hidden states: utterance {unknown[0]!r} is in no part of the corpus being evaluated")
        out = {}
        for g in sorted({self.group_of[i] for i in wanted}):
            loaded, stacked, lens = _encode_group(self.encoder, self.loader, self.groups[g])
            self.batches += 1
            for k, cut in enumerate(loaded):
                if cut.id in wanted:
                    out[cut.id] = stacked[k, :, : int(lens[k])].contiguous().numpy()
        return out


def pad_states(arrays: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-utterance ``[L + 1, T_i, dim]`` states (numpy or torch, any float) -> ``[B, L + 1, T, dim]`` float32, lengths ``[B]``."""
    arrays = [torch.as_tensor(a) for a in arrays]
    lens = torch.tensor([a.shape[1] for a in arrays])
    # one copy, cast on the way, into a zeroed contiguous float32 [B, L + 1, T, dim] (the weighted sum then reads each
    # utterance's layers as one [L + 1, T * dim] block, no copy)
    padded = arrays[0].new_zeros((len(arrays), arrays[0].shape[0], int(lens.max()), arrays[0].shape[2]), dtype=torch.float32)
    for row, a in zip(padded, arrays):
        row[:, : a.shape[1]].copy_(a)
    return padded, lens


def load_batch(cache: HiddenStateCache, ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached states of ``ids``, padded: ``[B, L + 1, T, dim]`` float32 and lengths ``[B]``."""
    arrays = [cache.get(i) for i in ids]
    if any(a is None for a in arrays):
        raise KeyError(f"hidden states not cached: {[i for i, a in zip(ids, arrays) if a is None][:3]}")
    return pad_states(arrays)
