"""Corpus passes in one process and sharded over two with torchrun: frames per second per process, and the speed-up.

Two passes, each over the same split: ``units encode`` (an encoder layer, then the nearest k-means centroid of
every frame) and ``evaluate``'s hidden-state pass (every layer of every frame, float16 to the cache). Each runs

- in one process with every core's threads (what a user gets without torchrun),
- in one process with one thread (the per-process baseline),
- in ``--procs`` processes of one thread each, launched by torchrun (``speechrq.distributed``).

Times are each pass's wall clock from its first batch to the last rank's end (start-up, model loading and the
manifest pass excluded); frames are 40 ms encoder frames. Printed: frames per second per process, and the speed-up
of the sharded pass over both one-process runs, measured here in the same session. The outputs of the sharded
runs are checked equal to the one-process ones (unit arrays, cached states) before anything is printed.

    python benchmarks/bench_passes.py [--corpus DIR --split train] [--encoder CKPT] [--procs 2] [--json OUT]

Without ``--corpus``, a 0.3-hour corpus is synthesized in a temporary folder; the encoder defaults to the shipped
reference (the tiny preset after 4000 BEST-RQ steps).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "assets/reference/tiny_bestrq/checkpoints/step_00004000"


def worker(args) -> None:
    """One rank's share of one pass (run by the driver, under torchrun or alone); rank 0 prints the timing as JSON."""
    import torch

    from speechrq import distributed
    from speechrq.data.corpus import LazyCuts

    torch.set_num_threads(args.threads)
    with distributed.corpus_pass("cpu") as ctx:
        cuts = LazyCuts(args.corpus, args.split)
        if args.worker == "encode":
            from speechrq.units.encode import encode_corpus
            from speechrq.units.quantizers import UnitQuantizer
            from speechrq.units.run import open_layer

            q = UnitQuantizer.load(args.quantizer)
            layer = open_layer(q.source["encoder"], int(q.source["layer"]), device="cpu")
            distributed.barrier(ctx)
            t0 = time.perf_counter()
            summary = encode_corpus(layer, q, cuts, args.out, args.split, progress=False, ctx=ctx)
            seconds = time.perf_counter() - t0
            frames = summary.get("encoded_frames")
        else:
            from speechrq.encoders import HiddenStateCache, cache_hidden_states, load_encoder

            enc = load_encoder(args.encoder)
            cache = HiddenStateCache(args.out, enc.fingerprint)
            distributed.barrier(ctx)
            t0 = time.perf_counter()
            cache_hidden_states(enc, list(cuts), cache, progress=False, ctx=ctx)
            distributed.barrier(ctx)
            seconds = time.perf_counter() - t0
            frames = sum(int(c.duration / 0.04) for c in cuts)
        if ctx.is_main:
            print(json.dumps({"seconds": seconds, "frames": frames}))


def run(mode: str, procs: int, threads: int, common: list[str], out: Path) -> dict:
    argv = [sys.executable, *(["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs)] if procs > 1 else []),
            str(Path(__file__).resolve()), "--worker", mode, "--threads", str(threads), "--out", str(out), *common]
    r = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
    if r.returncode:
        sys.exit(f"bench_passes: {mode} with {procs} process(es) failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def same_files(a: Path, b: Path) -> bool:
    files = lambda d: {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*.npy"))}  # noqa: E731
    fa, fb = files(a), files(b)
    return bool(fa) and fa == fb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path)
    ap.add_argument("--split", default="train")
    ap.add_argument("--encoder", type=Path, default=REFERENCE)
    ap.add_argument("--layer", type=int, default=3)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--worker", choices=["encode", "states"], help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--quantizer", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = args.corpus
        if corpus is None:
            corpus = tmp / "corpus"
            subprocess.run([sys.executable, "-m", "speechrq", "synth", str(corpus), "--hours", "0.3", "--seed", "0", "--quiet"], check=True)
        q = tmp / "q"
        subprocess.run([sys.executable, "-m", "speechrq", "units", "fit", "--encoder", str(args.encoder), "--layer", str(args.layer),
                        "--corpus", str(corpus), "--split", args.split, "--k", "100", "--frames", "20000", "--out", str(q), "--quiet"],
                       check=True, capture_output=True)
        common = ["--corpus", str(corpus), "--split", args.split, "--encoder", str(args.encoder), "--quantizer", str(q)]
        rows = []
        for mode, what in (("encode", "units encode"), ("states", "hidden-state pass")):
            times = {}
            for procs, threads in ((1, cores), (1, 1), (args.procs, 1)):
                times[procs, threads] = run(mode, procs, threads, common, tmp / f"{mode}_{procs}x{threads}")
            if not same_files(tmp / f"{mode}_1x1", tmp / f"{mode}_{args.procs}x1"):
                sys.exit(f"bench_passes: {what}: the {args.procs}-process output differs from the one-process output")
            base_all, base_one, sharded = times[1, cores], times[1, 1], times[args.procs, 1]
            for (procs, threads), t in times.items():
                rows.append({"pass": what, "processes": procs, "threads": threads, "frames": t["frames"], "seconds": t["seconds"],
                             "frames_per_s_per_process": t["frames"] / t["seconds"] / procs,
                             "speedup_vs_1x1": base_one["seconds"] / t["seconds"],
                             f"speedup_vs_1x{cores}": base_all["seconds"] / t["seconds"]})
    from speechrq.studies.results_pages import format_bench_passes

    report = {"corpus": str(corpus), "split": args.split, "encoder": str(args.encoder), "cores": cores, "rows": rows}
    print(format_bench_passes(report), end="")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
