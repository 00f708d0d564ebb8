"""``speechrq pretrain``: the BEST-RQ training loop, on one process or many (torchrun + DDP).

Read :func:`train` top to bottom: set-up, then one loop of optimizer steps, each
made of ``accum_steps`` micro-batches. Everything that decides the trajectory
is either in the config or saved in the checkpoint:

- model init: ``train.seed``; quantizer: ``quantizer.seed`` (a buffer);
- data order: lhotse's sampler seeded with ``train.seed`` and the epoch; the
  position (epoch, batches consumed) of every rank is saved;
- masks: one generator per micro-batch, seeded with ``train.seed`` and the
  batch's index in the one-process sequence (:class:`BatchStream`), so one
  process with ``accum_steps=2`` and two processes with ``accum_steps=1`` see the
  same batches with the same masks and follow the same loss curve;
- RNG states of torch and Python for dropout, per rank.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from pathlib import Path

import torch
from torch import nn

from .. import distributed as dist
from ..checkpoint import (latest_checkpoint, list_checkpoints, load_model_state, load_trainer_state, prune_checkpoints,
                          read_meta, save_checkpoint, step_dir)
from ..config import config_to_dict, diff_configs, dump_yaml
from ..errors import SpeechrqError
from ..features import FeatureNormalizer, FeatureStats, LogMel, SAMPLE_RATE
from ..io import atomic_write_text
from ..models.conformer import speech_encoder
from ..targets.random_projection import RandomProjectionQuantizer
from .config import RESUMABLE_CHANGES, PretrainConfig
from .model import Masking, MaskedPredictionModel, MelTargets
from .objective import CodebookUsage, PredictionHeads
from .optim import lr_factor, make_optimizer, set_lr

log = logging.getLogger(__name__)
MASK_SEED_STRIDE = 1_000_003  # separates the per-batch mask streams of different train.seed values


# --------------------------------------------------------------------------- building blocks


def build_model(cfg: PretrainConfig, stats: FeatureStats | None = None) -> MaskedPredictionModel:
    """The model of ``cfg``, initialised from ``train.seed`` (same on every rank)."""
    torch.manual_seed(cfg.train.seed)
    overrides = {} if cfg.model.dropout is None else {"dropout": cfg.model.dropout}
    encoder = speech_encoder(cfg.model.preset, **overrides)
    q = cfg.quantizer
    quantizer = RandomProjectionQuantizer(encoder.config.input_dim * 4, q.num_codebooks, q.codebook_size, q.codebook_dim, seed=q.seed)
    normalizer = FeatureNormalizer.from_stats(stats) if stats is not None else FeatureNormalizer(encoder.config.input_dim)
    heads = PredictionHeads(encoder.config.dim, q.num_codebooks, q.codebook_size)
    m = cfg.masking
    return MaskedPredictionModel(normalizer, encoder, MelTargets(quantizer), heads, Masking(m.prob, m.span, m.mode))


def load_feature_stats(cfg: PretrainConfig, ctx: dist.Context) -> FeatureStats:
    """The corpus's ``feature_stats.json``, computed once (by rank 0) when missing."""
    from ..data.corpus import load_cuts
    from ..features import compute_stats

    path = Path(cfg.data.corpus) / "feature_stats.json"
    if not path.exists() and ctx.is_main:
        log.warning("%s missing: computing global log-Mel statistics from the %s split", path, cfg.data.split)
        compute_stats(load_cuts(cfg.data.corpus, cfg.data.split), seed=cfg.train.seed).save(path)
    dist.barrier(ctx)
    return FeatureStats.load(path)


class BatchStream:
    """This rank's endless stream of micro-batches, epoch after epoch, with a saveable position.

    An optimizer step consumes ``world_size * accum_steps`` micro-batches in all.
    lhotse's sampler is asked for exactly that layout: slot ``rank * accum + a``
    of a group of ``world_size * accum``, so the micro-batches of one step come
    from one duration bucket, and any split of the same group over ranks and
    accumulation (2 ranks x 1, 1 rank x 2) sees the same batches.
    """

    def __init__(self, cuts, cfg: PretrainConfig, ctx: dist.Context):
        from ..data.batching import AudioBatches, make_sampler

        self.accum, self.group = cfg.optim.accum_steps, ctx.world_size * cfg.optim.accum_steps
        self.first_slot = ctx.rank * self.accum
        self.samplers = [make_sampler(cuts, cfg.data.max_duration, shuffle=True, seed=cfg.train.seed, num_buckets=cfg.data.num_buckets,
                                      world_size=self.group, rank=self.first_slot + a) for a in range(self.accum)]
        self.dataset = AudioBatches()
        self.num_workers = cfg.data.num_workers
        self.epoch = 0
        self.consumed = 0  # micro-batches taken in this epoch
        self.total = 0  # micro-batches taken since the run began (across epochs)
        self._it = None

    def state(self) -> dict:
        return {"epoch": self.epoch, "consumed": self.consumed, "total": self.total}

    def restore(self, state: dict) -> None:
        self.epoch, self.consumed, self.total = int(state["epoch"]), int(state["consumed"]), int(state["total"])
        self._it = None

    def global_index(self) -> int:
        """The last micro-batch's index in the one-process sequence (seeds its mask)."""
        step, a = divmod(self.total - 1, self.accum)
        return step * self.group + self.first_slot + a

    def _start_epoch(self) -> None:
        for s in self.samplers:
            s.set_epoch(self.epoch)
        skip_groups, samplers = self.consumed // self.accum, self.samplers

        class Slots(torch.utils.data.Sampler):  # this rank's slots in turn, minus the groups already trained on
            def __iter__(self):
                # lhotse samplers are their own iterators and restart on every iter():
                # call iter() once, then only next()
                its = [iter(s) for s in samplers]
                for _ in range(skip_groups):
                    for it in its:
                        next(it, None)
                while True:
                    batches = [next(it, None) for it in its]
                    if any(b is None for b in batches):
                        return
                    yield from batches

        self._it = iter(torch.utils.data.DataLoader(self.dataset, sampler=Slots(), batch_size=None, num_workers=self.num_workers))

    def __next__(self) -> dict:
        for _ in range(2):
            if self._it is None:
                self._start_epoch()
            try:
                batch = next(self._it)
            except StopIteration:
                self.epoch, self.consumed, self._it = self.epoch + 1, 0, None
                continue
            self.consumed += 1
            self.total += 1
            return batch
        raise SpeechrqError("the training split yields no batches (every utterance was skipped?)")


def check_buffers_agree(model: nn.Module, ctx: dist.Context) -> None:
    """Every rank must hold the same fixed buffers (statistics, projections, codebooks)."""
    if not ctx.distributed:
        return
    import hashlib

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


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def compute_dtype(cfg: PretrainConfig, device: torch.device) -> torch.dtype:
    """bf16 (autocast) where asked, or by default on CUDA; float32 otherwise."""
    bf16 = cfg.train.precision == "bf16" or (cfg.train.precision == "auto" and device.type == "cuda")
    return torch.bfloat16 if bf16 else torch.float32


def autocast(cfg: PretrainConfig, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=compute_dtype(cfg, device) == torch.bfloat16)


class MetricsLog:
    """``metrics.jsonl`` (one record per log interval) and TensorBoard scalars, rank 0 only."""

    def __init__(self, out_dir: Path, start_step: int, enabled: bool):
        self.enabled = enabled
        self.path = out_dir / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        import json

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

            self.tb = SummaryWriter(str(out_dir / "tensorboard"), purge_step=start_step + 1)
        except ImportError:
            log.warning("tensorboard is not installed: metrics go to metrics.jsonl only")

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        import json

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
    import json

    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


# --------------------------------------------------------------------------- the loop


def train(cfg: PretrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Pre-train as ``cfg`` says; returns the last checkpoint's directory."""
    from tqdm import tqdm

    from ..data.corpus import load_cuts

    ctx = dist.init(cfg.train.device)
    out = Path(cfg.out_dir)
    ckpt_root = out / "checkpoints"
    if cfg.train.deterministic:
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False

    # ---- where does this run start?
    resume_from = latest_checkpoint(ckpt_root) if resume else None
    if resume and resume_from is None and ctx.is_main:
        log.warning("%s: nothing to resume, starting a new run", ckpt_root)
    if not resume and list_checkpoints(ckpt_root):
        raise SpeechrqError(f"{out}: already holds checkpoints; pass --resume to continue that run, or choose another out_dir")
    if resume_from is not None:
        meta = read_meta(resume_from)
        changed = diff_configs(meta["config"], config_to_dict(cfg))
        if set(changed) - RESUMABLE_CHANGES:
            raise SpeechrqError(f"{resume_from}: the config differs from the run's in {', '.join(sorted(set(changed) - RESUMABLE_CHANGES))}; "
                                "a resumed run must keep them (start a new out_dir instead)")
        if "optim.max_steps" in changed and ctx.is_main:
            log.warning("optim.max_steps changed from %s to %s: the learning-rate schedule changes from here on",
                        meta["config"]["optim"]["max_steps"], cfg.optim.max_steps)

    # ---- data, model, optimizer
    stats = load_feature_stats(cfg, ctx)
    cuts = load_cuts(cfg.data.corpus, cfg.data.split)
    n_all = len(cuts)
    cuts = cuts.filter(lambda c: c.duration <= cfg.data.max_utterance_duration).to_eager()
    if len(cuts) < n_all and ctx.is_main:
        log.warning("%d of %d utterances are longer than data.max_utterance_duration=%.1f s and are left out",
                    n_all - len(cuts), n_all, cfg.data.max_utterance_duration)
    if len(cuts) == 0:
        raise SpeechrqError(f"{cfg.data.corpus}: no {cfg.data.split} utterances to train on")
    stream = BatchStream(cuts, cfg, ctx)
    logmel = LogMel().to(ctx.device)
    model = build_model(cfg, stats).to(ctx.device)
    optimizer = make_optimizer(model, cfg.optim)
    step, nonfinite_run = 0, 0
    if resume_from is not None:
        model.load_state_dict(load_model_state(resume_from, ctx.device))
        trainer_state = load_trainer_state(resume_from)
        optimizer.load_state_dict(trainer_state["optimizer"])
        step = meta["step"]
        if meta["world_size"] == ctx.world_size:
            stream.restore(meta["data"][ctx.rank])
            _set_rng_state(trainer_state["rng"][ctx.rank], ctx.device)
        else:
            log.warning("resuming on %d ranks a run saved on %d: data order and RNG streams restart", ctx.world_size, meta["world_size"])
            torch.manual_seed(cfg.train.seed + step + ctx.rank)
    else:
        torch.manual_seed(cfg.train.seed + 1000 * (ctx.rank + 1))  # dropout differs per rank, reproducibly
        random.seed(cfg.train.seed + ctx.rank)
    check_buffers_agree(model, ctx)
    # buffers are fixed and identical on every rank (checked above), so DDP need not re-send them each step
    ddp = nn.parallel.DistributedDataParallel(model, broadcast_buffers=False) if ctx.distributed else model
    params = [p for p in model.parameters() if p.requires_grad]

    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", dump_yaml(cfg))
    metrics = MetricsLog(out, step, ctx.is_main)
    q = cfg.quantizer
    usage = CodebookUsage(q.num_codebooks, q.codebook_size, ctx.device)  # this log window, all ranks
    run_usage = CodebookUsage(q.num_codebooks, q.codebook_size, ctx.device)  # since this process started
    window = _Window(q.num_codebooks, ctx.device)

    def checkpoint(reason: str = "") -> Path:
        rng = dist.gather_objects(_rng_state(ctx.device), ctx)
        data = dist.gather_objects(stream.state(), ctx)
        path = step_dir(ckpt_root, step)
        if ctx.is_main:
            save_checkpoint(path, model.state_dict(), {"optimizer": optimizer.state_dict(), "rng": rng}, {
                "kind": "speechrq-pretrain", "step": step, "world_size": ctx.world_size, "data": data,
                "config": config_to_dict(cfg), "reason": reason,
            })
            prune_checkpoints(ckpt_root, cfg.train.keep_last)
        dist.barrier(ctx)
        return path

    if step >= cfg.optim.max_steps and ctx.is_main:
        print(f"{out}: already at step {step} of {cfg.optim.max_steps}, nothing to do")
    bar = tqdm(total=cfg.optim.max_steps, initial=step, desc="pretrain", unit="step", disable=not (progress and ctx.is_main), dynamic_ncols=True)
    last = resume_from
    t_window = time.perf_counter()
    while step < cfg.optim.max_steps:
        lr = cfg.optim.lr * lr_factor(step, cfg.optim)
        set_lr(optimizer, lr)
        ddp.train()

        # ---- one optimizer step: accum_steps micro-batches, all-reduce on the last only
        for micro in range(cfg.optim.accum_steps):
            batch = next(stream)
            gen = torch.Generator().manual_seed(cfg.train.seed * MASK_SEED_STRIDE + stream.global_index())
            audio, audio_lens = batch["audio"].to(ctx.device, non_blocking=True), batch["audio_lens"].to(ctx.device)
            feats, lens = logmel(audio, audio_lens)
            last_micro = micro == cfg.optim.accum_steps - 1
            sync = contextlib.nullcontext() if last_micro or not ctx.distributed else ddp.no_sync()
            with sync:
                with autocast(cfg, ctx.device):
                    outp = ddp(feats, lens, generator=gen)
                (outp.loss / cfg.optim.accum_steps).backward()
            valid = ~_pad(outp.frame_lens, outp.targets.shape[1])
            usage.update(outp.targets[valid])
            window.add_micro(outp, valid, float(audio_lens.sum()) / SAMPLE_RATE)

        # ---- agree on the step across ranks, then update (or skip a non-finite one)
        loss = window.step_loss(cfg.optim.accum_steps, ctx)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.clip_norm or float("inf"))
        finite = math.isfinite(loss) and bool(torch.isfinite(grad_norm))
        if finite:
            optimizer.step()
            nonfinite_run = 0
        else:
            nonfinite_run += 1
            window.skipped += 1
            if ctx.is_main:
                log.warning("step %d: non-finite %s; update skipped (%d in a row)", step, "loss" if not math.isfinite(loss) else "gradient", nonfinite_run)
        optimizer.zero_grad(set_to_none=True)
        step += 1
        window.end_step(loss, float(grad_norm) if finite else float("nan"))
        bar.update(1)

        if step % cfg.train.log_every == 0 or step == cfg.optim.max_steps or nonfinite_run >= cfg.train.max_nonfinite:
            dist.all_reduce_sum(usage.counts, ctx)  # the window's targets of all ranks
            run_usage.counts += usage.counts
            elapsed = time.perf_counter() - t_window
            record = window.record(step, lr, ctx, elapsed) | {f"usage.{k}": v for k, v in usage.summary().items()}
            record["usage.used_min"] = min(record["usage.used"])
            # over a window of a few steps most codewords cannot occur yet; the run's share is the collapse meter
            record["usage_run.used"] = run_usage.summary()["used"]
            record["usage_run.used_min"] = min(record["usage_run.used"])
            metrics.write(record)
            bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['acc']:.3f}", used=f"{record['usage_run.used_min']:.2f}",
                            audio_s_per_s=f"{record['audio_s_per_s']:.0f}")
            usage.reset()
            window.reset()
            t_window = time.perf_counter()
        if nonfinite_run >= cfg.train.max_nonfinite:
            path = checkpoint(reason="non-finite")
            bar.close()
            metrics.close()
            raise SpeechrqError(f"the loss or gradient was non-finite for {nonfinite_run} steps in a row (up to step {step}); "
                                f"the model is as of the last good update, saved in {path}. Lower optim.lr or check the data")
        if step % cfg.train.checkpoint_every == 0 or step == cfg.optim.max_steps:
            last = checkpoint()
    bar.close()
    metrics.close()
    if ctx.is_main and stream.dataset.skipped:
        log.warning("%d utterances could not be loaded and were skipped (see warnings above)", stream.dataset.skipped)
    return last


def _pad(lengths: torch.Tensor, t: int) -> torch.Tensor:
    from ..features import lengths_to_padding_mask

    return lengths_to_padding_mask(lengths, t)


class _Window:
    """Sums over a logging window; reduced over ranks where the numbers are reported."""

    def __init__(self, num_codebooks: int, device: torch.device):
        self.device = device
        self.micro_loss = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros(num_codebooks, dtype=torch.float64, device=device)
        # masked frames, valid frames, audio seconds
        self.counts = torch.zeros(3, dtype=torch.float64, device=device)
        self.reset()

    def reset(self) -> None:
        self.correct.zero_()
        self.counts.zero_()
        self.losses, self.grad_norms, self.skipped = [], [], 0

    def add_micro(self, outp, valid: torch.Tensor, audio_seconds: float) -> None:
        self.micro_loss += outp.loss.detach().double()
        self.correct += outp.result.correct.double()
        self.counts += torch.tensor([outp.result.num_masked, float(valid.sum()), audio_seconds], dtype=torch.float64, device=self.device)

    def step_loss(self, accum: int, ctx: dist.Context) -> float:
        """This step's loss: the mean over micro-batches and ranks."""
        loss = dist.all_reduce_sum(self.micro_loss, ctx).item() / (accum * ctx.world_size)
        self.micro_loss.zero_()
        return loss

    def end_step(self, loss: float, grad_norm: float) -> None:
        self.losses.append(loss)
        self.grad_norms.append(grad_norm)

    def record(self, step: int, lr: float, ctx: dist.Context, elapsed: float) -> dict:
        sums = dist.all_reduce_sum(torch.cat([self.correct, self.counts]), ctx).tolist()
        correct, (masked, valid, audio_s) = sums[:-3], sums[-3:]
        acc = [c / max(masked, 1) for c in correct]
        finite = [x for x in self.losses if math.isfinite(x)]
        return {
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
        }
