"""SUPERB-style featurizer over a frozen encoder, with the hidden states cached on disk.

The encoder is frozen while probes train, so each utterance's hidden states (front
end and every block) are computed once and stored as ``float16 [L + 1, T, dim]``
under ``root/<encoder fingerprint>/``; every later probe step, learning rate and
task reads them back instead of running the encoder again. The fingerprint is a
hash of the checkpoint's weights, so another checkpoint never reads stale states.

:class:`WeightedSum` is s3prl's featurizer: a learnable softmax-weighted sum of
the layers, optionally layer-normalising each first.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..features import FeatureNormalizer, LogMel, lengths_to_padding_mask, num_frames
from ..models.conformer import SUBSAMPLING, SpeechEncoder


def _freeze(module: nn.Module) -> None:
    """Eval mode, no gradients, and a count of encoder passes (a cache hit runs none)."""
    module.forward_calls = 0
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)


class FrozenEncoder(nn.Module):
    """Waveforms -> every hidden state of a speechrq encoder, in eval mode without gradients."""

    def __init__(self, normalizer: FeatureNormalizer, encoder: SpeechEncoder, fingerprint: str, config=None,
                 mel_quantizer: nn.Module | None = None):
        super().__init__()
        self.logmel, self.normalizer, self.encoder, self.fingerprint = LogMel(), normalizer, encoder, fingerprint
        # the pre-training config and Mel quantizer, for target-quality analyses
        self.config, self.mel_quantizer = config, mel_quantizer
        _freeze(self)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> "FrozenEncoder":
        """The student encoder of a ``speechrq pretrain`` checkpoint (with its feature statistics)."""
        from ..checkpoint import MODEL_FILE, load_model_state, read_meta
        from ..config import config_from_dict
        from ..pretrain.config import PretrainConfig
        from ..pretrain.trainer import build_model

        cfg = config_from_dict(PretrainConfig, read_meta(path)["config"], source=str(path))
        cfg.targets.refresh_at, cfg.targets.init_from, cfg.targets.encoder = [], None, None  # θ is not needed
        model = build_model(cfg)
        state = load_model_state(path)
        own = model.state_dict()
        model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
        h = hashlib.sha256()
        _hash_file(h, Path(path) / MODEL_FILE)
        return cls(model.normalizer, model.encoder, h.hexdigest()[:16], cfg, model.targets.mel.quantizer)

    @classmethod
    def random_like(cls, path: str | Path, seed: int = 0) -> "FrozenEncoder":
        """A randomly initialised encoder of the checkpoint's shape (with its feature statistics): the baseline."""
        trained = cls.from_checkpoint(path)
        torch.manual_seed(seed)
        from ..models.conformer import speech_encoder

        encoder = speech_encoder(trained.encoder.config)
        return cls(trained.normalizer, encoder, f"random-{trained.fingerprint}-{seed}", trained.config, trained.mel_quantizer)

    @property
    def num_states(self) -> int:
        return self.encoder.num_layers + 1

    @torch.no_grad()
    def forward(self, audio: torch.Tensor, audio_lens: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``[B, S]`` audio -> ``([front end, block 0, ...], frame lengths)``, each ``[B, T, dim]``."""
        self.forward_calls += 1
        feats, lens = self.logmel(audio, audio_lens)
        t_in = feats.shape[1] // 4 * 4
        lens = lens.clamp(max=t_in)
        return self.encoder.extract_features(self.normalizer(feats[:, :t_in], lens), lens)


def _hash_file(h, path: Path) -> None:
    """Feed ``path``'s bytes to the hash ``h`` in 4 MB blocks (weights files are large)."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)


def _folder_fingerprint(path: Path) -> str:
    """sha256 over a model folder's files (names and bytes), first 16 hex digits."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        _hash_file(h, f)
    return h.hexdigest()[:16]


class FrozenPretrained(nn.Module):
    """A local Hugging Face WavLM / HuBERT / wav2vec2 folder as a probing baseline.

    Same interface as :class:`FrozenEncoder`: every hidden state (the transformer's
    input, then each layer) on the 40 ms grid of speechrq's encoders (20 ms frames
    averaged in pairs), so its probes and layer weights line up with speechrq models'.
    """

    config = None  # no speechrq targets to analyse

    def __init__(self, path: str | Path):
        super().__init__()
        from ..targets.pretrained import PretrainedTargetEncoder, pretrained_config

        self.model = PretrainedTargetEncoder(path, depth=int(pretrained_config(path)["num_hidden_layers"]))
        self.fingerprint = "hf-" + _folder_fingerprint(Path(path))
        _freeze(self)

    @property
    def num_states(self) -> int:
        return self.model.num_layers + 1

    @torch.no_grad()
    def forward(self, audio: torch.Tensor, audio_lens: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        self.forward_calls += 1
        lens = torch.div(num_frames(audio_lens), SUBSAMPLING, rounding_mode="floor")  # the grid speechrq encoders use
        return self.model.hidden_states(audio, audio_lens, int(lens.max())), lens


class HiddenStateCache:
    """``root/<fingerprint>/<utterance id>.npy``: float16 ``[L + 1, T, dim]`` per utterance."""

    def __init__(self, root: str | Path, fingerprint: str):
        self.dir = Path(root) / fingerprint
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, utt_id: str) -> Path:
        return self.dir / f"{utt_id.replace('/', '__')}.npy"

    def get(self, utt_id: str) -> np.ndarray | None:
        try:
            return np.load(self.path(utt_id))
        except (FileNotFoundError, ValueError, OSError):
            return None

    def put(self, utt_id: str, states: np.ndarray) -> None:
        from ..io import atomic_path

        with atomic_path(self.path(utt_id)) as tmp:
            np.save(tmp, states.astype(np.float16))


def cache_hidden_states(encoder: FrozenEncoder, cuts, cache: HiddenStateCache, max_duration: float = 120.0, progress: bool = True) -> int:
    """Run ``encoder`` on every utterance of ``cuts`` whose states are not cached yet; returns how many ran."""
    from lhotse import CutSet
    from tqdm import tqdm

    from ..data.batching import make_loader

    missing = CutSet.from_cuts([c for c in cuts if not cache.path(c.id).exists()])
    if len(missing) == 0:
        return 0
    device = next(encoder.parameters()).device
    done = 0
    loader = make_loader(missing, max_duration, shuffle=False)
    for batch in tqdm(loader, desc=f"hidden states {encoder.fingerprint}", unit="batch", disable=not progress):
        states, lens = encoder(batch["audio"].to(device), batch["audio_lens"].to(device))
        stacked = torch.stack(states, dim=1).to("cpu", torch.float16).numpy()  # [B, L + 1, T, dim]
        for i, cut in enumerate(batch["cuts"]):
            cache.put(cut.id, stacked[i, :, : int(lens[i])])
            done += 1
    return done


def pad_states(arrays: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-utterance ``[L + 1, T_i, dim]`` states (numpy or torch, any float) -> ``[B, L + 1, T, dim]`` float32, lengths ``[B]``."""
    arrays = [torch.as_tensor(a) for a in arrays]
    lens = torch.tensor([a.shape[1] for a in arrays])
    out = torch.zeros(len(arrays), arrays[0].shape[0], int(lens.max()), arrays[0].shape[2])
    for i, a in enumerate(arrays):
        out[i, :, : a.shape[1]] = a.float()
    return out, lens


def load_batch(cache: HiddenStateCache, ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached states of ``ids``, padded: ``[B, L + 1, T, dim]`` float32 and lengths ``[B]``."""
    arrays = [cache.get(i) for i in ids]
    if any(a is None for a in arrays):
        raise KeyError(f"hidden states not cached: {[i for i, a in zip(ids, arrays) if a is None][:3]}")
    return pad_states(arrays)


class WeightedSum(nn.Module):
    """``[B, L + 1, T, dim] -> [B, T, dim]``: softmax-weighted sum of the layers (s3prl's featurizer)."""

    def __init__(self, num_states: int, layer_norm: bool = False):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_states))
        self.layer_norm = layer_norm

    def layer_weights(self) -> torch.Tensor:
        return F.softmax(self.weights, dim=0)

    def forward(self, states: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        if self.layer_norm:
            states = F.layer_norm(states, states.shape[-1:])
        out = (self.layer_weights()[None, :, None, None] * states).sum(1)
        if lens is not None:
            out = out.masked_fill(lengths_to_padding_mask(lens, out.shape[1])[..., None], 0.0)
        return out
