"""``speechrq units report``: how much of a layer each discretisation keeps, measured beside the RPQ paper's theory.

Quantizers are fit on a training sample and measured on held-out frames (a dev split's
every frame, with its phone alignments where the corpus has them):

- ``nmse``: reconstruction error ``||x - x_hat||^2 / ||x - mean||^2`` (each frame rebuilt
  from its centroids: :meth:`UnitQuantizer.decode`);
- codebook usage (share of the ``k`` codewords seen), entropy in bits and perplexity,
  averaged over streams; bits per second (``M log2 k`` per 40 ms frame) and the
  compression against float32 features;
- phone purity and phone-normalised mutual information (PNMI, HuBERT's) of each stream,
  averaged, so units that are *accurate* (low error) can be told from units that are
  *informative* about phones;
- for RPQ, the paper's theory (eqs. 13 and 17): ``eps_RPQ / eps_kms = 1/M + (1 - 1/M) rho``
  with ``rho = alpha / (2 - alpha)``. ``eps_kms`` is measured as the paper's "single
  k-means" at the same alpha (each sub-quantizer's own error on its own dimensions, mean
  over sub-quantizers) and ``eps_RPQ`` as the RPQ error on the covered dimensions. Beside
  it: the same formula with the *measured* correlation of two sub-quantizers' errors on
  a shared dimension for ``rho``, and with the number of sub-spaces that actually cover
  each dimension (about ``alpha M``) for ``M``: the paper averages M estimates of every
  dimension, but a dimension is estimated only by the sub-spaces that drew it.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..errors import SpeechrqError
from .quantizers import QuantizerSpec, UnitQuantizer

FRAMES_PER_SECOND = 25  # the 40 ms grid


def theory_ratio(m: float, rho: float) -> float:
    """Eq. 13: ``eps_RPQ / eps_kms = 1/M + (1 - 1/M) rho``."""
    return 1.0 / m + (1.0 - 1.0 / m) * rho


def jaccard_rho(alpha: float) -> float:
    """Eq. 17: the expected Jaccard overlap of two random subsets, ``alpha / (2 - alpha)``."""
    return alpha / (2.0 - alpha)


def usage(codes: np.ndarray, k: int) -> dict:
    """Per-stream codeword share used, entropy (bits) and perplexity, averaged over streams."""
    used, ent = [], []
    for s in range(codes.shape[1]):
        counts = np.bincount(codes[:, s].astype(np.int64), minlength=k).astype(np.float64)
        p = counts[counts > 0] / counts.sum()
        used.append(float((counts > 0).mean()))
        ent.append(float(-(p * np.log2(p)).sum()))
    return {"used": float(np.mean(used)), "entropy_bits": float(np.mean(ent)), "perplexity": float(np.mean(np.exp2(ent)))}


def phone_information(codes: np.ndarray, phones: np.ndarray) -> dict:
    """Mean over streams of phone purity and PNMI = I(phone; unit) / H(phone) on labelled frames."""
    purity, pnmi = [], []
    _, y = np.unique(phones, return_inverse=True)
    py = np.bincount(y) / len(y)
    h_y = float(-(py * np.log(py)).sum())
    for s in range(codes.shape[1]):
        u = codes[:, s].astype(np.int64)
        joint = np.zeros((int(u.max()) + 1, int(y.max()) + 1))
        np.add.at(joint, (u, y), 1.0)
        joint /= joint.sum()
        pu = joint.sum(1, keepdims=True)
        nz = joint > 0
        mi = float((joint[nz] * np.log(joint[nz] / (pu @ py[None, :])[nz])).sum())
        purity.append(float(joint.max(1).sum()))
        pnmi.append(mi / h_y if h_y > 0 else 0.0)
    return {"phone_purity": float(np.mean(purity)), "pnmi": float(np.mean(pnmi))}


def error_correlation(q: UnitQuantizer, x: np.ndarray, codes: np.ndarray, max_pairs: int = 200, seed: int = 0) -> float | None:
    """Mean correlation, over frames, of two sub-quantizers' errors on a dimension both cover (pairs sampled, seeded)."""
    rng = np.random.default_rng(seed)
    z = q.normalized(x)
    pairs = [(a, b) for a in range(q.num_streams) for b in range(a + 1, q.num_streams)]
    rng.shuffle(pairs)
    corrs = []
    for a, b in pairs[:max_pairs]:
        shared = np.intersect1d(q.subsets[a], q.subsets[b])
        if len(shared) == 0:
            continue
        ea = z[:, shared] - q.centroids[a][codes[:, a]][:, np.searchsorted(q.subsets[a], shared)]
        eb = z[:, shared] - q.centroids[b][codes[:, b]][:, np.searchsorted(q.subsets[b], shared)]
        for j in range(len(shared)):
            if ea[:, j].std() > 0 and eb[:, j].std() > 0:
                corrs.append(float(np.corrcoef(ea[:, j], eb[:, j])[0, 1]))
    return float(np.mean(corrs)) if corrs else None


def measure(q: UnitQuantizer, x: np.ndarray, phones: np.ndarray | None = None) -> dict:
    """Every number of a report row for a fitted quantizer on held-out frames ``x [N, D]`` (phones ``[N]``, '' = unlabelled)."""
    t0 = time.perf_counter()
    codes = q.encode(x)
    encode_s = time.perf_counter() - t0
    x_hat = q.decode(codes)
    mean = x.mean(0)
    row = {"nmse": float(((x - x_hat) ** 2).sum() / ((x - mean) ** 2).sum()), "encode_frames_per_s": len(x) / max(encode_s, 1e-9),
           "bits_per_second": q.bits_per_frame * FRAMES_PER_SECOND, "compression": q.dim * 32 / q.bits_per_frame,
           "streams": q.num_streams, "trained_points": min(q.trained_points)} | usage(codes, q.spec.k)
    if phones is not None:
        lab = phones != ""
        if lab.sum() > 0:
            row |= phone_information(codes[lab], phones[lab])
    if q.spec.kind == "rpq":
        z = q.normalized(x)
        cover = q.coverage()
        covered = cover > 0
        eps_rpq = float(((z - q.normalized(x_hat)) ** 2)[:, covered].mean())
        eps_single = float(np.mean([((z[:, s] - c[codes[:, i]]) ** 2).mean() for i, (c, s) in enumerate(zip(q.centroids, q.subsets))]))
        rho_meas = error_correlation(q, x, codes)
        n_j = cover[covered].astype(np.float64)
        alpha = len(q.subsets[0]) / q.dim  # the share each sub-space really takes (alpha x D is rounded to whole dimensions)
        row |= {"eps_rpq": eps_rpq, "eps_single": eps_single, "ratio_measured": eps_rpq / eps_single, "alpha_effective": alpha,
                "rho_jaccard": jaccard_rho(alpha), "rho_measured": rho_meas,
                "ratio_theory": theory_ratio(q.num_streams, jaccard_rho(alpha)),
                "ratio_theory_coverage": (float(np.mean([theory_ratio(n, rho_meas) for n in n_j])) if rho_meas is not None else None),
                "coverage_mean": float(n_j.mean()), "uncovered_dims": int((~covered).sum())}
    return row


def grid(kinds: list[str], ms: list[int], alphas: list[float]) -> list[tuple[str, int, float]]:
    """The (kind, M, alpha) points of a report."""
    points = []
    for kind in kinds:
        if kind == "kmeans":
            points.append(("kmeans", 1, 1.0))
        elif kind in ("pq", "rvq"):
            points += [(kind, m, 1.0) for m in ms]
        elif kind == "rpq":
            points += [("rpq", m, a) for m in ms for a in alphas]
        else:
            raise SpeechrqError(f"--kinds: {kind!r}: choose from kmeans, rvq, pq, rpq")
    return points


def fit_and_measure(train: np.ndarray, held_out: np.ndarray, phones: np.ndarray | None, k: int, point: tuple[str, int, float],
                    seed: int = 0, niter: int = 20, normalize: str = "none") -> dict:
    """Fit one ``(kind, M, alpha)`` point on ``train`` (every frame used: no faiss subsampling), measure it on ``held_out``."""
    kind, m, alpha = point
    if len(train) < k:
        raise SpeechrqError(f"units report: {len(train)} training frames for k = {k}; sample more or lower --k")
    spec = QuantizerSpec(kind=kind, k=k, num_subspaces=m, alpha=alpha, seed=seed, niter=niter, normalize=normalize,
                         max_points_per_centroid=max(256, math.ceil(len(train) / k)))
    t0 = time.perf_counter()
    q = UnitQuantizer.fit(train, spec)
    return {"kind": kind, "M": q.num_streams, "alpha": alpha if kind == "rpq" else None, "k": k,
            "fit_s": time.perf_counter() - t0} | measure(q, held_out, phones)


def format_report(rows: list[dict]) -> str:
    """Two markdown tables: every quantizer, then RPQ against the theory."""
    has_phones = any("pnmi" in r for r in rows)
    head = "| kind | M | alpha | NMSE | used | entropy bits | bits/s | compression |" + (" purity | PNMI |" if has_phones else "")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        a = f"{r['alpha']:g}" if r["alpha"] is not None else "-"
        line = (f"| {r['kind']} | {r['M']} | {a} | {r['nmse']:.3f} | {r['used']:.2f} | {r['entropy_bits']:.2f} | "
                f"{r['bits_per_second']:.0f} | {r['compression']:.0f}x |")
        if has_phones:
            line += f" {r.get('phone_purity', float('nan')):.3f} | {r.get('pnmi', float('nan')):.3f} |"
        lines.append(line)
    rpq = [r for r in rows if r["kind"] == "rpq"]
    if rpq:
        lines += ["", "RPQ against eqs. 13 and 17 (eps_RPQ / eps_kms; eps_kms = single k-means at the same alpha):", "",
                  "| M | alpha | measured | theory, rho = alpha/(2-alpha) | rho measured | theory, measured rho and coverage | "
                  "dims covered per sub-space (mean) |", "|---|---|---|---|---|---|---|"]
        for r in rpq:
            rm = f"{r['rho_measured']:.3f}" if r["rho_measured"] is not None else "-"
            tc = f"{r['ratio_theory_coverage']:.3f}" if r["ratio_theory_coverage"] is not None else "-"
            lines.append(f"| {r['M']} | {r['alpha']:g} | {r['ratio_measured']:.3f} | {r['ratio_theory']:.3f} | {rm} | {tc} | "
                         f"{r['coverage_mean']:.1f} |")
    return "\n".join(lines) + "\n"


def plot_report(rows: list[dict], path) -> None:
    """Top: NMSE against M per kind (RPQ one shade of its colour per α). Bottom (Figure 7's layout): per α, single
    k-means error as bars, RPQ as a line, theory dashed. Colours from :mod:`speechrq.palette`, the same on every figure;
    the two panels stacked so that the figure reads at a page's width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_path
    from ..palette import KMEANS, RPQ, color, shades

    names = {"kmeans": "k-means", "rvq": "RVQ", "pq": "PQ", "rpq": "RPQ"}
    with plt.rc_context({"font.size": 10}):
        fig, axes = plt.subplots(2, 1, figsize=(7.6, 7.6), layout="constrained")
        ax = axes[0]
        for kind in ("kmeans", "rvq", "pq"):
            pts = sorted((r["M"], r["nmse"]) for r in rows if r["kind"] == kind)
            if pts:
                ax.plot(*zip(*pts), marker="o", color=color(kind), label=names[kind], linewidth=2)
        alphas = sorted({r["alpha"] for r in rows if r["kind"] == "rpq"})
        for alpha, shade in zip(alphas, shades("rpq", len(alphas))):
            pts = sorted((r["M"], r["nmse"]) for r in rows if r["kind"] == "rpq" and r["alpha"] == alpha)
            ax.plot(*zip(*pts), marker="s", linestyle="--", color=shade, label=f"RPQ α = {alpha:g}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("M (streams)")
        ax.set_ylabel("reconstruction NMSE ↓")
        ax.set_title("Reconstruction error on held-out frames", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        ax = axes[1]
        rpq = [r for r in rows if r["kind"] == "rpq"]
        if rpq:
            m_top = max(r["M"] for r in rpq)
            sel = sorted((r for r in rpq if r["M"] == m_top), key=lambda r: r["alpha"])
            xs = np.arange(len(sel))
            ax.bar(xs, [r["eps_single"] for r in sel], color=KMEANS, alpha=0.45, label="single k-means (ε_kms)")
            ax.plot(xs, [r["eps_rpq"] for r in sel], marker="o", color=RPQ, linewidth=2, label=f"RPQ, M = {m_top} (ε_RPQ)")
            ax.plot(xs, [r["eps_single"] * r["ratio_theory"] for r in sel], linestyle="--", color="#444444", label="eq. 13 with eq. 17")
            if all(r["ratio_theory_coverage"] is not None for r in sel):
                ax.plot(xs, [r["eps_single"] * r["ratio_theory_coverage"] for r in sel], linestyle=":", color="#000000",
                        label="eq. 13, measured ρ and coverage")
            ax.set_xticks(xs, [f"{r['alpha']:g}" for r in sel])
            ax.set_xlabel("α (share of dimensions per sub-space)")
            ax.set_ylabel("MSE per covered dimension ↓")
            ax.set_title(f"RPQ at M = {m_top} against the paper's theory", fontsize=10)
            ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
            ax.grid(alpha=0.3)
        else:
            ax.axis("off")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
    plt.close(fig)


def frame_phones(cut, num_frames: int, frame_shift: float = 0.04) -> np.ndarray:
    """``[num_frames]`` phone label per frame of ``frame_shift`` seconds ('' where unaligned, silence or closure), as PR
    folds them."""
    from ..evaluate.target_quality import phone_spans

    labels = np.full(num_frames, "", dtype=object)
    for phone, s, e in phone_spans(cut, num_frames, frame_shift):
        labels[s:e] = phone
    return labels
