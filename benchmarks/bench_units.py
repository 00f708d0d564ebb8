"""Discrete units: k-means time and inertia against fairseq's/ESPnet's MiniBatchKMeans, and fitting memory against corpus size.

``kmeans``: on the same features in one process, ``speechrq``'s k-means (faiss, what
``units fit`` runs, every point used) against scikit-learn's ``MiniBatchKMeans``
configured as fairseq's ``learn_kmeans.py`` and ESPnet's copy of it configure it
(k-means++ init, ``n_init=20``, ``batch_size=10000``, ``max_iter=100``,
``max_no_improvement=100``, ``tol=0``, ``reassignment_ratio=0``). Inertia is the
mean squared distance to the nearest centroid over all points, computed the same
way for both. Goal (issue 14): at most half sklearn's time at equal or lower inertia.
Features: a seeded Gaussian mixture of low effective rank (as SSL layers are) of
``--n x --dim``, or ``--features`` (an ``.npy`` or a ``units fit`` sample directory).
Encoding throughput (frames/s of nearest-centroid search) is printed beside it.

``memory``: ``speechrq units fit`` with the same sample size on two synthesized
corpora, one ``--scale`` times the other's hours, each in a fresh process; prints the
peak RSS of each and their ratio (goal: about 1), and what loading every frame's
feature (fairseq's way) would take instead.

    python benchmarks/bench_units.py kmeans [--n 200000 --dim 768 --k 2000] [--threads N]
    python benchmarks/bench_units.py memory [--hours 0.1 --scale 10 --frames 20000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def mixture(n: int, dim: int, centers: int, rank: int, seed: int = 0) -> np.ndarray:
    """``[n, dim]`` float32: ``centers`` Gaussian clusters in a ``rank``-dimensional subspace, plus isotropic noise."""
    g = np.random.default_rng(seed)
    basis = g.normal(size=(rank, dim)) / np.sqrt(rank)
    mu = g.normal(size=(centers, rank)) * 2.0
    z = mu[g.integers(0, centers, n)] + g.normal(size=(n, rank))
    return (z @ basis + 0.3 * g.normal(size=(n, dim))).astype(np.float32)


def inertia(x: np.ndarray, centroids: np.ndarray) -> float:
    import faiss

    index = faiss.IndexFlatL2(x.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    d, _ = index.search(x, 1)
    return float(d.mean())


def bench_kmeans(args) -> dict:
    import faiss
    from sklearn.cluster import MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    from speechrq.units import QuantizerSpec, UnitQuantizer

    if args.features:
        from speechrq.units.sample import load_sample

        p = Path(args.features)
        x = load_sample(p) if p.is_dir() else np.load(p).astype(np.float32)
        x = x[: args.n]
    else:
        x = mixture(args.n, args.dim, centers=4 * args.k, rank=min(args.dim, 64))
    faiss.omp_set_num_threads(args.threads)
    spec = QuantizerSpec(k=args.k, seed=0, niter=args.niter, max_points_per_centroid=max(256, -(-len(x) // args.k)))
    t0 = time.perf_counter()
    q = UnitQuantizer.fit(x, spec)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    q.encode(x)
    encode_fps = len(x) / (time.perf_counter() - t0)
    with threadpool_limits(args.threads):
        km = MiniBatchKMeans(n_clusters=args.k, init="k-means++", max_iter=100, batch_size=10000, verbose=0, compute_labels=False,
                             tol=0.0, max_no_improvement=100, init_size=None, n_init=20, reassignment_ratio=0.0, random_state=0)
        t0 = time.perf_counter()
        km.fit(x)
        t_sk = time.perf_counter() - t0
    i_ours, i_sk = inertia(x, q.centroids[0]), inertia(x, km.cluster_centers_.astype(np.float32))
    return {"points": len(x), "dim": x.shape[1], "k": args.k, "threads": args.threads, "niter": args.niter,
            "speechrq_s": t_ours, "sklearn_s": t_sk, "time_ratio": t_ours / t_sk,
            "speechrq_inertia": i_ours, "sklearn_inertia": i_sk, "inertia_ratio": i_ours / i_sk, "encode_frames_per_s": encode_fps}


CHILD = """
import resource, sys, json
from speechrq.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def fit_peak_rss(corpus: Path, out: Path, frames: int, k: int) -> float:
    """Peak RSS (MB) of one ``speechrq units fit`` process (the reference's layer 2, or an untrained tiny encoder)."""
    ckpt = Path(__file__).resolve().parents[1] / "assets/reference/tiny_bestrq/checkpoints/step_00004000"
    r = subprocess.run([sys.executable, "-c", CHILD, "units", "fit", "--encoder", str(ckpt), "--layer", "2", "--corpus", str(corpus),
                        "--frames", str(frames), "--k", str(k), "--out", str(out), "--quiet"], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def bench_memory(args) -> dict:
    from speechrq.data.corpus import LazyCuts
    from speechrq.data.synth import SynthConfig, synthesize_corpus
    from speechrq.units.sample import expected_frames

    rows = []
    work = Path(args.work)
    for hours in (args.hours, args.hours * args.scale):
        corpus = work / f"corpus_{hours:g}h"  # kept: a second run reuses the synthesis
        if not (corpus / "summary.json").exists():
            synthesize_corpus(corpus, SynthConfig(hours=hours, speakers=32, seed=5), progress=False)
        frames, _ = expected_frames(LazyCuts(corpus, "train"))
        with tempfile.TemporaryDirectory() as tmp:
            rss = fit_peak_rss(corpus, Path(tmp) / "u", args.frames, args.k)
        rows.append({"hours": hours, "train_frames": frames, "peak_rss_mb": rss,
                     "all_features_mb": frames * 96 * 4 / 2**20})  # what loading every frame (float32) would need
    return {"sample_frames": args.frames, "k": args.k, "rows": rows, "rss_ratio": rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    k = sub.add_parser("kmeans")
    k.add_argument("--n", type=int, default=200_000)
    k.add_argument("--dim", type=int, default=768)
    k.add_argument("--k", type=int, default=2000)
    k.add_argument("--niter", type=int, default=20)
    k.add_argument("--threads", type=int, default=2)
    k.add_argument("--features", help="an .npy [N, D] or a `units fit` sample directory instead of the mixture")
    m = sub.add_parser("memory")
    m.add_argument("--hours", type=float, default=0.1)
    m.add_argument("--scale", type=float, default=10.0)
    m.add_argument("--frames", type=int, default=20000)
    m.add_argument("--k", type=int, default=200)
    m.add_argument("--work", default="exp/bench_units", help="where the synthesized corpora are kept (default: exp/bench_units)")
    for p in (k, m):
        p.add_argument("--json", action="store_true")
    args = ap.parse_args()
    r = bench_kmeans(args) if args.what == "kmeans" else bench_memory(args)
    if args.json:
        print(json.dumps(r, indent=1))
    elif args.what == "kmeans":
        print(f"k-means of {r['points']} x {r['dim']} into k = {r['k']} ({r['threads']} threads):")
        print(f"  speechrq (faiss, {r['niter']} iterations): {r['speechrq_s']:.1f} s, inertia {r['speechrq_inertia']:.4f}")
        print(f"  sklearn MiniBatchKMeans (fairseq/ESPnet settings): {r['sklearn_s']:.1f} s, inertia {r['sklearn_inertia']:.4f}")
        print(f"  time ratio {r['time_ratio']:.3f} (goal <= 0.5), inertia ratio {r['inertia_ratio']:.4f} (goal <= 1)")
        print(f"  encoding: {r['encode_frames_per_s']:.0f} frames/s")
    else:
        print(f"units fit, sample of {r['sample_frames']} frames, k = {r['k']}:")
        for row in r["rows"]:
            print(f"  {row['hours']:g} h ({row['train_frames']} train frames): peak RSS {row['peak_rss_mb']:.0f} MB "
                  f"(every frame's feature in float32 would be {row['all_features_mb']:.0f} MB)")
        print(f"  peak RSS ratio, {args.scale:g}x the corpus: {r['rss_ratio']:.3f} (goal: about 1)")


if __name__ == "__main__":
    main()
