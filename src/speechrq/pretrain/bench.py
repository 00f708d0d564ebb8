"""``speechrq bench pretrain``: how fast a pre-training step is, and how close to the device's peak.

Model FLOPs per step are counted by ``torch.utils.flop_counter.FlopCounterMode``
on one real step (forward and backward of the same batch), so MFU is
``flops_per_step / s_per_step / peak``. The peak is *measured* in the same run
as the best of several large matmuls in the step's compute dtype, so the ratio
is honest on a noisy or throttled machine.

With ``gemm_ceiling=True`` every matrix product of one step (``mm``, ``addmm``, ``bmm``, ``baddbmm``, forward and
backward: shapes and dtypes recorded by a dispatch mode) is timed alone, each at its own shape and dtype (its best
time): ``gemm_peak_share`` is how fast the step's GEMMs run by themselves against the peak,
``gemm_time_share`` their share of the step's time, and ``mfu_ceiling`` the MFU the step would reach if its GEMMs
took their time alone, every other counted FLOP (the convolutions) ran at the peak and nothing else took time.
An MFU goal above that ceiling cannot be met by removing overhead; below it, the non-GEMM work bounds MFU.

With ``latent=True`` three variants run on the same preset and batch:
BEST-RQ (Mel targets), Latent-RQ computing its targets with θ, and Latent-RQ
reading them from a warm cache. Their steps are interleaved round by round and
the median is kept, so machine noise hits all three alike. The compute floor of
Latent-RQ without cache is ``1 + F(θ forward) / F(BEST-RQ step)``; the exact
ratio of the two steps' counted FLOPs (which also swaps the Mel quantizer for
the latent one) is reported beside it as ``flop_ratio``.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ..config import config_from_dict
from ..errors import SpeechrqError
from ..features import FeatureStats, LogMel
from ..frames import SAMPLE_RATE
from ..models.conformer import trim_to_frames
from ..targets.cache import TargetCache
from ..training.engine import autocast, compute_dtype
from ..training.optim import make_optimizer
from .config import PretrainConfig
from .model import build_model
from .step import micro_step

DEFAULT_BATCH_SECONDS = {"tiny": 60.0, "small": 60.0, "paper": 120.0}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_call_seconds(run, device: torch.device, seconds: float) -> float:
    """The best time of one call of ``run()`` over windows of 4 calls, windows repeated for about ``seconds`` in all
    (after one untimed call): a best time, as noise only ever adds to a time."""
    run()
    _sync(device)
    best, start = float("inf"), time.perf_counter()
    while True:
        t0 = time.perf_counter()
        for _ in range(4):
            run()
        _sync(device)
        now = time.perf_counter()
        best = min(best, (now - t0) / 4)
        if now - start >= seconds:
            return best


def measure_matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """Best observed FLOP/s of square matmuls of ``dtype`` on ``device``."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / best_call_seconds(lambda: a @ b, device, seconds)


def synthetic_batch(batch_seconds: float, device: torch.device, seed: int = 0, utterance_seconds: float = 12.0):
    """Speech-like lengths (``utterance_seconds`` +- 30%), noise audio: ``([B, S], [B])``."""
    g = torch.Generator().manual_seed(seed)
    lens = []
    while sum(lens) < batch_seconds * SAMPLE_RATE:
        lens.append(int(utterance_seconds * SAMPLE_RATE * (0.7 + 0.6 * torch.rand((), generator=g).item())))
    lens = torch.tensor(lens)
    audio = 0.1 * torch.randn(len(lens), int(lens.max()), generator=g)
    audio = audio.masked_fill(torch.arange(audio.shape[1])[None] >= lens[:, None], 0.0)
    return audio.to(device), lens.to(device)


class _Variant:
    """One way of taking a training step on the benchmark batch."""

    def __init__(self, name: str, cfg: PretrainConfig, stats: FeatureStats, dev: torch.device, feats, lens, cache: TargetCache | None = None):
        self.name, self.cfg, self.dev, self.feats, self.lens, self.cache = name, cfg, dev, feats, lens, cache
        self.model = build_model(cfg, stats).to(dev)
        self.optimizer = make_optimizer(self.model, cfg.optim)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.autocast = lambda: autocast(cfg.train.precision, dev)
        self.ids = [f"utt{i}" for i in range(len(lens))]
        self.times: list[float] = []

    def make_latent(self) -> None:
        """Stage 1 with θ = the student, statistics fit on the batch."""
        latent = self.model.targets.latent
        latent.encoder.load_state_dict(self.model.encoder.state_dict())
        feats, lens = trim_to_frames(self.feats, self.lens)
        with torch.no_grad():
            latent.fit_normalizers([(self.model.normalizer(feats, lens), lens)])
        self.model.targets.stage.fill_(1)
        if self.cache is not None:
            self.cache.set_source(self.model.targets.identity())

    def step(self, i: int) -> None:
        """One optimizer step: the training loop's micro-step, clipping, AdamW."""
        micro_step(self.model, self.model, self.feats, self.lens, None, None, self.ids, torch.Generator().manual_seed(i),
                   self.cfg.train.precision, self.cache)
        torch.nn.utils.clip_grad_norm_(self.params, 5.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def timed_step(self, i: int) -> None:
        _sync(self.dev)
        t0 = time.perf_counter()
        self.step(i)
        _sync(self.dev)
        self.times.append(time.perf_counter() - t0)

    def flops(self, i: int) -> int:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            self.step(i)
        return counter.get_total_flops()

    def target_encoder_flops(self) -> int:
        """FLOPs of θ's forward up to its deepest target layer (the quantizers excluded).

        The quantizers are left out because both methods pay for one: BEST-RQ
        quantizes stacked Mel frames, Latent-RQ θ's states, with the same N x V
        codebooks; what Latent-RQ adds is θ.
        """
        from torch.utils.flop_counter import FlopCounterMode

        feats, lens = trim_to_frames(self.feats, self.lens)
        feats = self.model.normalizer(feats, lens)
        with FlopCounterMode(display=False) as counter, self.autocast(), torch.inference_mode():
            self.model.targets.latent.hidden_states(feats, lens)
        return counter.get_total_flops()


GEMMS = ("mm", "addmm", "bmm", "baddbmm")  # the matrix products; addmm and baddbmm take (bias, A, B)


class GemmRecorder(TorchDispatchMode):
    """A dispatch mode that counts every matrix product run under it, by ``(op, A's shape, B's shape, dtype)``
    (the backward's too: the autograd engine carries the mode into it, as it does ``FlopCounterMode``)."""

    def __init__(self):
        super().__init__()
        self.found: dict[tuple, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        op = func.overloadpacket.__name__
        if op in GEMMS:
            a, b = args[1:3] if op in ("addmm", "baddbmm") else args[:2]
            key = (op, tuple(a.shape), tuple(b.shape), a.dtype)
            self.found[key] = self.found.get(key, 0) + 1
        return func(*args, **(kwargs or {}))


def step_gemms(variant: _Variant, i: int) -> dict[tuple, int]:
    """The matrix products of step ``i`` of ``variant``: ``{(op, shape of A, shape of B, dtype): count}``."""
    with GemmRecorder() as recorder:
        variant.step(i)
    return recorder.found


def gemm_flops(op: str, a: tuple, b: tuple) -> int:
    """FLOPs of one product: ``2 m k n``, times the batch for ``bmm`` and ``baddbmm`` (their bias add not counted, as
    ``torch.utils.flop_counter`` counts it)."""
    return 2 * a[-2] * a[-1] * b[-1] * (a[0] if op in ("bmm", "baddbmm") else 1)


def time_gemms(gemms: dict[tuple, int], device: torch.device, seconds: float = 0.05) -> tuple[int, float]:
    """``(FLOPs, seconds)`` of every product in ``gemms`` run alone in its own dtype, each shape's time its best
    (:func:`best_call_seconds` over about ``seconds``, as the peak is measured)."""
    flops, total = 0, 0.0
    for (op, a, b, dtype), count in gemms.items():
        x, y = torch.randn(*a, device=device, dtype=dtype), torch.randn(*b, device=device, dtype=dtype)
        run = torch.bmm if op in ("bmm", "baddbmm") else torch.mm
        flops += count * gemm_flops(op, a, b)
        total += count * best_call_seconds(lambda: run(x, y), device, seconds)  # noqa: B023 (called before the next)
    return flops, total


def bench_pretrain(preset: str = "tiny", steps: int = 10, warmup: int = 2, batch_seconds: float | None = None, device: str = "auto",
                   precision: str = "auto", num_codebooks: int = 18, codebook_size: int = 4096, latent: bool = False,
                   layers: list[int] | None = None, gemm_ceiling: bool = False) -> dict:
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto" else device)
    batch_seconds = batch_seconds or DEFAULT_BATCH_SECONDS.get(preset, 60.0)
    base = {
        "out_dir": "-", "data": {"corpus": "-"}, "model": {"preset": preset},
        "quantizer": {"num_codebooks": num_codebooks, "codebook_size": codebook_size},
        "train": {"device": dev.type, "precision": precision},
    }
    cfg = config_from_dict(PretrainConfig, base, source="bench")
    audio, audio_lens = synthetic_batch(batch_seconds, dev)
    feats, lens = LogMel().to(dev)(audio, audio_lens)
    valid = feats[torch.arange(feats.shape[1], device=dev)[None] < lens[:, None]]
    stats = FeatureStats(valid.mean(0).tolist(), valid.std(0).tolist(), int(valid.shape[0]), len(lens))

    variants = [_Variant("best-rq", cfg, stats, dev, feats, lens)]
    if latent:
        lat = config_from_dict(PretrainConfig, {**base, "targets": {"refresh_at": [1], "layers": layers}}, source="bench")
        variants.append(_Variant("latent-rq", lat, stats, dev, feats, lens))
        variants.append(_Variant("latent-rq+cache", lat, stats, dev, feats, lens, cache=TargetCache("memory")))
        for v in variants[1:]:
            v.make_latent()
    for v in variants:  # warm-up (and a warm cache)
        for i in range(warmup):
            v.step(i)
    flops = variants[0].flops(warmup)
    for i in range(steps):  # interleaved rounds, order reversed every other one: noise and position hit all alike
        for v in (variants if i % 2 == 0 else variants[::-1]):
            v.timed_step(warmup + 1 + i)
    dtype = compute_dtype(cfg.train.precision, dev)
    peak = measure_matmul_peak(dev, dtype)
    audio_seconds = float(audio_lens.sum()) / SAMPLE_RATE
    s_per_step = statistics.median(variants[0].times)
    params = variants[0].params
    result = {
        "preset": preset,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "dtype": str(dtype).replace("torch.", ""),
        "params_m": sum(p.numel() for p in params) / 1e6,
        "encoder_params_m": sum(p.numel() for p in variants[0].model.encoder.parameters()) / 1e6,
        "codebooks": f"{num_codebooks}x{codebook_size}",
        "batch_audio_s": audio_seconds,
        "utterances": len(audio_lens),
        "s_per_step": s_per_step,
        "audio_s_per_s": audio_seconds / s_per_step,
        "flops_per_step": flops,
        "achieved_tflops": flops / s_per_step / 1e12,
        "peak_tflops": peak / 1e12,
        "mfu": flops / s_per_step / peak,
    }
    if gemm_ceiling:
        gemms = step_gemms(variants[0], warmup)
        if not gemms:
            raise SpeechrqError("bench pretrain --gemm-ceiling: the step ran no matrix product to time")
        g_flops, gemm_s = time_gemms(gemms, dev)
        # the ceiling: every FLOP outside the GEMMs (the convolutions) at the peak, nothing else taking time
        floor_s = gemm_s + max(flops - g_flops, 0) / peak
        result |= {"gemm_shapes": len(gemms), "gemm_calls": sum(gemms.values()), "gemm_flops": g_flops,
                   "gemm_flop_share": g_flops / flops, "gemm_s": gemm_s, "gemm_time_share": gemm_s / s_per_step,
                   "gemm_peak_share": g_flops / gemm_s / peak, "mfu_ceiling": flops / floor_s / peak,
                   "gemm_longer_than_step": gemm_s > s_per_step}
    if latent:
        theta = variants[1].target_encoder_flops()
        latent_flops = variants[1].flops(warmup)
        lat_s, cache_s = statistics.median(variants[1].times), statistics.median(variants[2].times)
        result |= {
            "target_layers": variants[1].model.targets.latent.layers,
            "latent_s_per_step": lat_s,
            "latent_cached_s_per_step": cache_s,
            "ratio_latent": lat_s / s_per_step,
            "ratio_latent_cached": cache_s / s_per_step,
            "compute_floor": 1 + theta / flops,
            "theta_flops": theta,
            "flop_ratio": latent_flops / flops,
            "cache_hits": variants[2].cache.hits,
        }
    return result


def format_bench(r: dict) -> str:
    text = (f"bench pretrain [{r['preset']}, {r['device']}, {r['dtype']}] params {r['params_m']:.1f}M (encoder {r['encoder_params_m']:.1f}M), "
            f"heads {r['codebooks']}\n"
            f"  batch {r['batch_audio_s']:.0f} s of audio ({r['utterances']} utterances)\n"
            f"  BEST-RQ: {r['s_per_step']:.3f} s/step, {r['audio_s_per_s']:.0f} audio s/s, "
            f"{r['flops_per_step'] / 1e12:.3f} TFLOP/step -> {r['achieved_tflops']:.3f} TFLOP/s of a measured "
            f"{r['peak_tflops']:.3f} TFLOP/s matmul peak: MFU {100 * r['mfu']:.1f}%")
    if "mfu_ceiling" in r:
        text += (f"\n  GEMMs ({r['gemm_calls']} products, {r['gemm_shapes']} shapes, {100 * r['gemm_flop_share']:.0f}% of the FLOPs), each "
                 f"timed alone: {r['gemm_s']:.3f} s = {100 * r['gemm_time_share']:.0f}% of the step, at "
                 f"{100 * r['gemm_peak_share']:.0f}% of the peak; MFU ceiling (the other FLOPs at the peak, nothing "
                 f"else taking time): {100 * r['mfu_ceiling']:.0f}%")
        if r["gemm_longer_than_step"]:
            text += "\n  (the GEMMs alone took longer than the whole step: other work shared the cores; run it again on idle ones)"
    if "ratio_latent" in r:
        text += (f"\n  Latent-RQ (layers {r['target_layers']}): {r['latent_s_per_step']:.3f} s/step = "
                 f"{r['ratio_latent']:.3f}x BEST-RQ (compute floor {r['compute_floor']:.3f}x, "
                 f"counted FLOPs {r['flop_ratio']:.3f}x; ratio/floor {r['ratio_latent'] / r['compute_floor']:.3f})"
                 f"\n  Latent-RQ, warm target cache: {r['latent_cached_s_per_step']:.3f} s/step = {r['ratio_latent_cached']:.3f}x BEST-RQ")
    return text
