"""What a pre-training run reports: loss, masked accuracy, codeword usage, throughput.

:class:`TrainingMeters` sums over one logging window on the device (no host
sync per micro-batch) and reduces over ranks only when a record is written; the
run-long codeword histogram is the collapse meter (over a window of a few steps
most codewords cannot occur yet).
"""

from __future__ import annotations

import math

import torch

from .. import distributed as dist
from ..frames import lengths_to_padding_mask
from ..training.engine import read_metrics
from .config import PretrainConfig
from .objective import CodebookUsage


class TrainingMeters:
    def __init__(self, num_codebooks: int, codebook_size: int, device: torch.device):
        self.usage = CodebookUsage(num_codebooks, codebook_size, device)  # this log window, all ranks
        self.run_usage = CodebookUsage(num_codebooks, codebook_size, device)  # since this process or stage started
        self.micro_loss = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros(num_codebooks, dtype=torch.float64, device=device)
        self.counts = torch.zeros(3, dtype=torch.float64, device=device)  # masked frames, valid frames, audio seconds
        self.reset()

    def reset(self) -> None:
        """Start a new logging window."""
        self.usage.reset()
        self.correct.zero_()
        self.counts.zero_()
        self.losses, self.grad_norms, self.skipped = [], [], 0

    def add_micro(self, outp, audio_seconds: float) -> None:
        """One micro-batch's :class:`~speechrq.pretrain.model.StepOutput`; ``audio_seconds`` from host lengths."""
        valid = ~lengths_to_padding_mask(outp.frame_lens, outp.targets.shape[1])
        self.usage.update(outp.targets[valid])
        self.micro_loss += outp.loss.detach().double()
        self.correct += outp.result.correct.double()
        self.counts[0] += outp.result.num_masked
        self.counts[1] += valid.sum()
        self.counts[2] += audio_seconds

    def step_loss(self, accum: int, ctx: dist.Context) -> float:
        """This step's loss: the mean over micro-batches and ranks."""
        loss = dist.all_reduce_sum(self.micro_loss, ctx).item() / (accum * ctx.world_size)
        self.micro_loss.zero_()
        return loss

    def end_step(self, loss: float, grad_norm: float, skipped: bool) -> None:
        self.losses.append(loss)
        self.grad_norms.append(grad_norm)
        self.skipped += skipped

    def record(self, step: int, lr: float, ctx: dist.Context, elapsed: float, extra: dict) -> dict:
        """The window's record (reduced over ranks) with ``extra`` fields, then a new window."""
        dist.all_reduce_sum(self.usage.counts, ctx)  # the window's targets of all ranks
        self.run_usage.counts += self.usage.counts
        sums = dist.all_reduce_sum(torch.cat([self.correct, self.counts]), ctx).tolist()
        correct, (masked, valid, audio_s) = sums[:-3], sums[-3:]
        acc = [c / max(masked, 1) for c in correct]
        finite = [x for x in self.losses if math.isfinite(x)]
        record = {
            "step": step,
            "loss": sum(finite) / len(finite) if finite else float("nan"),
            "losses": self.losses,  # every step's loss in the window
            "acc": sum(acc) / len(acc),
            "acc_per_codebook": acc,
            "masked_fraction": masked / max(valid, 1),
            "lr": lr,
            "grad_norm": self.grad_norms[-1],
            "skipped_steps": self.skipped,
            "audio_s_per_s": audio_s / max(elapsed, 1e-9),
            "s_per_step": elapsed / max(len(self.losses), 1),
        } | {f"usage.{k}": v for k, v in self.usage.summary().items()} | extra
        record["usage.used_min"] = min(record["usage.used"])
        record["usage_run.used"] = self.run_usage.summary()["used"]
        record["usage_run.used_min"] = min(record["usage_run.used"])
        self.reset()
        return record


def format_run_summary(cfg: PretrainConfig) -> str:
    """The last logged numbers: masked accuracy and codeword usage, per target layer in latent stages."""
    records = read_metrics(cfg.out_dir)
    if not records:
        return f"{cfg.out_dir}: no metrics yet"
    r = records[-1]
    used = r.get("usage_run.used", r["usage.used"])
    acc = r["acc_per_codebook"]
    lines = [f"{cfg.out_dir}: step {r['step']}, stage {r.get('stage', 0)}: loss {r['loss']:.3f}, masked accuracy {r['acc']:.4f} "
             f"(chance {1 / cfg.quantizer.codebook_size:.5f}), codewords used {min(used):.2f}-{max(used):.2f} of each codebook"]
    if r.get("stage", 0) > 0:
        layers = r.get("layers") or cfg.target_layers()
        per = len(acc) // len(layers)
        for i, layer in enumerate(layers):
            sl = slice(i * per, (i + 1) * per)
            lines.append(f"  target layer {layer:>2}: accuracy {sum(acc[sl]) / per:.4f}, codewords used {sum(used[sl]) / per:.2f}")
    return "\n".join(lines)
