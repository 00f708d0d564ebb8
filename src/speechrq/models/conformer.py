"""The Conformer speech encoder of BEST-RQ and Latent-RQ.

A model is a composition of small modules handed in by a factory, as in
torchaudio's wav2vec2 models: :func:`speech_encoder` builds
``SpeechEncoder(frontend=ConvSubsampling, encoder=ConformerEncoder)``.

Frame rates: log-Mel frames come every 10 ms; the front end's two stride-2
convolutions make one encoder frame per 4 input frames (40 ms). The input is cut
to a whole number of 4-frame groups, so encoder frame ``t`` is exactly input
frames ``4t .. 4t+3``: the masking grid and the quantizer's frame stacking rely on
that.

Hidden-state indexing follows the Latent-RQ paper: ``-1`` is the front end's
output, ``0 .. L-1`` are the Conformer blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..frames import HOP_SAMPLES, SAMPLE_RATE, lengths_to_padding_mask
from .dropout import Dropout, dropout

SUBSAMPLING = 4  # log-Mel frames per encoder frame
ENCODER_HOP = SUBSAMPLING * HOP_SAMPLES  # 640 samples: one encoder frame
ENCODER_FRAME_SECONDS = ENCODER_HOP / SAMPLE_RATE  # 0.04


def trim_to_frames(feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut ``feats [B, T_in, F]`` to whole encoder frames (``T_in // 4 * 4``) and clamp ``lengths`` to it.

    Encoder frame ``t`` is then exactly input frames ``4t .. 4t+3``, which the
    masking grid and the Mel quantizer's frame stacking rely on.
    """
    t = feats.shape[1] // SUBSAMPLING * SUBSAMPLING
    return feats[:, :t], lengths.clamp(max=t)


@dataclass(frozen=True)
class EncoderConfig:
    """Shape of a speech encoder. ``presets``: ``tiny``, ``small``, ``paper``."""

    input_dim: int = 80
    frontend_channels: int = 256
    dim: int = 512
    num_layers: int = 17
    num_heads: int = 8
    ffn_dim: int = 2048
    conv_kernel: int = 31
    dropout: float = 0.1


PRESETS: dict[str, EncoderConfig] = {
    # Latent-RQ's encoder (section 3): 17 Conformer layers, d=512, FFN 2048, 8 heads.
    "paper": EncoderConfig(frontend_channels=256, dim=512, num_layers=17, num_heads=8, ffn_dim=2048),
    "small": EncoderConfig(frontend_channels=64, dim=256, num_layers=8, num_heads=4, ffn_dim=1024, conv_kernel=15),
    "tiny": EncoderConfig(frontend_channels=32, dim=96, num_layers=4, num_heads=4, ffn_dim=256, conv_kernel=15, dropout=0.0),
}


class ConvSubsampling(nn.Module):
    """Two 3x3 stride-2 convolutions over (time, frequency): ``[B, 4T, F] -> [B, T, dim]``."""

    def __init__(self, input_dim: int, channels: int, dim: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.SiLU(),
        )
        freq = (input_dim + 1) // 2
        freq = (freq + 1) // 2
        self.proj = nn.Linear(channels * freq, dim)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``feats [B, T_in, F]``, ``lengths [B]`` -> ``[B, T_in // 4, dim]``, ``lengths // 4``."""
        feats, lengths = trim_to_frames(feats, lengths)
        t = feats.shape[1]
        # zero the padding, and each utterance's frames past its last whole 4-frame group,
        # so an utterance's output does not depend on what it is batched with
        whole = torch.div(lengths, SUBSAMPLING, rounding_mode="floor") * SUBSAMPLING
        feats = feats.masked_fill(lengths_to_padding_mask(whole, t)[..., None], 0.0)
        x = feats.unsqueeze(1)
        for conv in (self.conv[0], self.conv[2]):  # [B, 1, T_in, F] -> [B, C, T/4, F/4]
            x = F.silu(F.conv2d(x, _channels_last(conv.weight), conv.bias, conv.stride, conv.padding))
        x = self.proj(x.transpose(1, 2).flatten(2))
        return x, torch.div(lengths, SUBSAMPLING, rounding_mode="floor")


def _channels_last(weight: torch.Tensor) -> torch.Tensor:
    """A conv weight ``[O, I, kh, kw]`` in channels-last layout, so that the convolution runs channels-last.

    oneDNN's channels-last kernels take the front end's forward and backward in about half the time on a CPU (62
    against 118 ms at 6 x 14 s, fp32). With one input channel the layout is the same memory, so the view is free.
    The parameters themselves stay contiguous (what checkpoints and DDP's buckets expect).
    """
    o, i, kh, kw = weight.shape
    if i == 1:
        return weight.as_strided(weight.shape, (kh * kw, 1, kw, 1))
    return weight.contiguous(memory_format=torch.channels_last)


def _rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class RotarySelfAttention(nn.Module):
    """Multi-head self-attention with rotary positions, ``[B, T, dim]`` and a ``[B, T]`` padding mask (True: padding)
    -> ``[B, T, dim]``, through ``scaled_dot_product_attention``; in training on a CPU with dropout, its math path
    written out, so the attention weights' dropout takes :func:`speechrq.models.dropout.dropout`'s cheaper mask."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        if dim % num_heads or (dim // num_heads) % 2:
            raise ValueError(f"dim {dim} must split into {num_heads} heads of even size")
        self.num_heads, self.head_dim, self.dropout = num_heads, dim // num_heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        inv_freq = 1.0 / (10000 ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        angles = torch.arange(t, device=x.device, dtype=torch.float32)[:, None] * self.inv_freq[None, :]
        cos, sin = angles.cos().to(q.dtype), angles.sin().to(q.dtype)
        q, k = _rotary(q, cos, sin), _rotary(k, cos, sin)
        if self.training and self.dropout > 0 and x.device.type == "cpu":
            # SDPA's math path with the cheaper mask of models.dropout for the weights' dropout; the scale is applied to
            # q and the padding is the gemm's additive start (baddbmm): two fewer passes over the [B*H, T, T] scores
            h, d = self.num_heads, self.head_dim
            q, kt = (q * d ** -0.5).reshape(b * h, t, d), k.reshape(b * h, t, d).transpose(1, 2)
            if key_padding_mask is None:
                weights = torch.bmm(q, kt).softmax(-1)
            else:  # the dtype's lowest finite value, not -inf: a padded key's weight is still exactly 0, and an utterance
                # with every key padded gets finite weights (never NaN) for outputs the encoder zeroes as padding
                bias = torch.zeros(b, 1, 1, t, dtype=q.dtype, device=x.device).masked_fill(key_padding_mask[:, None, None, :],
                                                                                         torch.finfo(q.dtype).min)
                weights = torch.baddbmm(bias.expand(b, h, 1, t).reshape(b * h, 1, t), q, kt).softmax(-1)
            y = torch.bmm(dropout(weights, self.dropout), v.reshape(b * h, t, d)).view(b, h, t, d)
        else:
            mask = None if key_padding_mask is None else ~key_padding_mask[:, None, None, :]  # True = attend
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, t, -1))


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.SiLU(), Dropout(dropout), nn.Linear(hidden, dim), Dropout(dropout))


class ConvModule(nn.Module):
    """Pointwise conv + GLU, depthwise conv, LayerNorm, SiLU, pointwise conv.

    LayerNorm instead of the original BatchNorm: batch statistics would mix
    padding into valid frames and differ between single- and multi-GPU runs.
    """

    def __init__(self, dim: int, kernel: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = nn.Linear(dim, 2 * dim)
        self.depthwise = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.depth_norm = nn.LayerNorm(dim)
        self.pointwise_out = nn.Linear(dim, dim)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        y = F.glu(self.pointwise_in(self.norm(x)), dim=-1)
        if pad_mask is not None:
            y = y.masked_fill(pad_mask[..., None], 0.0)
        y = self.depthwise(y.transpose(1, 2)).transpose(1, 2)
        y = self.pointwise_out(F.silu(self.depth_norm(y)))
        return self.dropout(y)


class ConformerBlock(nn.Module):
    """Macaron feed-forward halves around self-attention and convolution, then LayerNorm."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, conv_kernel: int, dropout: float):
        super().__init__()
        self.ffn1 = FeedForward(dim, ffn_dim, dropout)
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = RotarySelfAttention(dim, num_heads, dropout)
        self.attn_dropout = Dropout(dropout)
        self.conv = ConvModule(dim, conv_kernel, dropout)
        self.ffn2 = FeedForward(dim, ffn_dim, dropout)
        self.final_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + 0.5 * self.ffn1(x)
        x = x + self.attn_dropout(self.attn(self.attn_norm(x), pad_mask))
        x = x + self.conv(x, pad_mask)
        x = x + 0.5 * self.ffn2(x)
        return self.final_norm(x)


class ConformerEncoder(nn.Module):
    def __init__(self, blocks: list[ConformerBlock]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, num_layers: int | None = None) -> list[torch.Tensor]:
        """``x [B, T, D]`` -> the outputs of the first ``num_layers`` blocks (all by default)."""
        pad_mask = lengths_to_padding_mask(lengths, x.shape[1])
        outs = []
        for block in self.blocks[: len(self.blocks) if num_layers is None else num_layers]:
            x = block(x, pad_mask)
            outs.append(x)
        return outs


class SpeechEncoder(nn.Module):
    """Front end + Conformer blocks: normalised log-Mel in, hidden states of every layer out."""

    def __init__(self, frontend: ConvSubsampling, encoder: ConformerEncoder, config: EncoderConfig):
        super().__init__()
        self.frontend, self.encoder, self.config = frontend, encoder, config

    @property
    def num_layers(self) -> int:
        return len(self.encoder.blocks)

    def extract_features(self, feats: torch.Tensor, lengths: torch.Tensor, num_layers: int | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Every hidden state, stopping after ``num_layers`` blocks.

        Args:
            feats: ``[B, T_in, F]`` normalised log-Mel (``T_in`` frames of 10 ms).
            lengths: ``[B]`` valid input frames.
            num_layers: run only the first ``num_layers`` blocks (``None``: all).
        Returns:
            ``([front end, block 0, ..., block num_layers-1], lengths)``, each state
            ``[B, T_in // 4, dim]``, and ``lengths [B]`` in encoder frames.
        """
        x, out_lens = self.frontend(feats, lengths)
        return [x] + self.encoder(x, out_lens, num_layers), out_lens

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T_in, F]`` -> last hidden state ``[B, T_in // 4, dim]`` and its lengths."""
        states, out_lens = self.extract_features(feats, lengths)
        return states[-1], out_lens


def speech_encoder(preset: str | EncoderConfig = "tiny", **overrides) -> SpeechEncoder:
    """Build a :class:`SpeechEncoder` from a preset name or config, with field overrides."""
    from dataclasses import replace

    from ..errors import SpeechrqError

    if isinstance(preset, str):
        if preset not in PRESETS:
            raise SpeechrqError(f"encoder preset {preset!r}: unknown (choose from {', '.join(PRESETS)})")
        preset = PRESETS[preset]
    cfg = replace(preset, **overrides)
    frontend = ConvSubsampling(cfg.input_dim, cfg.frontend_channels, cfg.dim)
    blocks = [ConformerBlock(cfg.dim, cfg.num_heads, cfg.ffn_dim, cfg.conv_kernel, cfg.dropout) for _ in range(cfg.num_layers)]
    return SpeechEncoder(frontend, ConformerEncoder(blocks), cfg)
