"""``speechrq asr train CONFIG``: the discrete-unit ASR training loop, one process or many with torchrun (DDP).

Read top to bottom: data and tokens, the model, where the run starts, then the loop
(learning rate, ``accum_steps`` micro-batches, one AdamW update, logging, checkpoints).
It shares the pre-training engine (``training/``: optimizer, schedule, RNG capture,
metrics log), its batch stream (``data.batching.BatchStream``: the data position is
saved) and ``checkpoint.py``, so a run killed at any moment and resumed with
``--resume`` continues with the same batches, masks and dropout: the same losses as
the uninterrupted run, and the same ``metrics.jsonl`` (the log window's sums and step
times are kept in the checkpoint; records past it are dropped). Every field but
``s_per_step`` (wall clock: the window's measured step times over its steps) is then the
uninterrupted run's. Time masks are drawn from a generator seeded by the
micro-batch's global index, like pre-training's span masks.

A checkpoint is self-contained: the output tokenizer (and the unit BPE for ``input: bpe``)
are stored as byte tensors beside the weights, and ``meta.json`` says how to rebuild the
model and where its inputs come from (the units directory, the encoder and layer).
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
from ..checks import describe_cut, name_list, require_finite
from ..config import config_to_dict, dump_yaml
from ..data.batching import BatchStream, refuse_short_cuts
from ..errors import SpeechrqError
from ..io import atomic_write_text
from ..text import BPETokenizer, normalize_text
from ..training import engine
from ..training.optim import lr_factor, make_optimizer, set_lr
from .config import ASRConfig
from .data import ASRData
from .model import ASR_PRESETS, DiscreteASR, asr_model

log = logging.getLogger(__name__)
TOKENIZER_KEY, UNIT_BPE_KEY = "tokenizer.sentencepiece", "unit_bpe.sentencepiece"
RESUMABLE_CHANGES = frozenset({"optim.max_steps", "train.log_every", "train.compile", "train.checkpoint_every", "train.keep_last", "data.num_workers",
                     "decode.beam", "decode.ctc_weight", "decode.mode",
                     # paths: a run or its units may be moved or named from another directory; their content is checked
                     # by the fingerprints in meta.json's inputs
                     "out_dir", "data.units"})
MASK_SEED_STRIDE = 1_000_003
WINDOW_SUMS = 7  # loss, ctc, attention, correct, tokens, CTC-infeasible utterances, utterances


class LogWindow:
    """The steps since the last record: each step's sums (already reduced over ranks, so the same on every rank).
    Kept in the checkpoint, so a record whose window spans a resume averages the same steps as the uninterrupted run's."""

    def __init__(self):
        self.sums: list[torch.Tensor] = []

    def state_dict(self, ctx=None) -> dict:
        return {"sums": torch.stack(self.sums) if self.sums else torch.zeros(0, WINDOW_SUMS, dtype=torch.float64)}

    def load_state_dict(self, state: dict, ctx=None) -> None:
        self.sums = list(state["sums"].to(torch.float64).unbind(0))


def model_spec(cfg: ASRConfig, data: ASRData, vocab: int) -> dict:
    """Everything needed to rebuild the model and its inputs without the YAML (saved in meta.json)."""
    return {"input": data.kind, "vocab": vocab, "preset": cfg.model.preset, "stream_weighting": cfg.model.stream_weighting,
            "dropout": cfg.model.dropout} | data.model_inputs()


def build(spec: dict) -> DiscreteASR:
    from dataclasses import replace

    shape = ASR_PRESETS[spec["preset"]]
    if spec.get("dropout") is not None:
        shape = replace(shape, dropout=spec["dropout"])
    kind = "continuous" if spec["input"] == "continuous" else "units"
    return asr_model(shape, spec["vocab"], kind, spec["num_streams"], spec["unit_vocab"], spec["input_dim"], spec["stream_weighting"])


def as_bytes_tensor(path: Path) -> torch.Tensor:
    return torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8).clone()


def output_tokens(data: ASRData, cuts, d, out: Path, ctx: dist.Context, resumed: bool) -> BPETokenizer:
    """``OUT/tokens.model``: BPE (or characters, ``data.output: char``) over the training transcripts, trained by rank 0
    for a new run; a resumed run (whose config and training manifest were checked equal) reuses it, a new run never
    reuses one left in ``out``."""
    path = out / "tokens.model"
    if ctx.is_main and (not resumed or not path.exists()):
        data.output_tokens(cuts, d.output, d.vocab_size, path)
    dist.barrier(ctx)
    return BPETokenizer(path)


def input_features(layer, batch: dict, device: torch.device, unit_vocab: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's input of a batch: unit ids, or (continuous) the frozen encoder layer's states.

    Checked where they enter: states holding NaN or inf, or ids outside ``[0, unit_vocab)`` (an id past ``k``
    would read the next stream's embedding table), are a one-line error naming the utterances.
    """
    if layer is None:
        x, lens = batch["inputs"].to(device), batch["input_lens"].to(device)
        if unit_vocab is not None:
            bad = ((x < 0) | (x >= unit_vocab)).flatten(1).any(1)  # padding is 0, always in range
            if bool(bad.any()):
                cuts = list(batch["cuts"])
                names = [describe_cut(cuts[i]) for i in bad.nonzero().flatten().tolist()]
                raise SpeechrqError(f"unit ids outside [0, {unit_vocab}) (up to {int(x.max())}) in utterance {name_list(names, len(cuts))}; "
                                    "encode the units again (`speechrq units encode`)")
        return x, lens
    with torch.no_grad():
        x, lens = layer(batch["audio"].to(device), batch["audio_lens"].to(device))
    require_finite(x, lens, [describe_cut(c) for c in batch["cuts"]], f"encoder layer {getattr(layer, 'layer', '?')} states")
    return x, lens


def train_asr(cfg: ASRConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train as ``cfg`` says; returns the last checkpoint's directory."""
    from tqdm import tqdm

    ctx = dist.init(cfg.train.device)
    out, dev = Path(cfg.out_dir), ctx.device
    engine.set_deterministic(cfg.train.deterministic)

    # ---- data and tokens: what the run reads (units, unit BPE, transcripts as read: speechrq.text) is its identity
    d = cfg.data
    data = ASRData.from_config(d)
    cuts = data.cuts(d.train_split).to_eager()
    inputs, defaults = data.identity(cuts, d.train_split)
    resume_from, meta = engine.resume_point(ASRConfig, cfg, resume, RESUMABLE_CHANGES, ctx, inputs, defaults=defaults)
    if resume_from is not None and meta["step"] >= cfg.optim.max_steps:  # finished, same config and inputs: reused untouched
        return resume_from
    if ctx.is_main and (empty := [c.id for c in cuts if not normalize_text(c.supervisions[0].text if c.supervisions else "")]):
        log.warning("%d of %d training utterances have no transcript left after normalisation (speechrq.text.normalize_text) "
                    "and are left out of training: %s", len(empty), len(cuts), name_list(empty, shown=5))
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    tokenizer = output_tokens(data, cuts, d, out, ctx, resumed=resume_from is not None)
    stream = BatchStream(cuts, d.max_duration, cfg.train.seed, d.num_buckets, d.num_workers, cfg.optim.accum_steps, ctx.world_size,
                         ctx.rank, dataset=data.batches(tokenizer))
    layer = None
    if d.input == "continuous":
        from ..encoders import EncoderLayer

        layer = EncoderLayer(*data.source.encoder).to(dev)
        refuse_short_cuts(cuts, layer.min_samples, f"encoder layer {layer.layer}")  # named in one line, before any step

    # ---- the model, and where this run starts
    spec = model_spec(cfg, data, len(tokenizer))
    torch.manual_seed(cfg.train.seed)  # the same initial weights on every rank and run
    model = build(spec).to(dev)
    extra = {TOKENIZER_KEY: as_bytes_tensor(tokenizer.path)} | ({UNIT_BPE_KEY: as_bytes_tensor(data.source.dir / "bpe.model")}
                                                                if data.unit_bpe else {})
    optimizer = make_optimizer(model, cfg.optim)
    step = 0
    # what spans steps, saved with every checkpoint (a resumed run logs what the uninterrupted run logs): the log
    # window's sums, its measured step times (wall clock), and the run of skipped steps
    window, times = LogWindow(), engine.StepTimes()
    nonfinite = engine.NonfiniteSteps(cfg.train.max_nonfinite)  # skipped steps in a row, and their cause
    meters = {"window": window, "step_times": times, "nonfinite": nonfinite}
    if resume_from is not None:
        state = load_model_state(resume_from, dev)
        from ..checkpoint import MODEL_FILE, load_weights

        load_weights(model, {k: v for k, v in state.items() if k not in (TOKENIZER_KEY, UNIT_BPE_KEY)}, Path(resume_from) / MODEL_FILE,
                     "ASR model")  # whole, or one line naming what is not
        step = engine.restore_progress(resume_from, meta, optimizer, stream, cfg.train.seed, ctx, meters)
    else:
        engine.seed_rank(cfg.train.seed, ctx.rank)
    if cfg.train.compile:
        from ..models.compiling import FRAME_MULTIPLE, compile_module

        compile_module(model.encoder, dev.type, FRAME_MULTIPLE)
        compile_module(model.decoder, dev.type)
    ddp = nn.parallel.DistributedDataParallel(model) if ctx.distributed else model
    params = [p for p in model.parameters() if p.requires_grad]
    if ctx.is_main:
        atomic_write_text(out / "config.yaml", dump_yaml(cfg))
    metrics = engine.MetricsLog(out, step, ctx.is_main)

    def checkpoint(reason: str = "") -> Path:
        state = {"optimizer": optimizer.state_dict(), "rng": dist.gather_objects(engine.rng_state(dev), ctx),
                 "meters": engine.meters_state(meters, ctx)}
        info = {"kind": "speechrq-asr", "step": step, "world_size": ctx.world_size, "data": dist.gather_objects(stream.state(), ctx),
                "config": config_to_dict(cfg), "inputs": inputs, "model": spec, "reason": reason}
        path = step_dir(out / "checkpoints", step)
        if ctx.is_main:
            save_checkpoint(path, model.state_dict() | extra, state, info)
            prune_checkpoints(out / "checkpoints", cfg.train.keep_last)
        dist.barrier(ctx)
        return path

    bar = tqdm(total=cfg.optim.max_steps, initial=step, desc=f"asr {d.input}", unit="step", disable=not (progress and ctx.is_main),
               dynamic_ncols=True)
    last = resume_from
    warned_infeasible = False
    masks = (cfg.loss.time_masks, cfg.loss.time_mask_width)
    while step < cfg.optim.max_steps:
        times.start()
        lr = cfg.optim.lr * lr_factor(step, cfg.optim)
        set_lr(optimizer, lr)
        ddp.train()
        # ---- one optimizer step: accum_steps micro-batches, all-reduce on the last only
        sums = torch.zeros(WINDOW_SUMS, dtype=torch.float64)  # loss, ctc, attention, correct, tokens, CTC-infeasible, utterances
        for micro in range(cfg.optim.accum_steps):
            batch = next(stream)
            x, lens = input_features(layer, batch, dev, spec["unit_vocab"] or None)
            gen = torch.Generator().manual_seed(cfg.train.seed * MASK_SEED_STRIDE + stream.global_index())
            with (ddp.no_sync() if ctx.distributed and micro < cfg.optim.accum_steps - 1 else contextlib.nullcontext()), \
                    engine.autocast(cfg.train.precision, dev):
                res = ddp(x, lens, batch["tokens"].to(dev), batch["token_lens"].to(dev), cfg.loss.ctc_weight, cfg.loss.label_smoothing,
                          gen, masks)
                (res.loss / cfg.optim.accum_steps).backward()
            sums += torch.tensor([float(res.loss.detach()), float(res.ctc), float(res.attention), res.correct, res.tokens,
                                  res.ctc_infeasible, len(batch["cuts"])], dtype=torch.float64)
        sums = dist.all_reduce_sum(sums.to(dev), ctx).cpu() if ctx.distributed else sums
        loss = float(sums[0]) / (cfg.optim.accum_steps * ctx.world_size)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.clip_norm or float("inf"))
        if math.isfinite(loss) and bool(torch.isfinite(grad_norm)):
            optimizer.step()
            nonfinite.good()
        else:
            # inputs were checked on entry (input_features): what is left to blame is a buffer, or the model
            cause = nonfinite.skipped(model, [], ctx)
            if ctx.is_main:
                log.warning("step %d: non-finite loss or gradient; update skipped (%d in a row)%s", step, nonfinite.run,
                            f"; cause: {cause}" if cause else "")
        optimizer.zero_grad(set_to_none=True)
        step += 1
        window.sums.append(sums)
        times.stop()
        bar.update(1)
        if sums[5] > 0 and not warned_infeasible and ctx.is_main:  # said once; the count goes to every metrics record
            warned_infeasible = True
            log.warning("step %d: %d of %d utterances have fewer input frames than CTC needs (a frame per output token, one "
                        "more per repeat): their CTC term counts 0 (logged as ctc_infeasible); fewer output tokens "
                        "(data.vocab_size) or a longer input (data.input=units rather than bpe) avoids it",
                        step, int(sums[5]), int(sums[6]))
        if step % cfg.train.log_every == 0 or step == cfg.optim.max_steps or nonfinite.stopping:
            w = torch.stack(window.sums).sum(0)
            n = len(window.sums) * cfg.optim.accum_steps * ctx.world_size
            seconds, timed = times.take()  # wall clock: the window's measured step times
            record = {"step": step, "lr": lr, "loss": float(w[0]) / n, "ctc": float(w[1]) / n, "attention": float(w[2]) / n,
                      "acc": float(w[3]) / max(float(w[4]), 1.0), "s_per_step": seconds / max(timed, 1),
                      "ctc_infeasible": float(w[5]) / max(float(w[6]), 1.0)}  # share of utterances CTC could not align
            metrics.write(record)
            bar.set_postfix(loss=f"{record['loss']:.2f}", acc=f"{record['acc']:.3f}")
            window.sums = []
        if nonfinite.stopping:  # train.max_nonfinite skipped steps in a row: stop, with the last good weights saved
            path = checkpoint(reason="non-finite")
            bar.close()
            metrics.close()
            raise SpeechrqError(nonfinite.message(step, path))
        if step % cfg.train.checkpoint_every == 0 or step == cfg.optim.max_steps:
            last = checkpoint()
    bar.close()
    metrics.close()
    if cfg.train.compile and ctx.is_main:
        from ..models.compiling import report_graphs

        report_graphs(out)
    return last
