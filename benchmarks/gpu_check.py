"""One-GPU check of speechrq's CUDA paths, in under 10 minutes on an H200 (``benchmarks/gpu_check.sh``).

Prints one line per check, ``NAME: PASS|FAIL|SKIP  detail [seconds]``, then a ``total:`` line, and exits
non-zero when any check failed. A failing check prints its one-line reason (the traceback goes to stderr)
and the next one runs. Library chatter (warnings, logs) goes to stderr, so stdout holds only those lines.

Checks, in order (each with a time budget, 550 s in all, under the 560 s default --budget; past it a check is cut
short as a FAIL; ddp_nccl and faiss_gpu run in a child process, so a hang or a crash there stays one FAIL line):

 1. ``device``               torch / CUDA / cuDNN versions, the GPU, bf16 support.
 2. ``peak``                 measured peak matmul TFLOP/s: bf16 8192^3 timed by CUDA events (fp32 1024^3 on CPU).
 3. ``pretrain_bf16``        BEST-RQ steps of the paper preset (configs/pretrain/paper.yaml: 17 x 512 Conformer,
                             18 x 4096 heads, bf16 autocast) on its 200 s micro-batch: s/step, audio s/s, MFU =
                             counted model FLOPs (``FlopCounterMode``, as ``speechrq bench pretrain``) / s / peak.
 4. ``compile``              ``train.compile``: the preset's encoder blocks compiled by inductor against eager (outputs and
                             gradients, float32, TF32 off), graphs per batch-length multiple, forward+backward time.
 5. ``latent_ratio``         Latent-RQ (configs/pretrain/paper_latent.yaml, θ to layer 10) s/step over BEST-RQ's,
                             steps interleaved on the same batch (the paper: 1.28 on 4 H100s).
 6. ``targets_cuda_eq_cpu``  Mel (BEST-RQ) and latent (θ's layers) targets on CUDA against CPU, float32, TF32 off.
 7. ``ddp_nccl``             DDP over NCCL, world size 1 (tcp://127.0.0.1), a few steps; gradients equal a plain copy's.
 8. ``faiss_gpu``            ``units`` k-means on the GPU against the CPU (inertia ratio); SKIP with faiss-cpu.
 9. ``probe_gpu``            SUPERB PR probe on the GPU over the shipped tiny_bestrq@4000's states of a synthesized corpus.
10. ``finetune_gpu``         a short ``ft`` fine-tuning run of that encoder on the GPU.
11. ``decode_gpu``           joint CTC/attention beam search of a tiny discrete-unit ASR model: CUDA against CPU.

``--device cpu --smoke`` runs on a CPU in a few minutes: tiny preset, a handful of steps; the checks that need CUDA
print SKIP with the reason after a dry run of their code on the CPU (the dry run's numbers in the detail; a dry run
that fails prints FAIL). ``--checks a,b`` runs a subset; ``--json PATH`` writes every result.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "assets/reference/tiny_bestrq/checkpoints/step_00004000"
CHECKS = ("device", "peak", "pretrain_bf16", "compile", "latent_ratio", "targets_cuda_eq_cpu", "ddp_nccl", "faiss_gpu", "probe_gpu",
          "finetune_gpu", "decode_gpu")
# seconds per check: the full run on one H200 (sum 550 s, under the 560 s --budget with ~10 s of imports), and the smoke run
BUDGETS = {"device": 10, "peak": 20, "pretrain_bf16": 80, "compile": 90, "latent_ratio": 70, "targets_cuda_eq_cpu": 45, "ddp_nccl": 30,
           "faiss_gpu": 40, "probe_gpu": 60, "finetune_gpu": 50, "decode_gpu": 55}
SMOKE_BUDGETS = {"device": 10, "peak": 10, "pretrain_bf16": 30, "compile": 90, "latent_ratio": 30, "targets_cuda_eq_cpu": 30, "ddp_nccl": 30,
                 "faiss_gpu": 20, "probe_gpu": 45, "finetune_gpu": 45, "decode_gpu": 45}
ISOLATED = ("ddp_nccl", "faiss_gpu")  # run in a child process: a hang in NCCL or a crash in faiss-gpu cannot take the rest down
DATASHEET_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0}  # dense, SXM parts
CORPUS_ARGS = ["--hours", "0.1", "--speakers", "8", "--seed", "0"]  # 161 utterances (129 train), 4 s on 2 cores


class Skip(Exception):
    """The check does not apply here (its detail says why)."""


class CheckFailed(Exception):
    """The check ran and its result is wrong."""


class CheckTimeout(BaseException):  # a BaseException: library code catching Exception cannot swallow it
    pass


def require(ok: bool, message: str) -> None:
    if not ok:
        raise CheckFailed(message)


class Context:
    """What the checks share: the device, the mode, the temp dir, the corpus being synthesized, results of earlier checks."""

    def __init__(self, args, torch):
        self.args, self.torch = args, torch
        self.smoke = args.smoke
        self.cuda = args.device == "cuda"
        self.dev = torch.device("cuda", 0) if self.cuda else torch.device("cpu")
        self.tmp = Path(tempfile.mkdtemp(prefix="speechrq_gpu_check_"))
        self.state: dict = {}
        self._synth = None

    # ---- the synthesized corpus: started in the background at once, awaited by the checks that read it
    def start_corpus(self) -> None:
        out = self.tmp / "corpus"
        log = open(self.tmp / "synth.log", "w")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])))
        self._synth = subprocess.Popen([sys.executable, "-m", "speechrq", "synth", str(out), *CORPUS_ARGS, "--workers", "2", "--quiet"],
                                       stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(self.tmp))
        log.close()  # the child holds its own descriptor

    def corpus(self) -> Path:
        if self._synth is None:
            self.start_corpus()
        rc = self._synth.wait()  # the check's alarm bounds the wait
        if rc != 0:
            tail = (self.tmp / "synth.log").read_text().strip().splitlines()[-1:] or ["no output"]
            raise CheckFailed(f"speechrq synth exited with {rc}: {tail[0][:200]}")
        return self.tmp / "corpus"

    def cuts(self) -> dict:
        if "cuts" not in self.state:
            from speechrq.data.corpus import load_cuts

            corpus = self.corpus()
            self.state["cuts"] = {p: list(load_cuts(corpus, p)) for p in ("train", "dev", "test")}
        return self.state["cuts"]

    def other(self):
        """The device the GPU-only checks compare with the CPU: CUDA, or the CPU itself in a dry run."""
        return self.dev

    def dry_run(self, detail: str) -> str:
        """A GPU-only check's ending: its detail, or SKIP with the dry run's detail when there is no CUDA."""
        if not self.cuda:
            raise Skip(f"needs CUDA (--device cpu); dry run of the same code on the CPU ok: {detail}")
        return detail

    def pretrain_config(self, latent: bool = False):
        from speechrq.config import load_config
        from speechrq.pretrain.config import PretrainConfig

        sets = [f"train.device={self.dev.type}", f"train.precision={'bf16' if self.cuda else 'fp32'}"]
        if self.smoke:  # the tiny recipe, with θ's default layers (1, 2) for the latent variant
            return load_config(PretrainConfig, REPO / "configs/pretrain/tiny.yaml", sets + (["targets.refresh_at=[1]"] if latent else []))
        return load_config(PretrainConfig, REPO / f"configs/pretrain/{'paper_latent' if latent else 'paper'}.yaml", sets)

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()


# --------------------------------------------------------------------------------------------------- the checks


def check_device(ctx: Context):
    torch = ctx.torch
    if not ctx.cuda:
        import platform

        return (f"torch {torch.__version__}, CPU only ({torch.get_num_threads()} threads, {platform.machine()}); "
                f"CUDA available: {torch.cuda.is_available()}"), {"torch": torch.__version__}
    p = torch.cuda.get_device_properties(0)
    bf16 = torch.cuda.is_bf16_supported()
    m = {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "gpu": p.name,
         "capability": f"{p.major}.{p.minor}", "memory_gib": p.total_memory / 2**30, "bf16": bf16, "gpus": torch.cuda.device_count()}
    require(bf16, f"{p.name}: no bf16 support (torch.cuda.is_bf16_supported() is False)")
    return (f"torch {m['torch']}, CUDA {m['cuda']}, cuDNN {m['cudnn']}, {p.name} (sm_{p.major}{p.minor}, {m['memory_gib']:.0f} GiB, "
            f"{m['gpus']} visible), bf16 supported, TF32: matmul {torch.backends.cuda.matmul.allow_tf32}, "
            f"cudnn {torch.backends.cudnn.allow_tf32}"), m


def measure_peak(ctx: Context, dtype, n: int, rounds: int, per_round: int) -> tuple[float, float]:
    """(best, median) FLOP/s of rounds of ``per_round`` n^3 matmuls, after warm-up; CUDA events on a GPU."""
    torch = ctx.torch
    g = torch.Generator(device=ctx.dev).manual_seed(0)
    a = torch.randn(n, n, device=ctx.dev, dtype=dtype, generator=g)
    b = torch.randn(n, n, device=ctx.dev, dtype=dtype, generator=g)
    c = torch.empty(n, n, device=ctx.dev, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b, out=c)
    ctx.sync()
    rates = []
    for _ in range(rounds):
        if ctx.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(per_round):
                torch.mm(a, b, out=c)
            end.record()
            end.synchronize()
            seconds = start.elapsed_time(end) / 1e3
        else:
            t0 = time.perf_counter()
            for _ in range(per_round):
                torch.mm(a, b, out=c)
            seconds = time.perf_counter() - t0
        rates.append(per_round * 2 * n**3 / seconds)
    require(bool(torch.isfinite(c.float()).all()), "the matmul result holds NaN or inf")
    return max(rates), statistics.median(rates)


def check_peak(ctx: Context):
    torch = ctx.torch
    dtype, n, rounds, per = (torch.bfloat16, 8192, 10, 20) if ctx.cuda else (torch.float32, 1024, 5, 4)
    best, median = measure_peak(ctx, dtype, n, rounds, per)
    ctx.state["peak"] = best
    name = torch.cuda.get_device_name(0) if ctx.cuda else "cpu"
    sheet = next((v for k, v in DATASHEET_BF16_TFLOPS.items() if k in name), None) if ctx.cuda else None
    note = f", {100 * best / 1e12 / sheet:.0f}% of the {sheet:g} TFLOP/s datasheet dense bf16" if sheet else ""
    require(best > 0 and math.isfinite(best), f"measured {best} FLOP/s")
    return (f"{str(dtype).replace('torch.', '')} {n}^3 matmul: best {best / 1e12:.4g} TFLOP/s, median {median / 1e12:.4g} "
            f"({rounds} rounds of {per} after warm-up){note}"), {"peak_tflops": best / 1e12, "median_tflops": median / 1e12}


def _variant_class():
    """``speechrq bench pretrain``'s variant (bench._Variant: the training loop's micro-step, clipping, AdamW, its
    timing and FLOP counting), whose step also keeps its loss (a device scalar: no host sync inside a timed step)."""
    import torch

    from speechrq.pretrain.bench import _Variant
    from speechrq.pretrain.step import micro_step

    class Variant(_Variant):
        def step(self, i: int) -> None:
            out = micro_step(self.model, self.model, self.feats, self.lens, None, None, self.ids, torch.Generator().manual_seed(i),
                             self.cfg.train.precision, self.cache)
            self.losses.append(out.loss.detach())
            torch.nn.utils.clip_grad_norm_(self.params, 5.0)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)

        def loss_values(self) -> list[float]:
            return [float(v) for v in self.losses]

    return Variant


def _batch(ctx: Context, cfg):
    """The benchmark batch (``speechrq bench pretrain``'s speech-like lengths of noise), its log-Mel and statistics."""
    from speechrq.features import FeatureStats, LogMel
    from speechrq.frames import SAMPLE_RATE
    from speechrq.pretrain.bench import synthetic_batch

    if "batch" not in ctx.state:
        torch = ctx.torch
        seconds = 16.0 if ctx.smoke else cfg.data.max_duration  # the paper's per-GPU micro-batch: 200 s
        audio, audio_lens = synthetic_batch(seconds, ctx.dev)
        feats, lens = LogMel().to(ctx.dev)(audio, audio_lens)
        valid = feats[torch.arange(feats.shape[1], device=ctx.dev)[None] < lens[:, None]]
        stats = FeatureStats(valid.mean(0).tolist(), valid.std(0).tolist(), int(valid.shape[0]), len(lens))
        ctx.state["batch"] = (feats, lens, stats, float(audio_lens.sum()) / SAMPLE_RATE)
    return ctx.state["batch"]


def _make_variant(ctx: Context, name: str, cfg):
    feats, lens, stats, _ = _batch(ctx, cfg)
    v = _variant_class()(name, cfg, stats, ctx.dev, feats, lens)
    v.losses = []
    return v


def check_pretrain(ctx: Context):
    from speechrq.training.engine import compute_dtype

    cfg = ctx.pretrain_config()
    v = _make_variant(ctx, "best-rq", cfg)
    _, lens, _, audio_s = _batch(ctx, cfg)
    warmup, steps = (1, 3) if ctx.smoke else (3, 15)
    for i in range(warmup):
        v.step(i)
    flops = v.flops(warmup)  # one real step under FlopCounterMode: forward and backward of the batch
    for i in range(steps):
        v.timed_step(warmup + 1 + i)
    ctx.state["bestrq"], ctx.state["bestrq_flops"] = v, flops
    losses = v.loss_values()
    require(all(math.isfinite(x) for x in losses), f"non-finite loss in {sum(not math.isfinite(x) for x in losses)} of {len(losses)} steps")
    s = statistics.median(v.times)
    peak = ctx.state.get("peak")
    if peak is None:  # the peak check did not run or failed: measure it as bench.py does
        from speechrq.pretrain.bench import measure_matmul_peak

        peak = measure_matmul_peak(ctx.dev, compute_dtype(cfg.train.precision, ctx.dev))
    dtype = str(compute_dtype(cfg.train.precision, ctx.dev)).replace("torch.", "")
    enc_m = sum(p.numel() for p in v.model.encoder.parameters()) / 1e6
    m = {"preset": cfg.model.preset, "dtype": dtype, "batch_audio_s": audio_s, "utterances": len(lens), "s_per_step": s,
         "audio_s_per_s": audio_s / s, "tflop_per_step": flops / 1e12, "achieved_tflops": flops / s / 1e12, "peak_tflops": peak / 1e12,
         "mfu": flops / s / peak, "loss_first": losses[0], "loss_last": losses[-1], "encoder_params_m": enc_m}
    q = cfg.quantizer
    return (f"preset {cfg.model.preset} (encoder {enc_m:.1f}M, heads {q.num_codebooks}x{q.codebook_size}), "
            f"{'bf16 autocast' if dtype == 'bfloat16' else dtype}, batch {audio_s:.0f} s of audio ({len(lens)} utts): "
            f"{s:.4f} s/step (median of {steps}), {audio_s / s:.0f} audio s/s, {flops / 1e12:.3f} TFLOP/step -> "
            f"{flops / s / 1e12:.4g} TFLOP/s = MFU {100 * m['mfu']:.1f}% of the measured {peak / 1e12:.4g}; "
            f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, finite over {len(losses)} steps"), m


def check_compile(ctx: Context):
    """``train.compile``'s path: the preset's encoder blocks compiled in place (inductor on CUDA; dynamo's graphs
    with the ``aot_eager`` backend in a CPU dry run) against an eager copy, float32 with TF32 off, dropout off:
    every layer's output and every gradient within tolerance on three batch shapes, the graphs compiled (one per
    multiple of 32 frames reached), and the blocks' forward + backward time, eager against compiled."""
    torch = ctx.torch
    from speechrq.models import compiling
    from speechrq.models.conformer import speech_encoder

    cfg = ctx.pretrain_config()
    backend = compiling.BACKEND if ctx.cuda else "aot_eager"
    old_backend, compiling.BACKEND = compiling.BACKEND, backend
    try:
        torch.manual_seed(0)
        encoder = speech_encoder(cfg.model.preset, dropout=0.0)
        dim, eager = encoder.config.dim, encoder.encoder.to(ctx.dev)
        compiled = copy.deepcopy(eager)
        compiling.compile_module(compiled, ctx.dev.type, compiling.FRAME_MULTIPLE)
        before = compiling.compiled_graphs()
        g = torch.Generator().manual_seed(0)
        shapes = ((4, 100), (6, 117), (3, 70)) if ctx.smoke else ((16, 400), (24, 437), (12, 390))
        # a loss not constant in the states: each block ends in a LayerNorm, whose plain mean square is (nearly) fixed,
        # so its gradients would be all cancellation
        w = torch.linspace(-1, 1, dim, device=ctx.dev)
        worst, times = 0.0, {"eager": [], "compiled": []}
        with tf32(ctx, False):
            for b, t in shapes:
                x = torch.randn(b, t, dim, generator=g).to(ctx.dev)
                lens = torch.randint(t // 2, t + 1, (b,), generator=g)
                lens[0] = t
                lens = lens.to(ctx.dev)
                outs = []
                for name, model in (("eager", eager), ("compiled", compiled)):
                    for _ in range(2):  # the second call is timed (the first compiles)
                        model.zero_grad()
                        ctx.sync()
                        t0 = time.perf_counter()
                        states = model(x, lens)
                        sum((st * w).square().mean() for st in states).backward()
                        ctx.sync()
                    times[name].append(time.perf_counter() - t0)
                    outs.append(([st.detach() for st in states], {n: p.grad.clone() for n, p in model.named_parameters()}))
                (se, ge), (sc, gc) = outs
                valid = torch.arange(t, device=ctx.dev)[None, :] < lens[:, None]
                for a, c in zip(se, sc):
                    worst = max(worst, float((a[valid] - c[valid]).abs().max() / a[valid].abs().max().clamp_min(1e-6)))
                for n in ge:
                    worst = max(worst, float((ge[n] - gc[n]).abs().max() / ge[n].abs().max().clamp_min(1e-6)))
        graphs = compiling.compiled_graphs() - before
    finally:
        compiling.BACKEND = old_backend
    e, c = statistics.median(times["eager"]), statistics.median(times["compiled"])
    m = {"backend": backend, "graphs": graphs, "max_rel_diff": worst, "eager_s": e, "compiled_s": c, "speedup": e / c}
    detail = (f"preset {cfg.model.preset} blocks, {backend}: {graphs} graph(s) for {len(shapes)} batch shapes, outputs and "
              f"gradients within {worst:.1e} (relative to each tensor's largest), forward+backward {e * 1e3:.1f} ms eager, "
              f"{c * 1e3:.1f} ms compiled ({e / c:.2f}x)")
    require(worst <= 1e-3, f"compiled differs from eager by {worst:.1e} of the largest value: {detail}")
    require(graphs <= len({-(-t // compiling.FRAME_MULTIPLE) for _, t in shapes}), f"more graphs than length multiples: {detail}")
    return ctx.dry_run(detail), m


def check_latent(ctx: Context):
    cfg = ctx.pretrain_config()
    try:
        base = ctx.state.get("bestrq") or _make_variant(ctx, "best-rq", cfg)
        lat = _make_variant(ctx, "latent-rq", ctx.pretrain_config(latent=True))
        lat.make_latent()  # stage 1, θ = the student, θ's layer statistics fitted on the batch (as bench.py)
        warmup, rounds = (1, 3) if ctx.smoke else (2, 10)
        for i in range(warmup):
            lat.step(i)
            if "bestrq" not in ctx.state:
                base.step(i)
        base.times, lat.times = [], []
        for i in range(rounds):  # interleaved, order swapped every round: noise hits both alike
            for v in ((base, lat) if i % 2 == 0 else (lat, base)):
                v.timed_step(100 + i)
        losses = lat.loss_values()
        require(all(math.isfinite(x) for x in losses), "non-finite Latent-RQ loss")
        flops = ctx.state.get("bestrq_flops") or base.flops(200)
        theta = lat.target_encoder_flops()
        b, l_ = statistics.median(base.times), statistics.median(lat.times)
        layers = lat.model.targets.latent.layers
    finally:  # the two models and the batch are not needed after this check
        base = lat = None
        ctx.state.pop("bestrq", None)
        ctx.state.pop("batch", None)
        if ctx.cuda:
            ctx.torch.cuda.empty_cache()
    ratio, floor = l_ / b, 1 + theta / flops
    require(math.isfinite(ratio) and ratio > 0, f"ratio {ratio}")
    return (f"Latent-RQ (θ layers {layers}) {l_:.4f} s/step / BEST-RQ {b:.4f} s/step = {ratio:.3f}x (median of {rounds} "
            f"interleaved rounds; the paper: 1.28x on 4 H100s; compute floor 1 + F(θ)/F(step) = {floor:.3f}x)"), \
        {"ratio": ratio, "latent_s_per_step": l_, "bestrq_s_per_step": b, "compute_floor": floor, "layers": layers}


@contextlib.contextmanager
def tf32(ctx: Context, enabled: bool):
    """cuBLAS and cuDNN TF32 set to ``enabled`` inside, restored after (torch's defaults: matmul off, cuDNN on)."""
    torch = ctx.torch
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _tie_gaps(torch, z, codebooks, a, b):
    """For codes ``a != b`` of rows ``z [F, N, D]`` (float64, unit vectors): ``score(a) - score(b)`` per mismatch,
    scores being the dot products with ``codebooks [N, V, D]`` in float64 (0 for an argmax tie)."""
    f, n = (a != b).nonzero(as_tuple=True)
    if not len(f):
        return torch.zeros(0, dtype=torch.float64)
    cb = codebooks.double()
    za = (z[f, n] * cb[n, a[f, n]]).sum(-1)
    zb = (z[f, n] * cb[n, b[f, n]]).sum(-1)
    return za - zb


def _projected(torch, x, quantizer):
    """``x [F, in]`` -> ``[F, N, D]`` float64 unit vectors: the quantizer's projections, in float64."""
    import torch.nn.functional as F

    z = torch.einsum("mf,nfd->mnd", x.double(), quantizer.projection.double())
    return F.normalize(z, dim=-1)


def check_targets(ctx: Context):
    """Mel targets (BEST-RQ) and θ's latent targets on CUDA against the CPU, float32, TF32 off, same inputs and buffers.

    Bar: a code may differ only where its two codewords tie for the nearest within rounding. Mel: ≥ 99.9% equal and
    every mismatch a tie within 1e-5 (float64 score gap); the stacked log-Mel is projected by one 320 x 16 matmul, so
    float32 rounding moves a 16-dim cosine by ~1e-7. Latent: ≥ 99% equal and gaps within 1e-3, since θ's states
    themselves differ by float32 rounding accumulated through its blocks before the same quantizer.
    """
    torch = ctx.torch
    from speechrq.data.batching import make_loader
    from speechrq.features import FeatureNormalizer, FeatureStats, LogMel
    from speechrq.models.conformer import SUBSAMPLING, trim_to_frames
    from speechrq.pretrain.model import build_model
    from speechrq.targets.latent import MelTargets
    from speechrq.targets.random_projection import RandomProjectionQuantizer, stack_frames

    other = ctx.other()
    cuts = ctx.cuts()["train"]
    from lhotse import CutSet

    batch = next(iter(make_loader(CutSet.from_cuts(cuts), 20.0 if ctx.smoke else 60.0, shuffle=False)))
    feats, lens = trim_to_frames(*LogMel()(batch["audio"], batch["audio_lens"]))  # on the CPU: both sides read these
    valid = feats[torch.arange(feats.shape[1])[None] < lens[:, None]]
    stats = FeatureStats(valid.mean(0).tolist(), valid.std(0).tolist(), int(valid.shape[0]), len(lens))
    x = FeatureNormalizer.from_stats(stats)(feats, lens)
    frame_ok = torch.arange(x.shape[1] // SUBSAMPLING)[None] < (lens // SUBSAMPLING)[:, None]  # [B, T] valid encoder frames

    m = {}
    with tf32(ctx, False):
        # ---- BEST-RQ: the stage-0 targets of the preset's model (its Mel quantizer)
        cfg = ctx.pretrain_config()
        q = cfg.quantizer  # the preset's Mel quantizer, made from its seed as build_model makes it
        mel = MelTargets(RandomProjectionQuantizer(x.shape[-1] * SUBSAMPLING, q.num_codebooks, q.codebook_size, q.codebook_dim, seed=q.seed))
        cpu = mel(x, lens)
        dev_mel = copy.deepcopy(mel).to(other)
        with torch.autocast(other.type, enabled=False):
            got = dev_mel(x.to(other), lens.to(other)).cpu()
        a, b = cpu[frame_ok], got[frame_ok]  # [F, N]
        z = _projected(torch, stack_frames(x, SUBSAMPLING)[frame_ok], mel.quantizer)
        gaps = _tie_gaps(torch, z, mel.quantizer.codebooks, a, b).abs()
        m["mel_equal"] = float((a == b).double().mean())
        m["mel_codes"] = a.numel()
        m["mel_max_gap"] = float(gaps.max()) if len(gaps) else 0.0
        # ---- Latent-RQ: θ (the preset's encoder, random init, as at a refresh from the student) to its deepest target layer
        lcfg = ctx.pretrain_config(latent=True)
        lmodel = build_model(lcfg, stats).eval()
        latent = lmodel.targets.latent
        latent.encoder.load_state_dict(lmodel.encoder.state_dict())
        with torch.no_grad():
            latent.fit_normalizers([(x, lens)])
        lmodel.targets.stage.fill_(1)
        cpu_l = lmodel.targets(x, lens, None, None, feats)
        dev_t = copy.deepcopy(lmodel.targets).to(other)
        with torch.autocast(other.type, enabled=False):
            got_l = dev_t(x.to(other), lens.to(other), None, None, feats.to(other)).cpu()
        a_l, b_l = cpu_l[frame_ok], got_l[frame_ok]
        with torch.no_grad():
            states, out_lens = latent.hidden_states(x, lens, raw=feats)
        per = latent.quantizers[0].num_codebooks
        gaps_l = []
        for i, (h, norm, q) in enumerate(zip(states, latent.normalizers, latent.quantizers)):
            zl = _projected(torch, norm(h.float(), out_lens)[frame_ok], q)
            sl = slice(i * per, (i + 1) * per)
            gaps_l.append(_tie_gaps(torch, zl, q.codebooks, a_l[:, sl], b_l[:, sl]).abs())
        gaps_l = torch.cat(gaps_l)
        m["latent_equal"] = float((a_l == b_l).double().mean())
        m["latent_max_gap"] = float(gaps_l.max()) if len(gaps_l) else 0.0
        m["latent_layers"] = list(latent.layers)
    if ctx.cuda:  # for the record: the codes as the training step makes them (θ under bf16 autocast), and with torch's TF32 defaults
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf = dev_t(x.to(other), lens.to(other), None, None, feats.to(other)).cpu()
        with tf32(ctx, True):
            t32 = dev_t(x.to(other), lens.to(other), None, None, feats.to(other)).cpu()
        m["latent_equal_bf16_autocast"] = float((bf[frame_ok] == a_l).double().mean())
        m["latent_equal_tf32"] = float((t32[frame_ok] == a_l).double().mean())
    detail = (f"float32, TF32 off: Mel targets {100 * m['mel_equal']:.3f}% equal ({m['mel_codes']} codes of "
              f"{cfg.quantizer.num_codebooks}x{cfg.quantizer.codebook_size}, max tie gap {m['mel_max_gap']:.1e} <= 1e-5), "
              f"latent (θ layers {m['latent_layers']}) {100 * m['latent_equal']:.3f}% equal (max tie gap {m['latent_max_gap']:.1e} <= 1e-3)")
    if ctx.cuda:
        detail += (f"; for the record, latent codes equal to the CPU's with θ under bf16 autocast (as the training step runs it) "
                   f"{100 * m['latent_equal_bf16_autocast']:.2f}%, with TF32 on {100 * m['latent_equal_tf32']:.2f}%")
    require(m["mel_equal"] >= 0.999 and m["mel_max_gap"] <= 1e-5,
            f"Mel targets: {100 * m['mel_equal']:.3f}% equal, max gap {m['mel_max_gap']:.2e} (bar: 99.9%, ties within 1e-5); " + detail)
    require(m["latent_equal"] >= 0.99 and m["latent_max_gap"] <= 1e-3,
            f"latent targets: {100 * m['latent_equal']:.3f}% equal, max gap {m['latent_max_gap']:.2e} (bar: 99%, ties within 1e-3); " + detail)
    return ctx.dry_run(detail), m


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_ddp(ctx: Context):
    """World size 1 over NCCL (gloo in the CPU dry run), the trainer's DDP wrapping, a few micro-steps: DDP's gradients
    must equal those of a plain copy on the same batch and masks, and an all-reduce must come back."""
    torch = ctx.torch
    import torch.distributed as tdist
    from torch import nn

    from speechrq.config import load_config
    from speechrq.pretrain.bench import synthetic_batch
    from speechrq.pretrain.config import PretrainConfig
    from speechrq.pretrain.model import build_model
    from speechrq.pretrain.step import micro_step
    from speechrq.features import FeatureStats, LogMel
    from speechrq.training.optim import make_optimizer

    backend = "nccl" if ctx.cuda else "gloo"
    require(tdist.is_available() and (not ctx.cuda or tdist.is_nccl_available()), f"torch.distributed {backend} is not available")
    port = _free_port()
    t0 = time.perf_counter()
    tdist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1,
                             device_id=ctx.dev if ctx.cuda else None)
    init_s = time.perf_counter() - t0
    try:
        cfg = load_config(PretrainConfig, REPO / "configs/pretrain/tiny.yaml", [f"train.device={ctx.dev.type}"])
        audio, audio_lens = synthetic_batch(8.0, ctx.dev)
        feats, lens = LogMel().to(ctx.dev)(audio, audio_lens)
        valid = feats[torch.arange(feats.shape[1], device=ctx.dev)[None] < lens[:, None]]
        stats = FeatureStats(valid.mean(0).tolist(), valid.std(0).tolist(), int(valid.shape[0]), len(lens))
        model = build_model(cfg, stats).to(ctx.dev)
        ref = copy.deepcopy(model)
        with warnings.catch_warnings():  # torch 2.13 deprecates broadcast_buffers; the trainer still passes it
            warnings.simplefilter("ignore", FutureWarning)
            ddp = nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)  # as pretrain/trainer.py wraps it
        opt, opt_ref = make_optimizer(model, cfg.optim), make_optimizer(ref, cfg.optim)
        ids = [f"u{i}" for i in range(len(lens))]
        worst, losses = 0.0, []
        for step in range(3):
            out = micro_step(model, ddp, feats, lens, None, None, ids, torch.Generator().manual_seed(step), cfg.train.precision)
            out_ref = micro_step(ref, ref, feats, lens, None, None, ids, torch.Generator().manual_seed(step), cfg.train.precision)
            losses.append(float(out.loss.detach()))
            for (name, p), q in zip(model.named_parameters(), ref.parameters()):
                if q.grad is None:
                    continue
                require(p.grad is not None, f"step {step}: DDP left {name} without a gradient")
                scale = float(q.grad.abs().max()) or 1.0
                worst = max(worst, float((p.grad - q.grad).abs().max()) / scale)
            opt.step()
            opt_ref.step()
            opt.zero_grad(set_to_none=True)
            opt_ref.zero_grad(set_to_none=True)
        t = torch.full((4,), 3.0, device=ctx.dev)
        tdist.all_reduce(t)
        tdist.barrier()
        require(bool((t == 3.0).all()), f"all_reduce over one rank gave {t.tolist()}")
        require(all(math.isfinite(x) for x in losses), f"non-finite loss: {losses}")
        require(worst <= 1e-3, f"DDP gradients differ from a plain copy's by {worst:.2e} of their scale")
    finally:
        tdist.destroy_process_group()
    return ctx.dry_run(f"{backend}, world size 1, tcp://127.0.0.1:{port} store (init {init_s:.1f} s), tiny model under DDP, 3 steps: "
                       f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, gradients equal to a plain copy's within {worst:.1e} of their scale, "
                       f"all_reduce ok"), {"backend": backend, "max_rel_grad_diff": worst, "losses": losses}


def check_faiss(ctx: Context):
    import numpy as np

    import faiss

    from speechrq.units.quantizers import QuantizerSpec, UnitQuantizer, faiss_gpus

    gpus = faiss_gpus()
    on_gpu = ctx.cuda and gpus > 0
    n, d, k = (200_000, 128, 1000) if on_gpu else (16_000, 32, 64)
    g = np.random.default_rng(0)  # a Gaussian mixture of low effective rank, as SSL layers are (benchmarks/bench_units.py)
    basis = g.normal(size=(16, d)) / 4.0
    mu = g.normal(size=(4 * k, 16)) * 2.0
    x = ((mu[g.integers(0, len(mu), n)] + g.normal(size=(n, 16))) @ basis + 0.3 * g.normal(size=(n, d))).astype(np.float32)
    spec = QuantizerSpec(kind="kmeans", k=k, seed=0, niter=20)

    def fit(gpu: bool):
        t0 = time.perf_counter()
        q = UnitQuantizer.fit(x, QuantizerSpec(**spec.__dict__), gpu=gpu)
        seconds = time.perf_counter() - t0
        recon = q.decode(q.encode(x))
        return float(((x - recon) ** 2).sum(1).mean()), seconds

    cpu_inertia, cpu_s = fit(False)
    other_inertia, other_s = fit(on_gpu)
    ratio = other_inertia / cpu_inertia
    m = {"faiss": faiss.__version__, "gpus": gpus, "inertia_ratio": ratio, "cpu_inertia": cpu_inertia, "cpu_s": cpu_s, "gpu_s": other_s}
    detail = (f"faiss {faiss.__version__} k-means (units fit), {n}x{d}, k={k}, 20 iterations: inertia "
              f"{'GPU' if on_gpu else 'CPU (again)'} / CPU = {ratio:.4f} ({other_inertia:.4f} / {cpu_inertia:.4f}), "
              f"{other_s:.1f} s against {cpu_s:.1f} s")
    require(0.97 <= ratio <= 1.03, f"inertia ratio {ratio:.4f} outside [0.97, 1.03]: {detail}")
    if ctx.cuda and not gpus:
        raise Skip(f"faiss {faiss.__version__} has no GPU support (faiss.get_num_gpus() = 0: a faiss-cpu build); CPU k-means ok: "
                   f"inertia {cpu_inertia:.4f} on {n}x{d}, k={k}, {cpu_s:.1f} s")
    return ctx.dry_run(detail), m


def _encoder(ctx: Context):
    """The shipped tiny_bestrq@4000 as a frozen encoder on the check's device."""
    from speechrq.encoders.frozen import FrozenEncoder

    require((REFERENCE / "model.safetensors").exists(), f"{REFERENCE}: missing (the shipped reference checkpoint)")
    return FrozenEncoder.from_checkpoint(REFERENCE).to(ctx.other())


def _cuda_peak_reset(ctx: Context) -> int:
    """Reset the GPU's peak-memory counter; returns the bytes allocated now (what was on the GPU before)."""
    if not ctx.cuda:
        return 0
    ctx.torch.cuda.synchronize()
    ctx.torch.cuda.reset_peak_memory_stats()
    return ctx.torch.cuda.memory_allocated()


def _cuda_used(ctx: Context, what: str, before: int) -> str:
    """`` on cuda (peak N MiB more)``; fails when nothing more than ``before`` was allocated on the GPU since the reset
    (the work ran on the CPU)."""
    if not ctx.cuda:
        return " on cpu"
    peak = ctx.torch.cuda.max_memory_allocated()
    require(peak > before, f"{what}: nothing was allocated on the GPU (it ran on the CPU)")
    return f" on cuda (peak {(peak - before) / 2**20:.0f} MiB above the {before / 2**20:.0f} MiB held before)"


def check_probe(ctx: Context):
    from speechrq.encoders.cache import HiddenStateCache, cache_hidden_states
    from speechrq.evaluate.probes import StateStore, label_of, run_probe

    cuts = ctx.cuts()
    enc = _encoder(ctx)
    t0 = time.perf_counter()
    cache = HiddenStateCache(ctx.tmp / "hidden_states", enc.fingerprint)
    for part in cuts.values():
        cache_hidden_states(enc, part, cache, progress=False)
    states_s = time.perf_counter() - t0
    data = {p: [(c.id, lab) for c in cs if (lab := label_of("pr", c)) is not None] for p, cs in cuts.items()}
    store = StateStore(cache, [i for items in data.values() for i, _ in items])
    epochs = 30 if ctx.smoke else 60
    before = _cuda_peak_reset(ctx)
    t1 = time.perf_counter()
    r = run_probe("pr", store, data, lrs=[2e-2], epochs=epochs, preset="cpu", batch_size=16, seed=0)
    probe_s = time.perf_counter() - t1
    where = _cuda_used(ctx, "the probe", before)
    require(math.isfinite(r.test) and 0 <= r.test < 100, f"PR PER {r.test} (an all-blank probe scores 100)")
    detail = (f"PR probe (linear CTC over the weighted sum of tiny_bestrq@4000's {cache.get(data['train'][0][0]).shape[0]} states), "
              f"{len(data['train'])}/{len(data['dev'])}/{len(data['test'])} train/dev/test utts of a synthesized corpus: "
              f"test PER {r.test:.2f} (dev {r.dev:.2f}, best epoch {r.epoch} of {epochs}), hidden states {states_s:.1f} s, "
              f"probe {probe_s:.1f} s{where}")
    return ctx.dry_run(detail), {"per": r.test, "dev_per": r.dev, "epoch": r.epoch, "probe_s": probe_s, "states_s": states_s}


def check_finetune(ctx: Context):
    from speechrq.evaluate.finetune import FinetuneConfig, finetune

    cuts = ctx.cuts()
    enc = _encoder(ctx)
    steps = 20 if ctx.smoke else 150
    cfg = FinetuneConfig(minutes=10.0, steps=steps, lrs=(2e-3,), batch_seconds=30.0 if ctx.smoke else 60.0, eval_every=steps // 2)
    before = _cuda_peak_reset(ctx)
    t0 = time.perf_counter()
    r = finetune(enc, cuts, cfg, seeds=(0,), progress=False)[0]
    seconds = time.perf_counter() - t0
    where = _cuda_used(ctx, "fine-tuning", before)
    require(math.isfinite(r.test) and r.test >= 0, f"fine-tuned {r.metric.upper()} {r.test}")
    detail = (f"ft of tiny_bestrq@4000 + linear CTC ({r.metric.upper()}), {steps} steps of {cfg.batch_seconds:g} s batches on "
              f"{len(cuts['train'])} train utts: test {r.metric.upper()} {r.test:.2f} (dev {r.dev:.2f} at step {r.epoch}), "
              f"{seconds:.1f} s ({1e3 * seconds / steps:.0f} ms/step incl. features and scoring){where}")
    return ctx.dry_run(detail), {"metric": r.metric, "test": r.test, "dev": r.dev, "seconds": seconds}


def _asr_data(torch, n: int, vocab: int, k: int, streams: int, gen):
    """A learnable unit-to-token task: each token held for 2-4 frames, stream s showing unit (2s+1) t + s mod k,
    5% of units replaced at random. Returns padded units [B, T, M], lengths, tokens [B, U], token lengths."""
    units, toks = [], []
    for _ in range(n):
        u = int(torch.randint(3, 9, (1,), generator=gen))
        t = torch.randint(0, vocab, (u,), generator=gen)
        frames = t.repeat_interleave(torch.randint(2, 5, (u,), generator=gen))
        x = torch.stack([(frames * (2 * s + 1) + s) % k for s in range(streams)], -1)
        noise = torch.rand(x.shape, generator=gen) < 0.05
        units.append(torch.where(noise, torch.randint(0, k, x.shape, generator=gen), x))
        toks.append(t)
    from speechrq.asr.data import pad_ids

    x, lens = pad_ids(units)
    y, ylens = pad_ids(toks)
    return x, lens, y, ylens


def check_decode(ctx: Context):
    """A tiny E-Branchformer hybrid CTC/attention model trained a few hundred steps on a synthetic unit-to-token task, then
    joint CTC/attention beam search (beam 10, CTC weight 0.3), greedy CTC and greedy attention on the CPU and on CUDA with
    the same weights and inputs (torch's TF32 defaults, as decoding runs; again with TF32 off when they differ): the fraction
    of equal hypotheses. Bar: >= 90% equal in every mode, with the defaults or with TF32 off (a hypothesis may differ only
    at a near-tie of scores; an indexing or device bug changes most of them)."""
    torch = ctx.torch
    from speechrq.asr.model import ASR_PRESETS, asr_model
    from speechrq.asr.search import attention_greedy, ctc_greedy, joint_beam_search
    from speechrq.text import error_rate
    from speechrq.training.config import OptimConfig
    from speechrq.training.optim import lr_factor, make_optimizer, set_lr

    other = ctx.other()
    vocab, k, streams = 16, 32, 2
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = asr_model(ASR_PRESETS["tiny"], vocab, "units", num_streams=streams, unit_vocab=k).to(other)
    steps = 40 if ctx.smoke else 300
    ocfg = OptimConfig(lr=2e-3, warmup_steps=max(1, steps // 10), max_steps=steps)
    opt = make_optimizer(model, ocfg)
    t0 = time.perf_counter()
    model.train()
    for step in range(steps):
        set_lr(opt, ocfg.lr * lr_factor(step, ocfg))
        x, lens, y, ylens = _asr_data(torch, 32, vocab, k, streams, gen)
        res = model(x.to(other), lens.to(other), y.to(other), ylens.to(other), 0.3, 0.1, torch.Generator().manual_seed(step))
        res.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    train_s = time.perf_counter() - t0
    acc = res.correct / max(res.tokens, 1)
    require(math.isfinite(float(res.loss.detach())), f"non-finite ASR loss after {steps} steps")
    model.eval()
    cpu_model = copy.deepcopy(model).cpu()
    x, lens, y, ylens = _asr_data(torch, 32, vocab, k, streams, torch.Generator().manual_seed(12345))
    refs = [" ".join(map(str, y[i, : ylens[i]].tolist())) for i in range(len(y))]

    def decode(mdl, d):
        with torch.no_grad():
            enc = mdl.encode(x.to(d), lens.to(d))
            ld = lens.to(d)
            return {"joint": joint_beam_search(mdl, enc, ld, beam=10, ctc_weight=0.3), "ctc": ctc_greedy(mdl, enc, ld),
                    "attention": attention_greedy(mdl, enc, ld)}

    def equal(a, b) -> dict:
        return {mode: sum(u == v for u, v in zip(a[mode], b[mode])) / len(refs) for mode in a}

    t1 = time.perf_counter()
    on_cpu = decode(cpu_model, torch.device("cpu"))
    cpu_s = time.perf_counter() - t1
    t1 = time.perf_counter()
    on_other = decode(model, other)  # torch's TF32 defaults (cuDNN convolutions in TF32 on CUDA), as `asr decode` runs
    other_s = time.perf_counter() - t1
    eq = equal(on_cpu, on_other)
    ter = error_rate(refs, [" ".join(map(str, h)) for h in on_other["joint"]], "word")
    where = "cuda" if ctx.cuda else "cpu"
    detail = (f"tiny E-Branchformer, {steps} training steps on {where} ({train_s:.1f} s, teacher-forced acc {acc:.2f}); "
              f"32 test utts, hypotheses on {where} equal to the cpu's: joint beam 10 {100 * eq['joint']:.0f}%, greedy CTC "
              f"{100 * eq['ctc']:.0f}%, greedy attention {100 * eq['attention']:.0f}%; token error rate {ter:.1f}%; decode "
              f"{other_s:.2f} s on {where}, {cpu_s:.2f} s on cpu")
    m = {"equal": eq, "token_error_rate": ter, "decode_s": other_s, "cpu_decode_s": cpu_s, "train_s": train_s, "acc": acc}
    if ctx.cuda and min(eq.values()) < 1.0:  # tell rounding (TF32 convolutions) from a CUDA-path bug
        with tf32(ctx, False):
            m["equal_tf32_off"] = equal(on_cpu, decode(model, other))
        detail += "; with TF32 off: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in m["equal_tf32_off"].items())
    best = {mode: max(v, m.get("equal_tf32_off", eq)[mode]) for mode, v in eq.items()}
    require(min(best.values()) >= 0.9, f"hypotheses differ beyond near-ties: {detail}")
    return ctx.dry_run(detail), m


FUNCS = {"device": check_device, "peak": check_peak, "pretrain_bf16": check_pretrain, "latent_ratio": check_latent,
         "targets_cuda_eq_cpu": check_targets, "ddp_nccl": check_ddp, "faiss_gpu": check_faiss, "probe_gpu": check_probe,
         "finetune_gpu": check_finetune, "decode_gpu": check_decode, "compile": check_compile}


# --------------------------------------------------------------------------------------------------- the runner


def _alarm(signum, frame):
    raise CheckTimeout()


def run_one(ctx: Context, name: str, budget: float) -> tuple[str, str, dict]:
    """(status, detail, metrics) of one check in this process, bounded by ``budget`` seconds."""
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, max(budget, 1.0))
    try:
        with contextlib.redirect_stdout(sys.stderr):  # library prints go with the logs: stdout holds the check lines only
            detail, metrics = FUNCS[name](ctx)
        return "PASS", detail, metrics
    except Skip as e:
        return "SKIP", str(e), {}
    except CheckTimeout:
        return "FAIL", f"exceeded its budget of {budget:.0f} s", {}
    except CheckFailed as e:
        return "FAIL", str(e), {}
    except Exception as e:  # noqa: BLE001 - any error is this check's result
        print(f"--- {name}: traceback", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        text = " ".join(str(e).split())
        return "FAIL", f"{type(e).__name__}: {text[:400]}", {}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def run_isolated(ctx: Context, name: str, budget: float) -> tuple[str, str, dict]:
    """One check in a child process (``--only NAME``), killed at ``budget``: a hang or a crash stays a FAIL line."""
    a = ctx.args
    cmd = [sys.executable, str(Path(__file__).resolve()), "--device", a.device, "--only", name, "--budget", str(budget)]
    if a.smoke:
        cmd.append("--smoke")
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, timeout=budget + 15)
    except subprocess.TimeoutExpired:
        return "FAIL", f"exceeded its budget of {budget:.0f} s (its process was killed)", {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            return r["status"], r["detail"], r.get("metrics", {})
    how = f"was killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exited with {proc.returncode}"
    return "FAIL", f"its process {how} before reporting (see stderr)", {}


def _plain(x):
    """JSON-safe metrics (floats, lists, dicts of them)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (bool, int, float, str)) or x is None:
        return x
    return str(x)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto", help="cuda (the check), cpu (a dry run), auto")
    p.add_argument("--smoke", action="store_true", help="tiny preset and a handful of steps (for a CPU)")
    p.add_argument("--checks", default=",".join(CHECKS), help=f"comma-separated subset, in the fixed order (default: all: {','.join(CHECKS)})")
    p.add_argument("--budget", type=float, default=None, help="seconds for the whole run (default: 560; 260 with --smoke)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write every result as JSON")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (corpus, hidden states)")
    p.add_argument("--verbose", action="store_true", help="library logs at INFO")
    p.add_argument("--only", default=None, help=argparse.SUPPRESS)  # a child process of run_isolated
    args = p.parse_args(argv)
    start = time.monotonic()
    if args.device == "cpu":  # before torch loads: the probes and fine-tuning pick CUDA whenever torch sees one
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        import speechrq  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO / "src"))
    import logging

    import torch

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    budget_total = args.budget or (260.0 if args.smoke else 560.0)
    budgets = SMOKE_BUDGETS if args.smoke else BUDGETS
    selected = [c.strip() for c in (args.only or args.checks).split(",") if c.strip()]
    if unknown := [c for c in selected if c not in CHECKS]:
        p.error(f"unknown check {', '.join(unknown)} (choose from {', '.join(CHECKS)})")
    selected = [c for c in CHECKS if c in selected]
    ctx = Context(args, torch)
    if args.only:  # a child: one check, its result as one JSON line
        try:
            status, detail, metrics = run_one(ctx, args.only, args.budget or budgets[args.only])
            print(json.dumps({"status": status, "detail": detail, "metrics": _plain(metrics)}), flush=True)
        finally:
            import shutil

            shutil.rmtree(ctx.tmp, ignore_errors=True)
        return 0
    cuda_missing = args.device == "cuda" and not torch.cuda.is_available()
    if any(c in selected for c in ("targets_cuda_eq_cpu", "probe_gpu", "finetune_gpu")) and not cuda_missing and (os.cpu_count() or 1) >= 8:
        ctx.start_corpus()  # in the background while the first checks run (on a small CPU, when first needed: no contention)
    results, failed = [], 0
    deadline = start + budget_total
    try:
        for name in selected:
            left = deadline - time.monotonic()
            t0 = time.monotonic()
            if cuda_missing:
                status, detail, metrics = "FAIL", "--device cuda but torch sees no CUDA device (torch.cuda.is_available() is False)", {}
            elif left < 3:
                status, detail, metrics = "SKIP", f"no time left of the {budget_total:.0f} s budget", {}
            else:
                budget = min(budgets[name], left)
                runner = run_isolated if name in ISOLATED else run_one
                status, detail, metrics = runner(ctx, name, budget)
            seconds = time.monotonic() - t0
            failed += status == "FAIL"
            print(f"{name}: {status}  {detail} [{seconds:.1f} s]", flush=True)
            results.append({"check": name, "status": status, "detail": detail, "seconds": round(seconds, 2), "metrics": _plain(metrics)})
    finally:
        if ctx._synth is not None and ctx._synth.poll() is None:
            ctx._synth.kill()
            ctx._synth.wait()
        if not args.keep:
            import shutil

            shutil.rmtree(ctx.tmp, ignore_errors=True)
    total = time.monotonic() - start
    counts = {s: sum(r["status"] == s for r in results) for s in ("PASS", "FAIL", "SKIP")}
    print(f"total: {'FAIL' if failed else 'PASS'}  {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped "
          f"in {total:.1f} s (device {args.device}{', smoke' if args.smoke else ''}, budget {budget_total:.0f} s)", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"device": args.device, "smoke": args.smoke, "seconds": round(total, 2),
                                               "results": results}, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
