"""``speechrq bench pretrain``: how fast a pre-training step is, and how close to the device's peak.

Model FLOPs per step are counted by ``torch.utils.flop_counter.FlopCounterMode``
on one real step (forward and backward of the same batch), so MFU is
``flops_per_step / s_per_step / peak``. The peak is *measured* in the same run
as the best of several large matmuls in the step's compute dtype, so the ratio
is honest on a noisy or throttled machine.
"""

from __future__ import annotations

import time

import torch

from ..config import config_from_dict
from ..features import SAMPLE_RATE, FeatureStats, LogMel
from .config import PretrainConfig
from .optim import make_optimizer

DEFAULT_BATCH_SECONDS = {"tiny": 60.0, "small": 60.0, "paper": 120.0}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """Best observed FLOP/s of square matmuls of ``dtype`` on ``device``."""
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    _sync(device)
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        _sync(device)
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t0))
    return best


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


def bench_pretrain(preset: str = "tiny", steps: int = 10, warmup: int = 2, batch_seconds: float | None = None, device: str = "auto",
                   precision: str = "auto", num_codebooks: int = 18, codebook_size: int = 4096) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from .trainer import autocast, build_model, compute_dtype

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto" else device)
    batch_seconds = batch_seconds or DEFAULT_BATCH_SECONDS.get(preset, 60.0)
    cfg = config_from_dict(PretrainConfig, {
        "out_dir": "-", "data": {"corpus": "-"}, "model": {"preset": preset},
        "quantizer": {"num_codebooks": num_codebooks, "codebook_size": codebook_size},
        "train": {"device": dev.type, "precision": precision},
    }, source="bench")
    audio, audio_lens = synthetic_batch(batch_seconds, dev)
    logmel = LogMel().to(dev)
    feats, lens = logmel(audio, audio_lens)
    valid = feats[torch.arange(feats.shape[1], device=dev)[None] < lens[:, None]]
    stats = FeatureStats(valid.mean(0).tolist(), valid.std(0).tolist(), int(valid.shape[0]), len(lens))
    model = build_model(cfg, stats).to(dev)
    optimizer = make_optimizer(model, cfg.optim)
    params = [p for p in model.parameters() if p.requires_grad]

    def step(i: int) -> float:
        feats, lens = logmel(audio, audio_lens)
        with autocast(cfg, dev):
            out = model(feats, lens, generator=torch.Generator().manual_seed(i))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return out.loss.detach()

    for i in range(warmup):
        step(i)
    _sync(dev)
    with FlopCounterMode(display=False) as counter:
        step(warmup)
    flops = counter.get_total_flops()
    _sync(dev)
    t0 = time.perf_counter()
    for i in range(steps):
        loss = step(warmup + 1 + i)
    float(loss)
    _sync(dev)
    s_per_step = (time.perf_counter() - t0) / steps
    dtype = compute_dtype(cfg, dev)
    peak = measure_matmul_peak(dev, dtype)
    audio_seconds = float(audio_lens.sum()) / SAMPLE_RATE
    return {
        "preset": preset,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "dtype": str(dtype).replace("torch.", ""),
        "params_m": sum(p.numel() for p in params) / 1e6,
        "encoder_params_m": sum(p.numel() for p in model.encoder.parameters()) / 1e6,
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


def format_bench(r: dict) -> str:
    return (f"bench pretrain [{r['preset']}, {r['device']}, {r['dtype']}] params {r['params_m']:.1f}M (encoder {r['encoder_params_m']:.1f}M), "
            f"heads {r['codebooks']}\n"
            f"  batch {r['batch_audio_s']:.0f} s of audio ({r['utterances']} utterances)\n"
            f"  {r['s_per_step']:.3f} s/step, {r['audio_s_per_s']:.0f} audio s/s, "
            f"{r['flops_per_step'] / 1e12:.2f} TFLOP/step -> {r['achieved_tflops']:.3f} TFLOP/s of a measured "
            f"{r['peak_tflops']:.3f} TFLOP/s matmul peak: MFU {100 * r['mfu']:.1f}%")
