"""The parts of a training loop that are not the model: precision, RNG, rank agreement, the metrics log.

Any speechrq trainer (pre-training today, discrete-unit ASR next) uses these
with :mod:`speechrq.training.optim` and :mod:`speechrq.checkpoint`:

- :func:`autocast`: bf16 autocast where asked, or by default on CUDA;
- :func:`rng_state` / :func:`set_rng_state`: what a checkpoint saves per rank so
  that a resumed run draws the same dropout masks;
- :func:`check_buffers_agree`: every rank holds the same fixed buffers;
- :class:`MetricsLog`: ``metrics.jsonl`` and TensorBoard, rank 0 only, trimmed to
  the checkpoint a run resumes from;
- :func:`resume_point`: the checkpoint a ``--resume`` continues from, refusing a config
  that changed what a resumed run must keep; :func:`restore_progress`: its optimizer,
  data position, RNG states and meters;
- :class:`StepTimes`: the wall-clock seconds of the steps of a log window, measured per step.

A resumed run writes what the uninterrupted run writes: every meter that spans steps (a log
window's sums, run-long codeword usage, skipped steps in a row, the window's measured step
times) is saved in the checkpoint's ``trainer.pt`` under ``"meters"`` (:func:`meters_state`)
and restored with it, and :class:`MetricsLog` drops the records the killed run wrote past
the checkpoint. Only wall-clock fields can differ: ``s_per_step`` (both trainers) and
``audio_s_per_s`` (pre-training), each the window's summed step times, so neither counts
set-up, logging, checkpoint writes or the time lost to a kill; and ``cache_hit_rate``
(pre-training), which depends on what the target cache held, not on the trajectory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from pathlib import Path

import torch
from torch import nn

from .. import distributed as dist
from ..errors import SpeechrqError
from ..io import atomic_write_text
from .optim import load_optimizer_state

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.jsonl"


def resume_point(config_cls, cfg, resume: bool, resumable: frozenset[str] | set[str],
                 ctx: dist.Context, inputs: dict | None = None, defaults: dict | None = None) -> tuple[Path | None, dict | None]:
    """The checkpoint a run continues from and its meta (None, None for a new run); refuses what cannot resume.

    The saved config is read through today's dataclasses (keys added since take their
    defaults) and compared with ``cfg``; only the keys in ``resumable`` may differ.
    ``inputs`` (what the run reads besides its config: fingerprints of the corpus, statistics,
    a checkpoint it branches from; :mod:`speechrq.identity`) is saved with every checkpoint as
    ``meta["inputs"]``; a run whose inputs changed is refused, naming the first that differs. ``defaults`` stand in
    for inputs a checkpoint saved before they were recorded (what they were then).
    """
    from ..checkpoint import latest_checkpoint, list_checkpoints, read_meta
    from ..config import config_from_dict, config_to_dict, diff_configs

    root = Path(cfg.out_dir) / "checkpoints"
    if not resume:
        if list_checkpoints(root):
            raise SpeechrqError(f"{cfg.out_dir}: already holds checkpoints; pass --resume to continue that run, or choose another out_dir")
        return None, None
    path = latest_checkpoint(root)
    if path is None:
        if ctx.is_main:
            log.warning("%s: nothing to resume, starting a new run", root)
        return None, None
    meta = read_meta(path)
    saved = config_to_dict(config_from_dict(config_cls, meta["config"], source=str(path)))
    changed = set(diff_configs(saved, config_to_dict(cfg)))
    if changed - set(resumable):
        raise SpeechrqError(f"{path}: the config differs from the run's in {', '.join(sorted(changed - set(resumable)))}; "
                            "a resumed run must keep them (start a new out_dir instead)")
    if inputs is not None and "inputs" in meta:
        from ..identity import describe_difference

        if (why := describe_difference(json.loads(json.dumps(defaults or {})) | meta["inputs"], json.loads(json.dumps(inputs)))):
            raise SpeechrqError(f"{path}: the run was trained on other inputs ({why}); a resumed run must read the same "
                                "(start a new out_dir instead)")
    elif inputs is not None and ctx.is_main:
        log.warning("%s: saved by an older speechrq without the fingerprints of its inputs; assuming they are unchanged", path)
    if "optim.max_steps" in changed and ctx.is_main:
        log.warning("optim.max_steps changed from %s to %s: the learning-rate schedule changes from here on",
                    meta["config"]["optim"]["max_steps"], cfg.optim.max_steps)
    return path, meta


def restore_progress(path: Path, meta: dict, optimizer, stream, seed: int, ctx: dist.Context, meters: dict | None = None) -> int:
    """A checkpoint's optimizer state, this rank's data position and RNG states, and the state of each of ``meters``
    (``{name: meter}``, as :func:`meters_state` saved them; the weights are the caller's); returns the step. Resumed on
    another number of ranks, data order and RNG streams restart, seeded."""
    from ..checkpoint import load_trainer_state

    trainer_state = load_trainer_state(path)
    load_optimizer_state(optimizer, trainer_state["optimizer"])
    step = meta["step"]
    if meta["world_size"] == ctx.world_size:
        stream.restore(meta["data"][ctx.rank])
        set_rng_state(trainer_state["rng"][ctx.rank], ctx.device)
    else:
        log.warning("resuming on %d ranks a run saved on %d: data order and RNG streams restart", ctx.world_size, meta["world_size"])
        torch.manual_seed(seed + step + ctx.rank)
    saved = trainer_state.get("meters", {})
    if meters and (missing := [name for name in meters if name not in saved]) and ctx.is_main:
        log.warning("%s: saved by an older speechrq without its meters (%s): the log window and the run's meters restart "
                    "here, so the first records after this resume cover only the steps after it", path, ", ".join(missing))
    for name, meter in (meters or {}).items():
        if name in saved:
            meter.load_state_dict(saved[name], ctx)
    return step


def meters_state(meters: dict, ctx: dist.Context) -> dict:
    """What a checkpoint keeps of ``meters`` (``{name: meter}``): each one's ``state_dict(ctx)``, plain tensors and numbers
    (``trainer.pt`` is read with ``weights_only=True``). Called on every rank together (a meter may reduce over ranks)."""
    return {name: meter.state_dict(ctx) for name, meter in meters.items()}


def now() -> float:
    """The clock of step times (a monotonic wall clock, seconds)."""
    return time.perf_counter()


class StepTimes:
    """Wall-clock seconds of the optimizer steps of one log window, each measured from its start (:meth:`start`: before
    its first batch is read; a stage's refresh, at that step, counts) to its end (:meth:`stop`: after the update), so that
    logging, checkpoint writes, set-up and the time a killed run lost are never counted. Kept in the checkpoint, so a
    window that spans a resume sums the measured times of its steps, as the uninterrupted run's does."""

    def __init__(self):
        self.seconds, self.steps, self._started = 0.0, 0, None

    def start(self) -> None:
        self._started = now()

    def stop(self) -> None:
        self.seconds += now() - self._started
        self.steps += 1

    def take(self) -> tuple[float, int]:
        """The window's (seconds, steps), then a new window."""
        out = (self.seconds, self.steps)
        self.seconds, self.steps = 0.0, 0
        return out

    def state_dict(self, ctx: dist.Context | None = None) -> dict:
        return {"seconds": self.seconds, "steps": self.steps}

    def load_state_dict(self, state: dict, ctx: dist.Context | None = None) -> None:
        self.seconds, self.steps = float(state["seconds"]), int(state["steps"])


def set_deterministic(enabled: bool) -> None:
    """``torch.use_deterministic_algorithms`` and what CUDA needs for it."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    """bf16 (autocast) where asked, or by default (``auto``) on CUDA; float32 otherwise."""
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return torch.bfloat16 if bf16 else torch.float32


def autocast(precision: str, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=compute_dtype(precision, device) == torch.bfloat16)


def seed_rank(seed: int, rank: int) -> None:
    """A new run's torch and Python RNGs: dropout differs per rank, reproducibly."""
    torch.manual_seed(seed + 1000 * (rank + 1))
    random.seed(seed + rank)


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def check_buffers_agree(model: nn.Module, ctx: dist.Context) -> None:
    """Every rank must hold the same fixed buffers (statistics, projections, codebooks)."""
    if not ctx.distributed:
        return
    h = hashlib.sha256()
    params = {name for name, _ in model.named_parameters()}
    for name, buf in sorted(model.state_dict().items()):
        if name not in params:
            h.update(name.encode())
            h.update(buf.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    digests = dist.gather_objects(h.hexdigest(), ctx)
    if len(set(digests)) > 1:
        raise SpeechrqError(f"model buffers differ between ranks ({', '.join(d[:8] for d in digests)}): "
                            "the ranks do not share one config or feature_stats.json")


class MetricsLog:
    """``metrics.jsonl`` (one record per log interval) and TensorBoard scalars, rank 0 only."""

    def __init__(self, out_dir: Path, start_step: int, enabled: bool):
        self.enabled = enabled
        self.path = Path(out_dir) / METRICS_FILE
        self.tb = None
        if not enabled:
            return
        # a resumed run drops the records past its checkpoint, so the log is the trajectory
        kept = []
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line)["step"] <= start_step:
                        kept.append(line)
                except (ValueError, KeyError):
                    pass
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(out_dir) / "tensorboard"), purge_step=start_step + 1)
        except ImportError:
            log.warning("tensorboard is not installed: metrics go to metrics.jsonl only")

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            step = record["step"]
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tb.add_scalar(key.replace(".", "/"), value, step)
                elif isinstance(value, list) and value and isinstance(value[0], (int, float)):
                    self.tb.add_scalar(f"{key}/min", min(value), step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(run_dir: str | Path) -> list[dict]:
    """A run's ``metrics.jsonl`` records, oldest first."""
    path = Path(run_dir) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def seconds_per_step(records: list[dict], start: int = 0) -> float | None:
    """The run's measured seconds per step (wall clock) from its records: each window's ``s_per_step`` weighted by the
    steps it covers (since the previous record, or ``start``), so a short last window counts as few steps as it has."""
    total = steps = 0
    for r in records:
        if "s_per_step" in r:
            total += r["s_per_step"] * (r["step"] - start)
            steps += r["step"] - start
        start = r["step"]
    return total / steps if steps else None


# ---------------------------------------------------------------- non-finite steps: the data or the model?
def input_faults(x: torch.Tensor, lens: torch.Tensor, cuts, limit: float | None = None) -> list[str]:
    """``utterance (file)`` of each utterance of a batch whose model input ``x [B, T, ...]`` holds NaN or inf in a
    valid frame (or, with ``limit``, a magnitude above it). One batched check."""
    from ..checks import bad_utterances, describe_cut

    bad = bad_utterances(x.detach().float(), lens, limit)
    cuts = list(cuts)
    return [describe_cut(cuts[i]) for i in bad.nonzero().flatten().tolist()]


def buffer_faults(model: nn.Module) -> list[str]:
    """Names of the model's floating buffers (statistics, projections, codebooks) holding NaN or inf."""
    return [name for name, b in model.named_buffers() if b.is_floating_point() and not bool(torch.isfinite(b).all())]


class NonfiniteSteps:
    """Skipped (non-finite) optimizer steps in a row, and whether the data, its statistics or the model is to blame.

    After each step the trainer calls :meth:`good` or :meth:`skipped` (with the step's model inputs, checked
    only then); :attr:`stopping` says when to stop: ``limit`` skipped steps in a row, or at once when a
    buffer of the model (its log-Mel statistics, say) is non-finite, since no step can succeed then.
    :meth:`message` is the one-line stop message: it names the utterances or the buffer at fault, and
    advises a lower learning rate only when inputs and statistics were finite (the model diverged).
    """

    def __init__(self, limit: int):
        self.limit, self.run = limit, 0
        self.inputs: list[str] = []  # utterances with non-finite or absurd inputs during this run of skipped steps
        self.buffers: list[str] = []

    def good(self) -> None:
        self.run, self.inputs, self.buffers = 0, [], []

    def state_dict(self, ctx: dist.Context | None = None) -> dict:
        """The run of skipped steps a checkpoint continues (the same on every rank: finiteness is agreed)."""
        return {"run": self.run, "inputs": list(self.inputs), "buffers": list(self.buffers)}

    def load_state_dict(self, state: dict, ctx: dist.Context | None = None) -> None:
        self.run, self.inputs, self.buffers = int(state["run"]), list(state["inputs"]), list(state["buffers"])

    def skipped(self, model: nn.Module, batches, ctx: dist.Context, limit: float | None = None) -> str:
        """Record a skipped step; ``batches``: ``(x, lens, cuts)`` of its micro-batches on this rank (every rank calls
        this together: the step's finiteness is agreed). Returns the cause found, or "" (for the step's warning)."""
        self.run += 1
        found = [f for x, lens, cuts in batches for f in input_faults(x, lens, cuts, limit)]
        found = [f for part in dist.gather_objects(found, ctx) for f in part]
        self.inputs += [f for f in found if f not in self.inputs]
        self.buffers = buffer_faults(model)
        return self.cause()

    @property
    def stopping(self) -> bool:
        return self.run >= self.limit or bool(self.buffers)

    def cause(self) -> str:
        from ..checks import name_list

        if self.buffers:
            return f"the model's buffer {name_list(self.buffers)} holds NaN or inf"
        if self.inputs:
            return f"non-finite or absurd inputs from utterance {name_list(self.inputs)}"
        return ""

    def message(self, step: int, path) -> str:
        head = (f"the loss or gradient was non-finite for {self.run} steps in a row (up to step {step}); "
                f"the model is as of the last good update, saved in {path}. ")
        if self.buffers:
            return head + (f"The cause is the statistics, not the learning rate: {self.cause()} (from feature_stats.json or "
                           "the checkpoint it was loaded from); recompute them (`speechrq features stats`) and start a new run")
        if self.inputs:
            return head + (f"The cause is the data, not the learning rate: {self.cause()}; remove or fix those files "
                           "(`speechrq data import` checks every file)")
        return head + ("Its inputs and statistics were finite, so the model diverged: lower optim.lr "
                       "(or raise optim.warmup_steps, or set optim.clip_norm)")
