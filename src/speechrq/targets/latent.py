"""Where targets come from: Mel frames (BEST-RQ) or a frozen target encoder's layers (Latent-RQ).

:class:`MelTargets` quantizes ``k`` stacked normalised log-Mel frames (stage 0).

:class:`LatentTargets` (Latent-RQ eq. 3) runs a frozen target encoder θ up to
its deepest target layer and quantizes each of ``K`` chosen hidden states with
its own ``N / K`` codebooks, each with a layer-specific projection from that
layer's width. Layer indices follow the paper: ``-1`` is the front end's
output, ``0 .. L-1`` the Conformer blocks. Same architecture, same frame rate:
nothing is stacked.

Each layer's features are **standardised per dimension with global statistics**
(mean and std over the frames of a fixed sample of training utterances, computed
by θ whenever θ changes, and kept as buffers so they are saved and identical on
every rank). Why: a random projection weighs every input dimension by its scale,
and hidden-state dimensions differ in scale by orders of magnitude, so without it
a few loud dimensions would decide every codeword; per-utterance normalisation
would remove the speaker information the targets should carry; and the Mel
targets are normalised the same way, so both stages treat their input alike.

:class:`StagedTargets` holds both and a ``stage`` buffer: stage 0 uses Mel,
later stages use θ. All projections and codebooks are made from
``quantizer.seed`` alone when the model is built, so a refresh never touches them.
"""

from __future__ import annotations

import torch
from torch import nn

from ..features import FeatureNormalizer, Moments
from ..frames import lengths_to_padding_mask
from ..models.conformer import SUBSAMPLING, SpeechEncoder
from .random_projection import RandomProjectionQuantizer, stack_frames

LAYER_SEED_STRIDE = 1000  # layer k's quantizer seed: seed * 1000 + 1 + k-th position
# Default target layers per encoder preset: the paper's 5..10 of 17 blocks, scaled to the depth.
DEFAULT_TARGET_LAYERS = {"paper": [5, 6, 7, 8, 9, 10], "small": [2, 3, 4], "tiny": [1, 2]}


def default_target_layers(preset: str) -> list[int]:
    return list(DEFAULT_TARGET_LAYERS[preset])


def configured_layers(preset: str, layers: list[int] | str | None, auto_count: int | None = None) -> list[int]:
    """A config's target layers: ``layers`` as given, the preset's default when None; with ``"auto"``, the
    preset's deepest ``auto_count`` blocks (default: as many as the default layers) as placeholders until a pick."""
    if layers is None:
        return default_target_layers(preset)
    if layers == "auto":
        from ..models.conformer import PRESETS

        count, depth = auto_count or len(DEFAULT_TARGET_LAYERS[preset]), PRESETS[preset].num_layers
        return list(range(depth - count, depth))
    return list(layers)


def stage_layers(history: list) -> list[int] | None:
    """The target layers of a run's current stage, as its history records them (None before Latent-RQ)."""
    for entry in reversed(history or []):
        if "layers" in entry:
            return list(entry["layers"])
        if entry.get("stage", 0) == 0:
            return None
    return None


class MelTargets(nn.Module):
    """Stage-0 (BEST-RQ) targets: ``k`` normalised log-Mel frames stacked, then quantized.

    ``feats [B, T_in, F]`` -> ``[B, T_in // k, N]``; with ``k = 4`` one target per
    encoder frame, from exactly the input frames that encoder frame covers.
    """

    def __init__(self, quantizer: RandomProjectionQuantizer, stack: int = SUBSAMPLING):
        super().__init__()
        self.quantizer, self.stack = quantizer, stack

    @torch.no_grad()
    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.quantizer(stack_frames(feats.float(), self.stack))


def layer_quantizers(dim: int, num_layers: int, per_layer: int, codebook_size: int, codebook_dim: int, seed: int) -> nn.ModuleList:
    """The target layers' quantizers, made from ``seed`` alone (so any tool can rebuild them exactly)."""
    return nn.ModuleList(
        RandomProjectionQuantizer(dim, per_layer, codebook_size, codebook_dim, seed=seed * LAYER_SEED_STRIDE + 1 + i)
        for i in range(num_layers))


class LatentTargets(nn.Module):
    """θ's hidden states at ``layers`` -> ``[B, T, N]`` codeword indices (layer by layer along N)."""

    def __init__(self, encoder: SpeechEncoder, layers: list[int], num_codebooks: int, codebook_size: int, codebook_dim: int, seed: int,
                 input_normalizer: FeatureNormalizer | None = None):
        super().__init__()
        if num_codebooks % len(layers):
            raise ValueError(f"{num_codebooks} codebooks do not split evenly over {len(layers)} target layers")
        self.encoder = encoder  # a SpeechEncoder, or a HuggingFaceEncoder (reads audio)
        # θ from another run reads log-Mel normalised with its own statistics, not this corpus's
        self.input_normalizer = input_normalizer
        self.layers = list(layers)
        per_layer = num_codebooks // len(layers)
        dim = encoder.dim if getattr(encoder, "needs_audio", False) else encoder.config.dim
        self.normalizers = nn.ModuleList(FeatureNormalizer(dim) for _ in layers)
        self.quantizers = layer_quantizers(dim, len(layers), per_layer, codebook_size, codebook_dim, seed)
        self.freeze()

    def freeze(self) -> None:
        self.encoder.eval()
        for p in self.encoder.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # θ is frozen: never dropout
        return self

    def identity(self) -> str:
        """A hash of everything the targets depend on: θ's weights, layer statistics, layers, projections, codebooks."""
        import hashlib

        h = hashlib.sha256(repr(self.layers).encode())
        for name, t in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:16]

    def set_layers(self, layers: list[int]) -> None:
        """Take other target layers (``targets.layers: auto`` at a refresh): as many as before, each keeping
        the quantizer of its position; their statistics must be refit afterwards."""
        if len(layers) != len(self.layers):
            raise ValueError(f"{len(layers)} target layers given; this model quantizes {len(self.layers)}")
        self.layers = [int(k) for k in layers]

    def reset_normalizers(self) -> None:
        """Identity statistics (mean 0, std 1): θ's states projected as they are (``targets.standardize: false``)."""
        for norm in self.normalizers:
            norm.mean.zero_()
            norm.std.fill_(1.0)

    @property
    def depth(self) -> int:
        """Blocks θ must run: up to the deepest target layer (early exit)."""
        return max(self.layers) + 1

    def hidden_states(self, feats: torch.Tensor, lengths: torch.Tensor, audio: torch.Tensor | None = None,
                      audio_lens: torch.Tensor | None = None, raw: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The target layers' states ``[B, T, dim]`` each (not yet normalised), and frame lengths.

        ``feats [B, T_in, 80]`` log-Mel normalised by the student's statistics and
        ``lengths``; ``raw``, the same log-Mel before normalisation, for a θ with its
        own input normaliser; ``audio [B, S]`` and ``audio_lens`` for a target
        encoder that reads waveforms.
        """
        if self.input_normalizer is not None:
            if raw is None:
                raise ValueError("this target encoder normalises log-Mel with its own statistics: pass the raw features")
            feats = self.input_normalizer(raw, lengths)
        if getattr(self.encoder, "needs_audio", False):
            if audio is None:
                raise ValueError("this target encoder reads the waveform: pass audio and audio_lens")
            out_lens = torch.div(lengths, SUBSAMPLING, rounding_mode="floor")
            states = self.encoder.hidden_states(audio, audio_lens, feats.shape[1] // SUBSAMPLING)
        else:
            states, out_lens = self.encoder.extract_features(feats, lengths, num_layers=self.depth)
        return [states[k + 1] for k in self.layers], out_lens

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, audio: torch.Tensor | None = None,
                audio_lens: torch.Tensor | None = None, raw: torch.Tensor | None = None) -> torch.Tensor:
        with torch.inference_mode():
            states, out_lens = self.hidden_states(feats, lengths, audio, audio_lens, raw)
            targets = torch.cat([q(norm(h.float(), out_lens)) for h, norm, q in zip(states, self.normalizers, self.quantizers)], dim=-1)
        return targets.clone()  # a normal tensor: inference tensors cannot be saved for backward

    @torch.no_grad()
    def fit_normalizers(self, batches) -> int:
        """Set every layer's mean/std from ``batches`` of ``(feats, lengths[, audio, audio_lens, raw])``; returns frames used."""
        moments = [Moments() for _ in self.layers]
        for batch in batches:
            states, out_lens = self.hidden_states(*batch)
            valid = ~lengths_to_padding_mask(out_lens, states[0].shape[1])
            for m, h in zip(moments, states):
                m.add(h[valid])
        if not moments[0].count:
            raise ValueError("no frames to compute target-layer statistics from")
        for norm, m in zip(self.normalizers, moments):
            mean, std = m.mean_std()
            norm.mean.copy_(mean)
            norm.std.copy_(std)
        return moments[0].count


class StagedTargets(nn.Module):
    """Mel targets in stage 0, θ's latent targets afterwards; ``stage`` is a saved buffer."""

    def __init__(self, mel: MelTargets, latent: LatentTargets | None = None):
        super().__init__()
        self.mel, self.latent = mel, latent
        self.register_buffer("stage", torch.tensor(0, dtype=torch.int64))

    @property
    def uses_latent(self) -> bool:
        return self.latent is not None and int(self.stage) > 0

    def identity(self) -> str:
        """What the current targets are made by (keys the target cache): ``mel``, or θ's identity."""
        return self.latent.identity() if self.uses_latent else "mel"

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, audio: torch.Tensor | None = None,
                audio_lens: torch.Tensor | None = None, raw: torch.Tensor | None = None) -> torch.Tensor:
        return self.latent(feats, lengths, audio, audio_lens, raw) if self.uses_latent else self.mel(feats, lengths)
