"""A per-stage cache of latent targets.

While θ is frozen an utterance's targets do not change: its input features are
deterministic (no dither, no augmentation in speechrq's pipeline) and the mask
never reaches the target encoder. So a stage computes each utterance's targets
once and reuses them in later epochs. Entries are ``uint16 [frames, N]`` (a
4096-word codebook needs 12 bits), keyed by utterance id and by the identity of
what made them (:meth:`~speechrq.targets.latent.LatentTargets.identity`: θ's
weights, its layer statistics, the target layers, projections and codebooks), so
a run restarted with another θ never reads the old one's targets; a new
identity drops the old entries. The cache is bounded: once
``max_bytes`` is reached, new utterances are computed as before and not stored.

``memory`` keeps entries in this process; ``disk`` writes one ``.npy`` per
utterance under ``root/<identity>/`` (for corpora whose targets exceed RAM).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from ..errors import TornCacheFile
from ..io import atomic_path, read_cache_array, utterance_file

MAX_CODEBOOK_SIZE = 2**16  # uint16 entries
log = logging.getLogger(__name__)


class TargetCache:
    def __init__(self, kind: str = "memory", max_bytes: int = 2 * 2**30, root: str | Path | None = None):
        if kind not in ("memory", "disk"):
            raise ValueError(f"cache kind {kind!r}: choose memory or disk")
        if kind == "disk" and root is None:
            raise ValueError("a disk cache needs a root directory")
        self.kind, self.max_bytes = kind, max_bytes
        self.root = Path(root) if root is not None else None
        self.source = None
        self._mem: dict[str, np.ndarray] = {}
        self.bytes = 0
        self.hits = self.misses = 0
        self.full = False

    @property
    def hit_rate(self) -> float:
        """Share of batches served from the cache so far."""
        return self.hits / max(1, self.hits + self.misses)

    def _dir(self) -> Path:
        return self.root / self.source

    def set_source(self, identity: str) -> None:
        """Targets of another θ (``identity``): forget everything stored for any other."""
        if identity == self.source:
            return
        self._mem.clear()
        self.bytes, self.full = 0, False
        if self.kind == "disk":
            if self.root.exists():
                for p in self.root.iterdir():
                    if p.is_dir() and p.name != identity:
                        shutil.rmtree(p, ignore_errors=True)
            d = self.root / identity
            d.mkdir(parents=True, exist_ok=True)
            self.bytes = sum(p.stat().st_size for p in d.glob("*.npy"))
        self.source = identity

    def _path(self, key: str) -> Path:
        return utterance_file(self._dir(), key)

    def _get(self, key: str) -> np.ndarray | None:
        if self.kind == "memory":
            return self._mem.get(key)
        try:
            return read_cache_array(self._path(key))
        except TornCacheFile:  # a system crash's leftover, removed: a miss, computed and stored again
            return None

    def lookup(self, ids: list[str], frame_lens: torch.Tensor, max_frames: int, device: torch.device) -> torch.Tensor | None:
        """``[B, max_frames, N]`` int64 targets if every utterance is cached (padding 0), else None."""
        entries = []
        for key, n in zip(ids, frame_lens.tolist()):
            e = self._get(key)
            if e is None or e.shape[0] != n:
                self.misses += 1
                return None
            entries.append(e)
        self.hits += 1
        out = torch.zeros(len(ids), max_frames, entries[0].shape[1], dtype=torch.int64)
        for i, e in enumerate(entries):
            out[i, : e.shape[0]] = torch.from_numpy(e.astype(np.int64))
        return out.to(device, non_blocking=True)

    def store(self, ids: list[str], targets: torch.Tensor, frame_lens: torch.Tensor) -> None:
        """Keep each utterance's valid frames of ``targets [B, T, N]``, while the budget lasts."""
        host = targets.to("cpu", torch.int32).numpy()
        for key, row, n in zip(ids, host, frame_lens.tolist()):
            entry = row[:n].astype(np.uint16)
            if self.bytes + entry.nbytes > self.max_bytes:
                if not self.full:  # said once: later utterances' targets are computed every epoch
                    log.warning("target cache full (%.2f GB, targets.cache_max_gb): targets of further utterances are "
                                "computed each time, not stored", self.max_bytes / 2**30)
                    self.full = True
                return
            if self.kind == "memory":
                if key not in self._mem:
                    self._mem[key] = entry
                    self.bytes += entry.nbytes
            else:
                path = self._path(key)
                if not path.exists():
                    with atomic_path(path, durable=False) as tmp:  # a cache: a torn file reads as a miss (_get)
                        np.save(tmp, entry)
                    self.bytes += entry.nbytes
