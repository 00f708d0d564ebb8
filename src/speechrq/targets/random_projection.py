"""BEST-RQ's random-projection quantizer (Latent-RQ eq. 1).

Each of N codebooks has its own fixed projection ``A_n`` (Xavier-uniform,
``[input_dim, D]``) and its own fixed random codebook ``C_n`` (``[V, D]``).
Projected vectors and codewords are l2-normalised, so the nearest codeword by
Euclidean distance is the one of largest dot product, and all codebooks are
searched by one batched matmul ``[N, frames, D] x [N, D, V]``. Nothing of shape
``B x V x T x D`` is ever built; the ``[N, frames, V]`` scores are computed in
chunks of frames so their size stays bounded whatever the batch.

Projections, codebooks and the seed that made them are buffers: they are saved
in every checkpoint, identical on every rank (made from the seed alone, on the
CPU), never trained, and never seen by the encoder's input. Targets are always
computed in float32, even inside a bf16 autocast region (the training step's):
``bmm`` is on autocast's low-precision list, and in bf16 near-ties flip, so
targets would no longer be the nearest codeword.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def stack_frames(feats: torch.Tensor, k: int) -> torch.Tensor:
    """``[B, T, F] -> [B, T // k, k * F]``: k consecutive frames side by side (trailing frames dropped)."""
    b, t, f = feats.shape
    t = t // k * k
    return feats[:, :t].reshape(b, t // k, k * f)


class RandomProjectionQuantizer(nn.Module):
    """``x [B, T, input_dim] -> targets [B, T, N]`` (int64 codeword indices)."""

    def __init__(self, input_dim: int, num_codebooks: int = 18, codebook_size: int = 4096, codebook_dim: int = 16, seed: int = 0,
                 max_scores: int | None = None):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        bound = (6.0 / (input_dim + codebook_dim)) ** 0.5  # Xavier uniform
        proj = (torch.rand(num_codebooks, input_dim, codebook_dim, generator=g) * 2 - 1) * bound
        codebooks = F.normalize(torch.randn(num_codebooks, codebook_size, codebook_dim, generator=g), dim=-1)
        self.register_buffer("projection", proj)
        self.register_buffer("codebooks", codebooks)
        self.register_buffer("seed", torch.tensor(seed, dtype=torch.int64))
        # elements of one [N, chunk, V] score block: 16 MB blocks stay in a CPU's cache
        # (2x faster than 64 MB ones, measured); a GPU prefers fewer, larger launches
        self.max_scores = max_scores

    @property
    def num_codebooks(self) -> int:
        return self.codebooks.shape[0]

    @property
    def codebook_size(self) -> int:
        return self.codebooks.shape[1]

    @torch.no_grad()
    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., input_dim] -> [N, ..., D]``: the l2-normalised random projections the codewords are matched against."""
        with torch.autocast(x.device.type, enabled=False):
            flat = x.reshape(-1, x.shape[-1]).to(self.projection.dtype)
            z = F.normalize(torch.einsum("mf,nfd->nmd", flat, self.projection), dim=-1)
        return z.reshape(self.num_codebooks, *x.shape[:-1], z.shape[-1])

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # fp32 whatever the caller's precision
            return self._nearest(x)

    def _nearest(self, x: torch.Tensor) -> torch.Tensor:
        b, t, f = x.shape
        n, v, _ = self.codebooks.shape
        z = self.project(x).reshape(n, b * t, -1)  # [N, BT, D]
        max_scores = self.max_scores or (2**26 if x.is_cuda else 2**22)
        chunk = max(1, max_scores // (n * v))
        out = torch.empty(n, b * t, dtype=torch.long, device=x.device)
        cb_t = self.codebooks.transpose(1, 2)  # [N, D, V]
        for s in range(0, b * t, chunk):
            out[:, s : s + chunk] = first_argmax(torch.bmm(z[:, s : s + chunk], cb_t))
        return out.T.reshape(b, t, n)


def first_argmax(scores: torch.Tensor) -> torch.Tensor:
    """``scores [..., V] -> [...]``: exactly ``scores.argmax(-1)`` (the first maximum on ties, the first NaN if any).

    In two levels: the maximum of each group of ``G`` consecutive scores (``amax``, vectorised), the first group
    holding the largest, then the first maximum inside that group. On a CPU ``argmax`` over 4096 codewords is not
    vectorised: at 8 x 4096 codewords it was 13% of a tiny-preset BEST-RQ step, and this is 6x faster
    (``benchmarks/bench_peer.py``). Other devices, and ``V`` without a divisor ``G`` in 16..128, take ``argmax``.
    """
    v = scores.shape[-1]
    group = next((g for g in (64, 128, 32, 16) if v % g == 0 and v >= 4 * g), None) if scores.device.type == "cpu" else None
    if group is None:
        return scores.argmax(-1)
    lead = scores.shape[:-1]
    grouped = scores.reshape(*lead, v // group, group)
    best = grouped.amax(-1).argmax(-1)  # [...]: the first group that holds the maximum
    inside = grouped.gather(-2, best[..., None, None].expand(*lead, 1, group)).squeeze(-2).argmax(-1)
    return best * group + inside
