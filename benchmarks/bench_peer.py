"""speechrq's BEST-RQ step against the assembly a user would pip-install instead, side by side, one process a side.

The peer: lucidrains' ``conformer`` (``Conformer``) and ``vector_quantize_pytorch.RandomProjectionQuantizer``, glued
the way their READMEs show, in the same shape as speechrq's preset (the same two stride-2 convolutions in front, the
same width, depth, heads, feed-forward width and convolution kernel), the same N x V prediction heads and masking
share, on the same random log-Mel batch (no feature extraction on either side). Both take full optimizer steps
(forward, backward, AdamW) in fp32. Each side runs in its own process, as a user runs it: speechrq's with the malloc
setting its command line makes (``speechrq.allocator``), the peer's with the C library's defaults
(``--peer-keeps-freed-memory`` gives it speechrq's setting too). One side steps while the other waits, their steps
alternate round by round and the median is kept, so the machine's noise hits both alike. Printed: each side's audio
seconds per second, and speechrq's time per audio second as a ratio of the peer's (lower is better).

    pip install 'speechrq[bench]'   # conformer==0.3.2, vector-quantize-pytorch==1.32.0 (make bench does it)
    python benchmarks/bench_peer.py [--preset tiny] [--num-codebooks 8] [--codebook-size 4096] [--rounds 10] [--steps 2] [--compile]
        [--peer-keeps-freed-memory]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


def peer_model(cfg, num_codebooks: int, codebook_size: int, codebook_dim: int = 16) -> nn.Module:
    """lucidrains' Conformer and RandomProjectionQuantizer in ``cfg``'s shape (an ``EncoderConfig``)."""
    from conformer import Conformer
    from vector_quantize_pytorch import RandomProjectionQuantizer

    class Peer(nn.Module):
        def __init__(self):
            super().__init__()
            c = cfg.frontend_channels
            self.frontend = nn.Sequential(nn.Conv2d(1, c, 3, stride=2, padding=1), nn.SiLU(),
                                          nn.Conv2d(c, c, 3, stride=2, padding=1), nn.SiLU())
            self.proj = nn.Linear(c * (((cfg.input_dim + 1) // 2 + 1) // 2), cfg.dim)
            self.conformer = Conformer(cfg.dim, depth=cfg.num_layers, heads=cfg.num_heads, dim_head=cfg.dim // cfg.num_heads,
                                       ff_mult=1, conv_expansion_factor=1, conv_kernel_size=cfg.conv_kernel)
            for block in self.conformer.layers:  # the preset's feed-forward width (the package takes an integer multiple)
                for ff in (block.ff1, block.ff2):
                    net = ff.fn.fn.net
                    net[0], net[3] = nn.Linear(cfg.dim, cfg.ffn_dim), nn.Linear(cfg.ffn_dim, cfg.dim)
            self.mask_embedding = nn.Parameter(torch.randn(cfg.input_dim) * 0.1)
            self.rpq = RandomProjectionQuantizer(dim=4 * cfg.input_dim, codebook_size=codebook_size,
                                                 codebook_dim=codebook_dim, num_codebooks=num_codebooks)
            self.heads = nn.Linear(cfg.dim, num_codebooks * codebook_size)
            self.n, self.v = num_codebooks, codebook_size

        def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            b, t_in, f = feats.shape
            t = t_in // 4
            with torch.no_grad():
                targets = self.rpq(feats[:, : 4 * t].reshape(b, t, 4 * f))  # [B, T, N]
            x = torch.where(mask.repeat_interleave(4, 1)[..., None], self.mask_embedding, feats[:, : 4 * t])
            x = self.frontend(x.unsqueeze(1))
            x = self.conformer(self.proj(x.transpose(1, 2).flatten(2)))
            logits = self.heads(x[mask]).view(-1, self.n, self.v)
            return F.cross_entropy(logits.reshape(-1, self.v), targets[mask].reshape(-1))

    return Peer()


def _batch(batch_seconds: float):
    """The random log-Mel batch both sides step on: ``(feats [B, T, 80], frames [B], audio seconds)``, the same in
    every process (seeded)."""
    from speechrq.frames import SAMPLE_RATE
    from speechrq.pretrain.bench import synthetic_batch

    torch.manual_seed(0)
    _, audio_lens = synthetic_batch(batch_seconds, torch.device("cpu"))
    frames = audio_lens // 160
    feats = torch.randn(len(frames), int(frames.max()), 80)  # random log-Mel: no feature extraction on either side
    feats = feats.masked_fill(torch.arange(feats.shape[1])[None, :, None] >= frames[:, None, None], 0.0)
    return feats, frames, float(audio_lens.sum()) / SAMPLE_RATE


def _side(name: str, args: argparse.Namespace, keep_freed: bool, conn) -> None:
    """One side in its own process, as a user runs it: builds its model, takes 2 warm-up steps (and compiles), says
    ``(batch audio seconds, malloc set, threads)``, then answers each step index sent with that step's seconds, until
    it is sent None."""
    from speechrq.allocator import keep_freed_memory
    from speechrq.config import config_from_dict
    from speechrq.features import FeatureStats
    from speechrq.models.conformer import PRESETS
    from speechrq.pretrain.config import PretrainConfig
    from speechrq.pretrain.masking import span_mask
    from speechrq.pretrain.model import build_model
    from speechrq.pretrain.step import micro_step
    from speechrq.training.optim import make_optimizer

    kept = keep_freed_memory() if keep_freed else False
    feats, frames, audio_s = _batch(args.batch_seconds)
    cfg = config_from_dict(PretrainConfig, {
        "out_dir": "-", "data": {"corpus": "-"}, "model": {"preset": args.preset},
        "quantizer": {"num_codebooks": args.num_codebooks, "codebook_size": args.codebook_size},
        "train": {"device": "cpu", "precision": "fp32"} | ({"compile": True} if args.compile else {})}, source="bench_peer")
    if name == "speechrq":
        stats = FeatureStats([0.0] * 80, [1.0] * 80, int(frames.sum()), len(frames))
        ours = build_model(cfg, stats)
        opt = make_optimizer(ours, cfg.optim)
        if args.compile:  # as train.compile does it: the encoder's blocks, lengths padded to a multiple of 32 frames
            from speechrq.pretrain.trainer import compile_pretraining

            compile_pretraining(ours, "cpu")
        ids = [str(i) for i in range(len(frames))]

        def step(i: int) -> None:
            micro_step(ours, ours, feats, frames, None, None, ids, torch.Generator().manual_seed(i), "fp32")
            torch.nn.utils.clip_grad_norm_(ours.parameters(), 5.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
    else:
        peer = peer_model(PRESETS[args.preset], args.num_codebooks, args.codebook_size)
        opt = torch.optim.AdamW(peer.parameters(), lr=1e-4)

        def step(i: int) -> None:
            t = feats.shape[1] // 4
            mask = span_mask(frames // 4, t, cfg.masking.prob, cfg.masking.span, cfg.masking.mode,
                             generator=torch.Generator().manual_seed(i))
            peer(feats, mask).backward()
            torch.nn.utils.clip_grad_norm_(peer.parameters(), 5.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

    for i in range(2):  # warm-up (and compilation)
        step(i)
    conn.send((audio_s, kept, torch.get_num_threads()))
    while (i := conn.recv()) is not None:
        t0 = time.perf_counter()
        step(i)
        conn.send(time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--num-codebooks", type=int, default=8)
    p.add_argument("--codebook-size", type=int, default=4096)
    p.add_argument("--batch-seconds", type=float, default=60.0)
    p.add_argument("--rounds", type=int, default=10, help="alternations of the two sides (default: 10)")
    p.add_argument("--steps", type=int, default=2, help="timed steps per side and round (default: 2)")
    p.add_argument("--compile", action="store_true", help="speechrq's side with train.compile (the peer stays eager)")
    p.add_argument("--peer-keeps-freed-memory", action="store_true",
                   help="give the peer's process speechrq's malloc setting too (speechrq.allocator; a user of the peer "
                        "would not have it)")
    p.add_argument("--json", metavar="FILE", help="also write the numbers here")
    args = p.parse_args(argv)
    import importlib.util
    import multiprocessing

    from multiprocessing.connection import wait

    from speechrq.models.conformer import PRESETS

    if args.preset not in PRESETS:
        print(f"bench_peer: --preset {args.preset!r}: not a preset (one of {', '.join(sorted(PRESETS))})", file=sys.stderr)
        return 2
    if min(args.num_codebooks, args.codebook_size, args.rounds, args.steps) < 1 or not args.batch_seconds > 0:
        print("bench_peer: --num-codebooks, --codebook-size, --rounds and --steps must be at least 1, --batch-seconds "
              "above 0", file=sys.stderr)
        return 2
    for name in ("conformer", "vector_quantize_pytorch"):
        if importlib.util.find_spec(name) is None:
            print(f"bench_peer: {name} is not installed (pip install 'speechrq[bench]', or make bench)", file=sys.stderr)
            return 2
    ctx = multiprocessing.get_context("spawn")
    conns, procs, kept, threads = {}, {}, {}, {}

    def answer(name: str):
        """The side's next message; EOFError as soon as its process has ended, however it ended."""
        wait([conns[name], procs[name].sentinel])
        if not conns[name].poll():
            raise EOFError(name)
        return conns[name].recv()

    try:
        for name, keep in (("speechrq", True), ("peer", args.peer_keeps_freed_memory)):  # each builds (and compiles) alone
            here, there = ctx.Pipe()
            procs[name] = ctx.Process(target=_side, args=(name, args, keep, there), daemon=True)
            procs[name].start()
            there.close()  # the child's end: held here too, a side that died would never read as ended
            conns[name] = here
            audio_s, kept[name], threads[name] = answer(name)  # the same seeded batch on both sides
        times = {"speechrq": [], "peer": []}
        for r in range(args.rounds):
            for name in (list(conns) if r % 2 == 0 else list(conns)[::-1]):
                for i in range(args.steps):
                    conns[name].send(100 * r + i)
                    times[name].append(answer(name))
    except (EOFError, BrokenPipeError) as e:
        side = e.args[0] if isinstance(e, EOFError) else "other"
        print(f"bench_peer: the {side} side's process ended early (its error, if it raised one, is above)", file=sys.stderr)
        return 1
    finally:
        for conn in conns.values():
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in procs.values():
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "preset": args.preset, "heads": f"{args.num_codebooks}x{args.codebook_size}", "compile": args.compile,
        "batch_audio_s": audio_s, "threads": threads["speechrq"],
        "speechrq_keeps_freed_memory": kept["speechrq"], "peer_keeps_freed_memory": kept["peer"],
        "speechrq_s_per_step": med["speechrq"], "peer_s_per_step": med["peer"],
        "speechrq_audio_s_per_s": audio_s / med["speechrq"], "peer_audio_s_per_s": audio_s / med["peer"],
        "ratio": med["speechrq"] / med["peer"],
    }
    malloc = {True: "malloc keeps freed memory", False: "default malloc"}
    print(f"bench peer [{args.preset}, heads {out['heads']}, fp32, cpu ({out['threads']} threads), "
          f"{audio_s:.0f} s of audio per step, {args.rounds} alternations x {args.steps} steps, one process a side]\n"
          f"  speechrq{' (compiled)' if args.compile else ''} ({malloc[kept['speechrq']]}): {med['speechrq']:.3f} s/step, "
          f"{out['speechrq_audio_s_per_s']:.0f} audio s/s\n"
          f"  peer (conformer 0.3.2 + vector-quantize-pytorch RandomProjectionQuantizer; {malloc[kept['peer']]}): "
          f"{med['peer']:.3f} s/step, {out['peer_audio_s_per_s']:.0f} audio s/s\n"
          f"  speechrq time per audio second = {out['ratio']:.3f} x the peer's")
    if args.json:
        from speechrq.io import atomic_write_text

        atomic_write_text(args.json, json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
