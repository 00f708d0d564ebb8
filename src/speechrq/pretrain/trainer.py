"""``speechrq pretrain``: the BEST-RQ / Latent-RQ training loop, on one process or many (torchrun + DDP).

Read :func:`train` top to bottom: set-up, then one loop of optimizer steps, each
made of ``accum_steps`` micro-batches (:func:`~speechrq.pretrain.step.micro_step`).
Everything that decides the trajectory is either in the config or saved in the
checkpoint:

- model init: ``train.seed``; quantizer: ``quantizer.seed`` (a buffer);
- data order: lhotse's sampler seeded with ``train.seed`` and the epoch; the
  position (epoch, batches consumed) of every rank is saved;
- masks: one generator per micro-batch, seeded with ``train.seed`` and the
  batch's index in the one-process sequence (:class:`~speechrq.data.batching.BatchStream`),
  so one process with ``accum_steps=2`` and two processes with ``accum_steps=1``
  see the same batches with the same masks and follow the same loss curve;
- RNG states of torch and Python for dropout, per rank;
- the stage, its start and the history of θ (:mod:`speechrq.pretrain.stages`);
- what the log reports over several steps (:mod:`speechrq.pretrain.meters`: the log
  window, the run's codeword usage, the window's measured step times, skipped steps
  in a row, the target cache's counts), so a resumed run writes the uninterrupted
  run's ``metrics.jsonl``; only ``s_per_step``, ``audio_s_per_s`` (wall clock) and
  ``cache_hit_rate`` (what the cache held) can differ.
"""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path

import torch
from torch import nn

from .. import distributed as dist
from ..checkpoint import load_model_state, prune_checkpoints, save_checkpoint, step_dir
from ..config import config_to_dict, dump_yaml
from ..data.batching import BatchStream
from ..data.corpus import load_cuts
from ..errors import SpeechrqError
from ..features import STATS_FILE, FeatureStats, LogMel, corpus_stats, samples_for_frames
from ..frames import SAMPLE_RATE
from ..io import atomic_write_text
from ..models.compiling import report_graphs
from ..models.conformer import SUBSAMPLING
from ..targets.cache import TargetCache
from ..targets.latent import stage_layers
from ..training import engine
from ..training.optim import lr_factor, make_optimizer, set_lr
from .config import RESUMABLE_CHANGES, PretrainConfig
from .meters import TrainingMeters
from .model import build_model
from .stages import MEL_STAGE, refresh, start_stage
from .step import mask_generator, micro_step

log = logging.getLogger(__name__)
THETA_INPUT = "targets.latent.input_normalizer."  # θ's own log-Mel statistics (a θ from another run)


def training_data(cfg: PretrainConfig, ctx: dist.Context, progress: bool = True):
    """The corpus's feature statistics (computed once, by rank 0, when missing) and its training cuts."""
    if ctx.is_main:
        corpus_stats(cfg.data.corpus, cfg.data.split, seed=cfg.train.seed, progress=progress)
    dist.barrier(ctx)
    stats = FeatureStats.load(Path(cfg.data.corpus) / STATS_FILE)
    cuts = load_cuts(cfg.data.corpus, cfg.data.split)
    n_all = len(cuts)
    cuts = cuts.filter(lambda c: c.duration <= cfg.data.max_utterance_duration).to_eager()
    if len(cuts) < n_all and ctx.is_main:
        log.warning("%d of %d utterances are longer than data.max_utterance_duration=%.1f s and are left out",
                    n_all - len(cuts), n_all, cfg.data.max_utterance_duration)
    if len(cuts) == 0:
        raise SpeechrqError(f"{cfg.data.corpus}: no {cfg.data.split} utterances to train on")
    return stats, cuts


def run_inputs(cfg: PretrainConfig) -> dict:
    """What a run reads besides its config, as fingerprints (:mod:`speechrq.identity`): the training manifests'
    content, the feature statistics, and the checkpoint or Hugging Face folder it branches from or takes θ from."""
    from ..checkpoint import MODEL_FILE
    from ..identity import corpus_fingerprint
    from ..io import file_fingerprint, folder_fingerprint

    corpus = Path(cfg.data.corpus)
    inputs = {"corpus": corpus_fingerprint(corpus, cfg.data.split), "feature_stats": file_fingerprint(corpus / STATS_FILE)}
    for key in ("init_from", "encoder"):
        if (source := getattr(cfg.targets, key)):
            weights = Path(source) / MODEL_FILE
            inputs[key] = file_fingerprint(weights) if weights.exists() else folder_fingerprint(source)
    return inputs


class CacheCounts:
    """The target cache's hits and misses since the run began, as a checkpoint keeps them (its entries are not kept:
    ``cache_hit_rate`` depends on what the cache held, and after a resume into a memory cache it is lower)."""

    def __init__(self, cache: TargetCache):
        self.cache = cache

    def state_dict(self, ctx=None) -> dict:
        return {"hits": self.cache.hits, "misses": self.cache.misses}

    def load_state_dict(self, state: dict, ctx=None) -> None:
        self.cache.hits, self.cache.misses = int(state["hits"]), int(state["misses"])


def restore(path: Path, meta: dict, model: nn.Module, optimizer, stream: BatchStream, seed: int, ctx: dist.Context,
            meters: dict | None = None) -> tuple[int, int, list]:
    """Load a checkpoint's weights, optimizer, data position, RNG states and ``meters`` (``{name: meter}``, see
    :func:`~speechrq.training.engine.restore_progress`); returns (step, stage start, history)."""
    state = load_model_state(path, ctx.device)
    for key in model.state_dict():
        if key.startswith(THETA_INPUT) and key not in state:  # saved before θ kept its own statistics: it read the student's
            state[key] = state["normalizer." + key[len(THETA_INPUT):]]
    from ..checkpoint import MODEL_FILE, load_weights

    load_weights(model, state, Path(path) / MODEL_FILE, "pre-training model")  # whole, or one line naming what is not
    history = meta.get("history", [dict(MEL_STAGE)])
    if model.targets.latent is not None and (layers := stage_layers(history)) is not None:
        model.targets.latent.set_layers(layers)  # the stage's layers (picked by layers: auto, or configured)
    step = engine.restore_progress(path, meta, optimizer, stream, seed, ctx, meters)
    return step, meta.get("stage_start", 0), history


def compile_pretraining(model: nn.Module, device_type: str) -> None:
    """``train.compile``: the student's blocks, and θ's where θ is a speechrq encoder (a Hugging Face θ stays eager)."""
    from ..models.compiling import FRAME_MULTIPLE, compile_module
    from ..models.conformer import SpeechEncoder

    compile_module(model.encoder.encoder, device_type, FRAME_MULTIPLE)
    if model.targets.latent is not None and isinstance(model.targets.latent.encoder, SpeechEncoder):
        compile_module(model.targets.latent.encoder.encoder, device_type, FRAME_MULTIPLE)


def train(cfg: PretrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Pre-train as ``cfg`` says; returns the last checkpoint's directory."""
    from tqdm import tqdm

    ctx = dist.init(cfg.train.device)
    out, dev = Path(cfg.out_dir), ctx.device
    engine.set_deterministic(cfg.train.deterministic)

    # ---- data, model, optimizer, and where this run starts
    stats, cuts = training_data(cfg, ctx, progress)
    inputs = run_inputs(cfg)
    resume_from, meta = engine.resume_point(PretrainConfig, cfg, resume, RESUMABLE_CHANGES, ctx, inputs)
    if resume_from is not None and meta["step"] >= cfg.optim.max_steps:  # finished, same config and inputs: reused untouched
        if ctx.is_main:
            print(f"{out}: already at step {meta['step']} of {cfg.optim.max_steps}, nothing to do")
        return resume_from
    d = cfg.data
    stream = BatchStream(cuts, d.max_duration, cfg.train.seed, d.num_buckets, d.num_workers, cfg.optim.accum_steps, ctx.world_size, ctx.rank,
                         min_samples=samples_for_frames(SUBSAMPLING))  # an utterance must fill one encoder frame
    logmel = LogMel().to(dev)
    model = build_model(cfg, stats).to(dev)
    optimizer = make_optimizer(model, cfg.optim)
    # what spans steps, saved with every checkpoint (a resumed run logs what the uninterrupted run logs): the log window
    # and the run's codeword usage, the window's measured step times (wall clock), the run of skipped steps
    meters = TrainingMeters(cfg.quantizer.num_codebooks, cfg.quantizer.codebook_size, dev)
    times = engine.StepTimes()
    nonfinite = engine.NonfiniteSteps(cfg.train.max_nonfinite)  # skipped steps in a row, and their cause
    cache = None
    if cfg.targets.cache != "off":
        cache = TargetCache(cfg.targets.cache, int(cfg.targets.cache_max_gb * 2**30), out / "target_cache" / f"rank{ctx.rank}")
    kept = {"meters": meters, "step_times": times, "nonfinite": nonfinite} | ({"cache": CacheCounts(cache)} if cache else {})
    if resume_from is not None:
        step, stage_start, history = restore(resume_from, meta, model, optimizer, stream, cfg.train.seed, ctx, kept)
    else:
        step, history = start_stage(model, cfg, cuts, logmel, ctx)
        stage_start = step
        optimizer = make_optimizer(model, cfg.optim)
        engine.seed_rank(cfg.train.seed, ctx.rank)
    engine.check_buffers_agree(model, ctx)
    if cfg.train.compile:
        compile_pretraining(model, dev.type)
    # buffers are fixed and identical on every rank (checked above), so DDP need not re-send them each step
    ddp = nn.parallel.DistributedDataParallel(model, broadcast_buffers=False) if ctx.distributed else model
    params = [p for p in model.parameters() if p.requires_grad]

    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", dump_yaml(cfg))
    metrics = engine.MetricsLog(out, step, ctx.is_main)
    if cache is not None:
        cache.set_source(model.targets.identity())

    def checkpoint(reason: str = "") -> Path:
        state = {"optimizer": optimizer.state_dict(), "rng": dist.gather_objects(engine.rng_state(dev), ctx),
                 "meters": engine.meters_state(kept, ctx)}
        info = {"kind": "speechrq-pretrain", "step": step, "world_size": ctx.world_size, "data": dist.gather_objects(stream.state(), ctx),
                "config": config_to_dict(cfg), "inputs": inputs, "reason": reason,
                "stage": int(model.targets.stage), "stage_start": stage_start, "history": history}
        path = step_dir(out / "checkpoints", step)
        if ctx.is_main:
            save_checkpoint(path, model.state_dict(), state, info)
            prune_checkpoints(out / "checkpoints", cfg.train.keep_last)
        dist.barrier(ctx)
        return path

    if step >= cfg.optim.max_steps and ctx.is_main:
        print(f"{out}: already at step {step} of {cfg.optim.max_steps}, nothing to do")
    bar = tqdm(total=cfg.optim.max_steps, initial=step, desc="pretrain", unit="step", disable=not (progress and ctx.is_main), dynamic_ncols=True)
    last = resume_from
    while step < cfg.optim.max_steps:
        times.start()  # wall clock, per step: a refresh counts in its step; logging and checkpoints do not
        if step in cfg.targets.refresh_at and step > stage_start:
            # a new stage: θ <- φ, fresh heads, optimizer and schedule; quantizers untouched
            stage = refresh(model, step, history, cfg, cuts, logmel, ctx)
            optimizer, stage_start = make_optimizer(model, cfg.optim), step
            if cache is not None:
                cache.set_source(model.targets.identity())
            meters.run_usage.reset()  # usage is per target source
            if ctx.is_main:
                bar.write(f"step {step}: stage {stage} begins; target encoder refreshed from the student, "
                          f"layers {history[-1]['layers']}")
        # reset: each stage warms up to the peak again (the paper); continue: one schedule over the whole run
        lr = cfg.optim.lr * lr_factor(step, cfg.optim, stage_start if cfg.targets.lr_after_refresh == "reset" else 0)
        set_lr(optimizer, lr)
        ddp.train()

        # ---- one optimizer step: accum_steps micro-batches, all-reduce on the last only
        step_inputs = []  # this step's log-Mel, kept for the diagnosis of a non-finite step
        for micro in range(cfg.optim.accum_steps):
            batch = next(stream)
            audio, audio_lens = batch["audio"].to(dev, non_blocking=True), batch["audio_lens"].to(dev)
            feats, lens = logmel(audio, audio_lens)
            step_inputs.append((feats, lens, batch["cuts"]))
            last_micro = micro == cfg.optim.accum_steps - 1
            with (ddp.no_sync() if ctx.distributed and not last_micro else contextlib.nullcontext()):
                outp = micro_step(model, ddp, feats, lens, audio, audio_lens, [c.id for c in batch["cuts"]],
                                  mask_generator(cfg.train.seed, stream.global_index()), cfg.train.precision, cache, cfg.optim.accum_steps)
            meters.add_micro(outp, int(batch["audio_lens"].sum()) / SAMPLE_RATE)  # host lengths: no device sync

        # ---- agree on the step across ranks, then update (or skip a non-finite one)
        loss = meters.step_loss(cfg.optim.accum_steps, ctx)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.clip_norm or float("inf"))
        finite = math.isfinite(loss) and bool(torch.isfinite(grad_norm))
        if finite:
            optimizer.step()
            nonfinite.good()
        else:
            # the model's input is the normalised log-Mel: non-finite, or past 1e3 (statistics that do not fit the data)
            with torch.no_grad():
                cause = nonfinite.skipped(model, [(model.normalizer(f, n), n, c) for f, n, c in step_inputs], ctx, limit=1e3)
            if ctx.is_main:
                log.warning("step %d: non-finite %s; update skipped (%d in a row)%s", step, "loss" if not math.isfinite(loss) else "gradient",
                            nonfinite.run, f"; cause: {cause}" if cause else "")
        del step_inputs
        optimizer.zero_grad(set_to_none=True)
        step += 1
        meters.end_step(loss, float(grad_norm) if finite else float("nan"), skipped=not finite)
        times.stop()
        bar.update(1)

        stopping = nonfinite.stopping
        if step % cfg.train.log_every == 0 or step == cfg.optim.max_steps or stopping:
            extra = {"stage": int(model.targets.stage)} | ({"cache_hit_rate": cache.hit_rate} if cache is not None else {})
            if model.targets.uses_latent:
                extra["layers"] = list(model.targets.latent.layers)  # the stage's target layers (picked, with layers: auto)
            record = meters.record(step, lr, ctx, times.take()[0], extra)
            metrics.write(record)
            bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['acc']:.3f}", used=f"{record['usage_run.used_min']:.2f}",
                            audio_s_per_s=f"{record['audio_s_per_s']:.0f}")
        if stopping:
            path = checkpoint(reason="non-finite")
            bar.close()
            metrics.close()
            raise SpeechrqError(nonfinite.message(step, path))
        if step % cfg.train.checkpoint_every == 0 or step == cfg.optim.max_steps:
            last = checkpoint()
    bar.close()
    metrics.close()
    if cfg.train.compile and ctx.is_main:
        report_graphs(out)
    if ctx.is_main and stream.dataset.skipped:
        log.warning("%d utterances could not be loaded and were skipped (see warnings above)", stream.dataset.skipped)
    return last
