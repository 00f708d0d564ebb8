"""Masked prediction of N codebooks' targets (Latent-RQ eq. 2), and the codebook-usage meter.

The N softmax heads are one ``Linear(dim, N * V)`` applied to the masked
frames only, so unmasked frames cost nothing and no ``[B, T, N, V]`` tensor is
built. The loss is the cross-entropy over masked frames, averaged over frames
and codebooks.

Codebook collapse must be visible: :class:`CodebookUsage` counts how often each
codeword is a target, over a window of steps (and over ranks), and reports per
codebook the share of codewords used and the entropy of their distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


# Widths up to this take the product and the bias separately on a CPU (the tiny and small presets). There the
# product is one block of the inner dimension, so adding the bias after it rounds as addmm does; wider products
# are split into blocks (MKL at 448 on an AVX-512 Xeon), and adding the bias before or after them rounds differently.
BIAS_AFTER_MAX_DIM = 256


class PredictionHeads(nn.Module):
    """``[M, dim] -> [M, N, V]`` logits: one linear softmax head per codebook."""

    def __init__(self, dim: int, num_codebooks: int, codebook_size: int):
        super().__init__()
        self.num_codebooks, self.codebook_size = num_codebooks, codebook_size
        self.proj = nn.Linear(dim, num_codebooks * codebook_size)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Fresh heads (Latent-RQ re-initialises them at each target refresh)."""
        bound = 1.0 / math.sqrt(self.proj.in_features)  # nn.Linear's default init
        with torch.no_grad():
            for p in (self.proj.weight, self.proj.bias):
                p.copy_((torch.rand(p.shape, generator=generator) * 2 - 1) * bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and not torch.is_autocast_enabled("cpu") and self.proj.in_features <= BIAS_AFTER_MAX_DIM:
            # the bias added in place after the product: bitwise what nn.Linear's addmm gives, without its copy of
            # the bias into every row of the [M, N * V] output first (1-2% of a tiny-preset step at 8 x 4096)
            logits = torch.mm(x, self.proj.weight.t()).add_(self.proj.bias)
        else:
            logits = self.proj(x)
        return logits.view(x.shape[0], self.num_codebooks, self.codebook_size)


@dataclass
class PredictionResult:
    """One micro-batch's objective. ``correct [N]`` counts masked frames predicted right per codebook."""

    loss: torch.Tensor
    correct: torch.Tensor
    num_masked: int


def masked_prediction_loss(logits: torch.Tensor, targets: torch.Tensor) -> PredictionResult:
    """``logits [M, N, V]``, ``targets [M, N]`` -> mean cross-entropy over frames and codebooks.

    Computed in float32 whatever the autocast dtype of the logits.
    """
    m, n, v = logits.shape
    if m == 0:  # nothing masked: a zero loss that still touches the graph
        return PredictionResult(logits.sum() * 0.0, torch.zeros(n, dtype=torch.long, device=logits.device), 0)
    loss, hit = _MaskedCrossEntropy.apply(logits.reshape(m * n, v), targets.reshape(m * n))
    return PredictionResult(loss, hit.view(m, n).sum(0), m)


class _MaskedCrossEntropy(torch.autograd.Function):
    """``F.cross_entropy`` (mean) of ``logits [R, V]`` against ``targets [R]``, and ``hit [R]``: the target scored highest.

    The same loss and gradient as ``F.cross_entropy`` in fewer passes over the ``[R, V]`` logits, which at
    8 x 4096 heads are the largest tensor of a tiny-preset step: the backward turns the saved log-probabilities into
    ``softmax - onehot`` in place, where autograd's composition fills a zero ``[R, V]`` gradient, scatters into it and
    runs log-softmax's own backward over it. ``hit`` compares the target's log-probability with the row's largest one
    (an exact tie counts as a hit), one vectorised max instead of an arg-max.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor):
        logp = torch.log_softmax(logits.float(), dim=-1)  # float32 whatever the autocast dtype
        picked = logp.gather(1, targets[:, None])[:, 0]
        hit = picked >= logp.amax(-1)
        ctx.save_for_backward(logp, targets)
        ctx.in_dtype = logits.dtype
        ctx.mark_non_differentiable(hit)
        return -picked.mean(), hit

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss: torch.Tensor, _grad_hit):
        logp, targets = ctx.saved_tensors
        grad = logp.exp_()  # softmax, in place of the saved log-probabilities (used once)
        grad[torch.arange(len(targets), device=grad.device), targets] -= 1.0
        grad.mul_(grad_loss / len(targets))
        return grad.to(ctx.in_dtype), None


class CodebookUsage:
    """Running histogram of target codewords, ``[N, V]`` counts."""

    def __init__(self, num_codebooks: int, codebook_size: int, device: torch.device | str = "cpu"):
        self.counts = torch.zeros(num_codebooks, codebook_size, dtype=torch.long, device=device)

    def update(self, targets: torch.Tensor) -> None:
        """``targets [..., N]`` (valid frames only)."""
        n, v = self.counts.shape
        flat = (targets.reshape(-1, n) + torch.arange(n, device=targets.device) * v).reshape(-1)
        # integer counts do not depend on summation order, so CUDA's bincount is safe
        # even where a run asked for deterministic algorithms
        strict = torch.are_deterministic_algorithms_enabled()
        torch.use_deterministic_algorithms(False)
        try:
            self.counts.view(-1).add_(torch.bincount(flat, minlength=n * v))
        finally:
            torch.use_deterministic_algorithms(strict)

    def reset(self) -> None:
        self.counts.zero_()

    def summary(self) -> dict[str, list[float]]:
        """Per codebook: ``used`` share of codewords seen, ``entropy_bits``, ``perplexity``."""
        counts = self.counts.double()
        total = counts.sum(1, keepdim=True).clamp_min(1)
        p = counts / total
        entropy = -(p * torch.where(p > 0, p.log2(), torch.zeros_like(p))).sum(1)
        return {
            "used": (counts > 0).double().mean(1).tolist(),
            "entropy_bits": entropy.tolist(),
            "perplexity": entropy.exp2().tolist(),
        }
