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
from ..config import config_from_dict, config_to_dict, diff_configs, dump_yaml
from ..errors import SpeechrqError
from ..features import SAMPLE_RATE, FeatureNormalizer, FeatureStats, LogMel, lengths_to_padding_mask
from ..io import atomic_write_text
from ..models.conformer import speech_encoder
from ..targets.cache import TargetCache
from ..targets.latent import LatentTargets, MelTargets, StagedTargets
from ..targets.random_projection import RandomProjectionQuantizer
from .config import RESUMABLE_CHANGES, PretrainConfig
from .model import Masking, MaskedPredictionModel
from .objective import CodebookUsage, PredictionHeads
from .optim import lr_factor, make_optimizer, set_lr

log = logging.getLogger(__name__)
MASK_SEED_STRIDE = 1_000_003  # separates the per-batch mask streams of different train.seed values


# --------------------------------------------------------------------------- building blocks


def build_model(cfg: PretrainConfig, stats: FeatureStats | None = None) -> MaskedPredictionModel:
    """The model of ``cfg``, initialised from ``train.seed`` (same on every rank).

    With Latent-RQ targets the model also holds θ (its weights are set at the
    first refresh or from ``targets.init_from``/``targets.encoder``) and the
    per-layer projections and codebooks, made from ``quantizer.seed``. θ is built
    under a forked RNG, so stage 0 starts exactly as a plain BEST-RQ run would.
    """
    torch.manual_seed(cfg.train.seed)
    overrides = {} if cfg.model.dropout is None else {"dropout": cfg.model.dropout}
    encoder = speech_encoder(cfg.model.preset, **overrides)
    q = cfg.quantizer
    quantizer = RandomProjectionQuantizer(encoder.config.input_dim * 4, q.num_codebooks, q.codebook_size, q.codebook_dim, seed=q.seed)
    normalizer = FeatureNormalizer.from_stats(stats) if stats is not None else FeatureNormalizer(encoder.config.input_dim)
    heads = PredictionHeads(encoder.config.dim, q.num_codebooks, q.codebook_size)
    latent = None
    if cfg.targets.latent:
        from ..targets.pretrained import PretrainedTargetEncoder, is_pretrained_folder

        if cfg.targets.encoder and is_pretrained_folder(cfg.targets.encoder):
            theta = PretrainedTargetEncoder(cfg.targets.encoder, depth=max(cfg.target_layers()) + 1)
        else:
            with torch.random.fork_rng(devices=[]):
                theta = speech_encoder(cfg.model.preset, **overrides)
        latent = LatentTargets(theta, cfg.target_layers(), q.num_codebooks, q.codebook_size, q.codebook_dim, seed=q.seed)
    m = cfg.masking
    return MaskedPredictionModel(normalizer, encoder, StagedTargets(MelTargets(quantizer), latent), heads, Masking(m.prob, m.span, m.mode))


def encoder_state(checkpoint: str | Path, preset: str) -> dict[str, torch.Tensor]:
    """The student encoder's weights in a speechrq checkpoint (checked to be of ``preset``)."""
    meta = read_meta(checkpoint)
    theirs = meta.get("config", {}).get("model", {}).get("preset")
    if theirs != preset:
        raise SpeechrqError(f"{checkpoint}: holds a {theirs!r} encoder, this run's is {preset!r}")
    state = load_model_state(checkpoint)
    return {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}


def stats_batches(cuts, cfg: PretrainConfig, logmel: LogMel, model: MaskedPredictionModel, device: torch.device):
    """The fixed utterance sample whose θ features set the target layers' statistics.

    The same on every rank and at every refresh: ``targets.stats_utterances``
    utterances drawn with ``train.seed``, in order.
    """
    from ..data.batching import make_loader

    sample = cuts.shuffle(rng=random.Random(cfg.train.seed)).subset(first=min(cfg.targets.stats_utterances, len(cuts)))
    for batch in make_loader(sample, cfg.data.max_duration, shuffle=False, num_buckets=1):
        audio, audio_lens = batch["audio"].to(device), batch["audio_lens"].to(device)
        feats, lens = logmel(audio, audio_lens)
        t_in = feats.shape[1] // 4 * 4
        yield model.normalizer(feats[:, :t_in], lens.clamp(max=t_in)), lens.clamp(max=t_in), audio, audio_lens


HEADS_SEED = 7919  # offsets the generator that re-initialises the heads at each stage


def set_target_encoder(model: MaskedPredictionModel, encoder_weights: dict | None, stage: int, cuts, cfg: PretrainConfig, logmel: LogMel,
                       ctx: dist.Context) -> None:
    """Start stage ``stage``: θ takes ``encoder_weights``, its layer statistics are refit,
    the heads are re-initialised (seeded by the stage); projections and codebooks stay."""
    latent = model.targets.latent
    if encoder_weights is not None:  # None: θ keeps its own weights (a pretrained folder)
        latent.encoder.load_state_dict(encoder_weights)
    latent.freeze()
    with torch.no_grad():
        latent.fit_normalizers(stats_batches(cuts, cfg, logmel, model, ctx.device))
    for buf in latent.normalizers.buffers():  # identical on every rank even where kernels are not bitwise reproducible
        dist.broadcast_tensor(buf, ctx)
    model.targets.stage.fill_(stage)
    model.heads.reset_parameters(torch.Generator().manual_seed(cfg.train.seed * MASK_SEED_STRIDE + HEADS_SEED + stage))


def branch_from(checkpoint: str, model: MaskedPredictionModel, cfg: PretrainConfig) -> tuple[int, list]:
    """Load a stage-k checkpoint into the student for stage k+1; returns its step and the new history.

    Everything but the heads, θ and θ's statistics is taken from the checkpoint,
    so the quantizers are exactly the parent run's.
    """
    meta = read_meta(checkpoint)
    parent = meta.get("config", {})
    if parent.get("model", {}).get("preset") != cfg.model.preset:
        raise SpeechrqError(f"{checkpoint}: a {parent.get('model', {}).get('preset')!r} model; this run's preset is {cfg.model.preset!r}")
    if parent.get("quantizer") != config_to_dict(cfg)["quantizer"]:
        raise SpeechrqError(f"{checkpoint}: quantizer settings {parent.get('quantizer')} differ from this run's; "
                            "a branch must keep the parent's projections and codebooks")
    own = model.state_dict()
    skip = ("heads.", "targets.latent.encoder.", "targets.latent.normalizers.", "targets.stage")
    state = {k: v for k, v in load_model_state(checkpoint).items() if k in own and not k.startswith(skip)}
    model.load_state_dict(state, strict=False)
    history = meta.get("history") or [{"stage": 0, "start": 0, "targets": "mel"}]
    stage = int(meta.get("stage", 0)) + 1
    step = int(meta["step"])
    if step >= cfg.optim.max_steps:
        raise SpeechrqError(f"{checkpoint}: is at step {step}, not before this run's optim.max_steps={cfg.optim.max_steps}")
    return step, [*history, {"stage": stage, "start": step, "targets": f"{BRANCHED_FROM}{checkpoint}"}]


BRANCHED_FROM = "branched from "  # history entry of a --init-from branch: BRANCHED_FROM + the parent checkpoint


def branch_parent(meta: dict) -> str | None:
    """The checkpoint a run was branched from (``--init-from``), read from a checkpoint's history."""
    for entry in reversed(meta.get("history") or []):
        if str(entry.get("targets", "")).startswith(BRANCHED_FROM):
            return entry["targets"][len(BRANCHED_FROM):]
    return None


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
        layers = cfg.target_layers()
        per = len(acc) // len(layers)
        for i, layer in enumerate(layers):
            sl = slice(i * per, (i + 1) * per)
            lines.append(f"  target layer {layer:>2}: accuracy {sum(acc[sl]) / per:.4f}, codewords used {sum(used[sl]) / per:.2f}")
    return "\n".join(lines)


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
        # the saved config through today's dataclasses: keys added since then take their defaults
        saved = config_to_dict(config_from_dict(PretrainConfig, meta["config"], source=str(resume_from)))
        changed = diff_configs(saved, config_to_dict(cfg))
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
    stage_start, history = 0, [{"stage": 0, "start": 0, "targets": "mel"}]
    if resume_from is not None:
        model.load_state_dict(load_model_state(resume_from, ctx.device))
        trainer_state = load_trainer_state(resume_from)
        optimizer.load_state_dict(trainer_state["optimizer"])
        step, stage_start, history = meta["step"], meta.get("stage_start", 0), meta.get("history", history)
        if meta["world_size"] == ctx.world_size:
            stream.restore(meta["data"][ctx.rank])
            _set_rng_state(trainer_state["rng"][ctx.rank], ctx.device)
        else:
            log.warning("resuming on %d ranks a run saved on %d: data order and RNG streams restart", ctx.world_size, meta["world_size"])
            torch.manual_seed(cfg.train.seed + step + ctx.rank)
    else:
        if cfg.targets.init_from:  # Figure 2: branch stage k+1 from a checkpoint of stage k
            step, history = branch_from(cfg.targets.init_from, model, cfg)
            stage_start = step
            set_target_encoder(model, model.encoder.state_dict(), history[-1]["stage"], cuts, cfg, logmel, ctx)
        elif cfg.targets.encoder:  # θ fixed from another run, from step 0
            history = [{"stage": 1, "start": 0, "targets": f"encoder {cfg.targets.encoder}"}]
            from ..targets.pretrained import is_pretrained_folder

            weights = None if is_pretrained_folder(cfg.targets.encoder) else encoder_state(cfg.targets.encoder, cfg.model.preset)
            set_target_encoder(model, weights, 1, cuts, cfg, logmel, ctx)
        optimizer = make_optimizer(model, cfg.optim)
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
    cache = None
    if cfg.targets.cache != "off":
        cache = TargetCache(cfg.targets.cache, int(cfg.targets.cache_max_gb * 2**30), out / "target_cache" / f"rank{ctx.rank}")
        cache.set_stage(int(model.targets.stage))

    def checkpoint(reason: str = "") -> Path:
        rng = dist.gather_objects(_rng_state(ctx.device), ctx)
        data = dist.gather_objects(stream.state(), ctx)
        path = step_dir(ckpt_root, step)
        if ctx.is_main:
            save_checkpoint(path, model.state_dict(), {"optimizer": optimizer.state_dict(), "rng": rng}, {
                "kind": "speechrq-pretrain", "step": step, "world_size": ctx.world_size, "data": data,
                "config": config_to_dict(cfg), "reason": reason,
                "stage": int(model.targets.stage), "stage_start": stage_start, "history": history,
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
        if step in cfg.targets.refresh_at and step > stage_start:
            # a new stage: θ <- φ, fresh heads, optimizer and schedule; quantizers untouched
            stage = int(model.targets.stage) + 1
            set_target_encoder(model, model.encoder.state_dict(), stage, cuts, cfg, logmel, ctx)
            optimizer = make_optimizer(model, cfg.optim)
            stage_start = step
            history.append({"stage": stage, "start": step, "targets": f"student at step {step}"})
            if cache is not None:
                cache.set_stage(stage)
            run_usage.reset()  # usage is per target source
            if ctx.is_main:
                bar.write(f"step {step}: stage {stage} begins; target encoder refreshed from the student")
        lr = cfg.optim.lr * lr_factor(step, cfg.optim, stage_start)
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
            cached = None
            if cache is not None and model.targets.uses_latent:
                ids = [c.id for c in batch["cuts"]]
                t_in = feats.shape[1] // 4 * 4
                cached = cache.lookup(ids, lens.clamp(max=t_in) // 4, t_in // 4, ctx.device)
            with sync:
                with autocast(cfg, ctx.device):
                    outp = ddp(feats, lens, generator=gen, targets=cached, audio=audio, audio_lens=audio_lens)
                (outp.loss / cfg.optim.accum_steps).backward()
            if cache is not None and model.targets.uses_latent and cached is None:
                cache.store(ids, outp.targets, outp.frame_lens)
            valid = ~lengths_to_padding_mask(outp.frame_lens, outp.targets.shape[1])
            usage.update(outp.targets[valid])
            window.add_micro(outp, valid, int(batch["audio_lens"].sum()) / SAMPLE_RATE)  # host lengths: no device sync

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
            record["stage"] = int(model.targets.stage)
            if cache is not None:
                record["cache_hit_rate"] = cache.hits / max(1, cache.hits + cache.misses)
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
        self.counts[0] += outp.result.num_masked
        self.counts[1] += valid.sum()
        self.counts[2] += audio_seconds

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
