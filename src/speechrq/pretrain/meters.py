"""What a pre-training run reports: loss, masked accuracy, codeword usage, throughput.

:class:`TrainingMeters` sums over one logging window on the device (no host
sync per micro-batch) and reduces over ranks only when a record is written; the
run-long codeword histogram is the collapse meter (over a window of a few steps
most codewords cannot occur yet).

Both are kept in the checkpoint (:meth:`TrainingMeters.state_dict`), so a resumed run's
records equal the uninterrupted run's: a window that spans the resume sums the same
steps, and the run's usage counts every step since its stage began, not since the
process did. The wall-clock fields are ``s_per_step`` and ``audio_s_per_s`` (the window's
measured step times, :class:`~speechrq.training.engine.StepTimes`); every other field
is a function of the trajectory.
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
        self.run_usage = CodebookUsage(num_codebooks, codebook_size, device)  # since this run or stage started
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

    def state_dict(self, ctx: dist.Context) -> dict:
        """The window and the run's usage as a checkpoint keeps them (plain CPU tensors and numbers; every rank calls
        this together). The window's per-rank sums are reduced over ranks here: :meth:`load_state_dict` gives rank 0
        the totals and every other rank zeros, so the record's reduction sums the same on any number of ranks."""
        return {"usage": dist.all_reduce_sum(self.usage.counts.clone(), ctx).cpu(),
                "sums": dist.all_reduce_sum(torch.cat([self.correct, self.counts]), ctx).cpu(),
                "losses": list(self.losses), "grad_norms": list(self.grad_norms), "skipped": int(self.skipped),
                "run_usage": self.run_usage.counts.cpu().clone()}  # already reduced: the same on every rank

    def load_state_dict(self, state: dict, ctx: dist.Context) -> None:
        self.reset()
        if ctx.rank == 0:
            self.usage.counts.copy_(state["usage"])
            n = self.correct.numel()
            self.correct.copy_(state["sums"][:n])
            self.counts.copy_(state["sums"][n:])
        self.losses, self.grad_norms = [float(x) for x in state["losses"]], [float(x) for x in state["grad_norms"]]
        self.skipped = int(state["skipped"])
        self.run_usage.counts.copy_(state["run_usage"])

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
        """The window's record (reduced over ranks) with ``extra`` fields, then a new window. ``elapsed``: the wall-clock
        seconds of the window's steps, measured per step (:class:`~speechrq.training.engine.StepTimes`)."""
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
