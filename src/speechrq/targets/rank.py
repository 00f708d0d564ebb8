"""Ranking target sources without labels, and adaptive target-layer selection (``targets.layers: auto``).

Latent-RQ names choosing θ's target layers adaptively as future work (section 5);
its premise is that the chosen layers give better targets than Mel. Which layers
do depends on θ, so speechrq measures it, with the **same number of codebooks for
every source** (the fair comparison: Mel, the front end and every block each get
``N`` codebooks from one seed, so a source that equals Mel scores exactly as Mel).

The label-free measure, **perturbation agreement**: each source's targets are
computed from the clean normalised log-Mel and from the same features plus
Gaussian noise (``sigma`` in units of the normalised features, seeded), and
agreement is Cohen's κ of the two codeword sequences, averaged over codebooks:

    κ = (p_o - p_e) / (1 - p_e),  p_o = P(a = b),  p_e = Σ_c P(a = c) P(b = c)

A source whose targets carry content that survives a small perturbation scores
high; targets that do not depend on the input (noise) score 0, and so do targets
that never change (p_e = 1). It needs no alignments, so it can run on an
unlabelled pre-training corpus at every refresh. How well it agrees with the
labelled measures (phone and speaker separability) is reported by
``speechrq targets rank`` (:func:`speechrq.evaluate.target_quality.rank_sources`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from ..features import Moments
from ..frames import lengths_to_padding_mask
from ..models.conformer import SUBSAMPLING
from .random_projection import RandomProjectionQuantizer, stack_frames

RANK_SEED = 4242  # the ranking's projections, codebooks and perturbation: one seed for every source
DEFAULT_SIGMA = 0.5  # perturbation std, in units of the normalised log-Mel (per-bin std 1)
MEL = "Mel"

# a source: (feats [B, T_in, 80] normalised, lengths [B]) -> (states [B, T, D], frame lengths [B])
Source = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def mel_source(feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 0's view: 4 stacked normalised log-Mel frames per encoder frame, ``[B, T_in // 4, 320]``."""
    return stack_frames(feats, SUBSAMPLING), torch.div(lengths, SUBSAMPLING, rounding_mode="floor")


def encoder_sources(encoder, layers: Iterable[int]) -> dict[str, Source]:
    """One source per layer (paper indexing: ``-1`` front end, ``0 .. L-1`` blocks) of a speechrq encoder.

    The encoder runs once per input for all layers: the last input is held (a strong reference, so its
    identity cannot be reused by another tensor) with its states.
    """
    layers = list(layers)
    depth = max(layers) + 1
    memo: dict = {}

    def states(feats, lengths):
        if memo.get("feats") is not feats or memo.get("lengths") is not lengths:
            with torch.inference_mode():
                memo.update(out=encoder.extract_features(feats, lengths, num_layers=depth), feats=feats, lengths=lengths)
        return memo["out"]

    def one(k):
        def source(feats, lengths):
            hidden, out_lens = states(feats, lengths)
            return hidden[k + 1], out_lens
        return source

    return {f"layer {k}": one(k) for k in layers}


def kappa(a: torch.Tensor, b: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """Cohen's κ per codebook of two codeword sequences ``a, b [frames, N]`` -> ``[N]`` (0 when p_e = 1)."""
    n = a.shape[1]
    offs = torch.arange(n, device=a.device) * codebook_size
    pa = torch.bincount((a + offs).reshape(-1), minlength=n * codebook_size).reshape(n, -1).double() / a.shape[0]
    pb = torch.bincount((b + offs).reshape(-1), minlength=n * codebook_size).reshape(n, -1).double() / b.shape[0]
    po = (a == b).double().mean(0)
    pe = (pa * pb).sum(1)
    return torch.where(pe < 1, (po - pe) / (1 - pe).clamp_min(1e-12), torch.zeros_like(pe))


@torch.no_grad()
def perturbation_agreement(sources: dict[str, Source], batches, num_codebooks: int, codebook_size: int, codebook_dim: int,
                           sigma: float = DEFAULT_SIGMA, seed: int = RANK_SEED, clean_states: dict | None = None) -> dict[str, float]:
    """``{source: κ}`` (mean over ``num_codebooks``) on ``batches`` of ``(feats, lengths, ...)``.

    Every source is standardised per dimension with its clean frames' statistics (as
    :class:`~speechrq.targets.latent.LatentTargets` does) and quantized by ``N`` codebooks
    made from ``seed``. The noise is drawn from ``seed`` too, batch by batch, so the
    result is a function of the sources and the batches alone. ``clean_states``, when given,
    receives each source's ``[(states, frame lengths), ...]`` of the clean batches, in order (so
    a caller scoring them otherwise need not run the sources again). Raises ``ValueError``
    when the batches hold no frame.
    """
    gen = torch.Generator().manual_seed(seed)
    clean: dict[str, list] = {name: [] for name in sources}
    noisy: dict[str, list] = {name: [] for name in sources}
    for batch in batches:
        feats, lengths = batch[0], batch[1]
        noise = torch.randn(feats.shape, generator=gen).to(feats.device) * sigma
        pad = lengths_to_padding_mask(lengths, feats.shape[1])[..., None]
        perturbed = (feats + noise).masked_fill(pad, 0.0)
        for view, x in ((clean, feats), (noisy, perturbed)):
            for name, source in sources.items():  # sources of one encoder share its pass over x
                h, out_lens = source(x, lengths)
                if clean_states is not None and view is clean:
                    clean_states.setdefault(name, []).append((h, out_lens))
                valid = ~lengths_to_padding_mask(out_lens, h.shape[1])
                view[name].append(h[valid].float().cpu())
    scores = {}
    for name in sources:
        a, b = torch.cat(clean[name]), torch.cat(noisy[name])
        if not len(a):
            raise ValueError("no frames to rank target sources on")
        m = Moments()
        m.add(a)
        mean, std = (t.float() for t in m.mean_std())
        q = RandomProjectionQuantizer(a.shape[1], num_codebooks, codebook_size, codebook_dim, seed=seed)
        ca, cb = q((a - mean)[None] / std), q((b - mean)[None] / std)
        scores[name] = float(kappa(ca[0], cb[0], codebook_size).mean())
    return scores


def select_layers(scores: dict[int, float], count: int) -> list[int]:
    """The ``count`` best-scoring layers, ties to the shallower, returned in increasing order (deterministic)."""
    if count > len(scores):
        raise ValueError(f"cannot pick {count} target layers from {len(scores)} candidates")
    best = sorted(scores, key=lambda k: (-round(scores[k], 9), k))[:count]
    return sorted(best)
