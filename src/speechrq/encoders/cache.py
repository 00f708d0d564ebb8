"""Hidden states of a frozen encoder, computed once per utterance and kept on disk.

``root/<fingerprint>/<utterance id>.npy`` holds float16 ``[L + 1, T, dim]`` (every
state, layer -1 first). The fingerprint is a hash of the encoder's weights, so
another checkpoint never reads stale states; probes, unit fitting and analyses
read the states back instead of running the encoder again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..io import atomic_path, utterance_file


class HiddenStateCache:
    """``root/<fingerprint>/<utterance id>.npy``: float16 ``[L + 1, T, dim]`` per utterance."""

    def __init__(self, root: str | Path, fingerprint: str):
        self.dir = Path(root) / fingerprint
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, utt_id: str) -> Path:
        return utterance_file(self.dir, utt_id)

    def get(self, utt_id: str) -> np.ndarray | None:
        try:
            return np.load(self.path(utt_id))
        except (FileNotFoundError, ValueError, OSError):
            return None

    def put(self, utt_id: str, states: np.ndarray) -> None:
        with atomic_path(self.path(utt_id)) as tmp:
            np.save(tmp, states.astype(np.float16))


def cache_hidden_states(encoder, cuts, cache: HiddenStateCache, max_duration: float = 120.0, progress: bool = True) -> int:
    """Run a frozen ``encoder`` on every utterance of ``cuts`` whose states are not cached yet; returns how many ran."""
    from lhotse import CutSet
    from tqdm import tqdm

    from ..checks import FLOAT16_MAX, describe_cut, require_finite  # stored as float16: finite and within its range
    from ..data.batching import make_loader

    missing = CutSet.from_cuts([c for c in cuts if not cache.path(c.id).exists()])
    if len(missing) == 0:
        return 0
    device = next(iter([*encoder.parameters(), *encoder.buffers()])).device
    done = 0
    loader = make_loader(missing, max_duration, shuffle=False)
    for batch in tqdm(loader, desc=f"hidden states {encoder.fingerprint}", unit="batch", disable=not progress):
        if not len(batch["cuts"]):  # every file of the batch failed to load (each was named by a warning)
            continue
        states, lens = encoder(batch["audio"].to(device), batch["audio_lens"].to(device))
        stacked = torch.stack(states, dim=1)  # [B, L + 1, T, dim], stacked once: checked as [B, T, L + 1, dim] (a view)
        require_finite(stacked.transpose(1, 2), lens, [describe_cut(c) for c in batch["cuts"]],
                       f"hidden states of {encoder.fingerprint}", limit=FLOAT16_MAX)
        stacked = stacked.to("cpu", torch.float16).numpy()
        for i, cut in enumerate(batch["cuts"]):
            cache.put(cut.id, stacked[i, :, : int(lens[i])])
            done += 1
    return done


def pad_states(arrays: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-utterance ``[L + 1, T_i, dim]`` states (numpy or torch, any float) -> ``[B, L + 1, T, dim]`` float32, lengths ``[B]``."""
    arrays = [torch.as_tensor(a) for a in arrays]
    lens = torch.tensor([a.shape[1] for a in arrays])
    padded = torch.nn.utils.rnn.pad_sequence([a.transpose(0, 1) for a in arrays], batch_first=True)  # [B, T, L + 1, dim], one copy
    return padded.transpose(1, 2).float(), lens


def load_batch(cache: HiddenStateCache, ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached states of ``ids``, padded: ``[B, L + 1, T, dim]`` float32 and lengths ``[B]``."""
    arrays = [cache.get(i) for i in ids]
    if any(a is None for a in arrays):
        raise KeyError(f"hidden states not cached: {[i for i, a in zip(ids, arrays) if a is None][:3]}")
    return pad_states(arrays)
