"""Latent-RQ stages: where θ comes from, and what changes when it does.

A run starts in one of three ways (:func:`start_stage`):

- **stage 0**, BEST-RQ: Mel targets, no θ;
- **a branch** (``targets.init_from``, Figure 2): the student starts from a stage-k
  checkpoint, θ is that checkpoint's encoder, steps continue from its step;
- **θ fixed from step 0** (``targets.encoder``): a speechrq checkpoint's encoder or
  a Hugging Face folder.

At each ``targets.refresh_at`` step (:func:`refresh`) θ becomes a copy of the
student. Whenever θ changes (:func:`set_target_encoder`) its layer statistics are
refit on a fixed seeded sample and the heads are re-initialised, seeded by the
stage; projections and codebooks never change. Every change is appended to the
run's ``history``, saved in each checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .. import distributed as dist
from ..checkpoint import MODEL_FILE, check_weights, load_model_state, read_meta
from ..config import config_to_dict
from ..data.corpus import seeded_subset
from ..encoders.frozen import PretrainCheckpoint
from ..encoders.hf import is_pretrained_folder
from ..errors import SpeechrqError
from ..features import LogMel, feature_batches
from .config import PretrainConfig
from .model import MaskedPredictionModel
from .step import MASK_SEED_STRIDE

HEADS_SEED = 7919  # offsets the generator that re-initialises the heads at each stage
BRANCHED_FROM = "branched from "  # history entry of a --init-from branch: BRANCHED_FROM + the parent checkpoint
MEL_STAGE = {"stage": 0, "start": 0, "targets": "mel"}


def theta_checkpoint(checkpoint: str | Path, preset: str) -> PretrainCheckpoint:
    """A speechrq checkpoint whose student is to be θ, checked to be of ``preset``."""
    ckpt = PretrainCheckpoint(checkpoint)
    if ckpt.preset != preset:
        raise SpeechrqError(f"{checkpoint}: holds a {ckpt.preset!r} encoder, this run's is {preset!r}")
    return ckpt


def stats_batches(cuts, cfg: PretrainConfig, logmel: LogMel, model: MaskedPredictionModel, device: torch.device):
    """The fixed utterance sample whose θ features set the target layers' statistics.

    The same on every rank and at every refresh: ``targets.stats_utterances``
    utterances drawn with ``train.seed``, in order.
    """
    sample = seeded_subset(cuts, cfg.targets.stats_utterances, cfg.train.seed)
    return feature_batches(sample, model.normalizer, cfg.data.max_duration, device, logmel)


def pick_layers(model: MaskedPredictionModel, batches: list, cfg: PretrainConfig, ctx: dist.Context) -> dict:
    """``targets.layers: auto``: rank θ's front end and blocks (and Mel, for the record) by perturbation agreement
    (:mod:`speechrq.targets.rank`) on the statistics sample and take the best ``auto_count``; rank 0's picks are
    broadcast, so every rank quantizes the same layers. Returns ``{"layers": [...], "scores": {source: κ}}``."""
    from ..targets.rank import MEL, encoder_sources, mel_source, perturbation_agreement, select_layers

    latent, q = model.targets.latent, cfg.quantizer
    candidates = list(range(-1, latent.encoder.config.num_layers))
    sources = {MEL: mel_source, **encoder_sources(latent.encoder, candidates)}
    scores = perturbation_agreement(sources, batches, q.num_codebooks, q.codebook_size, q.codebook_dim)
    picks = torch.tensor(select_layers({k: scores[f"layer {k}"] for k in candidates}, len(latent.layers)), device=ctx.device)
    dist.broadcast_tensor(picks, ctx)
    return {"layers": picks.tolist(), "scores": {name: round(v, 6) for name, v in scores.items()}}


def set_target_encoder(model: MaskedPredictionModel, encoder_weights: dict | None, stage: int, cuts, cfg: PretrainConfig, logmel: LogMel,
                       ctx: dist.Context) -> dict:
    """Start stage ``stage``: θ takes ``encoder_weights``, its target layers are picked (``layers: auto``),
    its layer statistics are refit (or set to the identity, ``standardize: false``), the heads are
    re-initialised (seeded by the stage); projections and codebooks stay. Returns what the history records
    of the stage's targets: ``{"layers": [...]}`` and, with ``auto``, the ranking's scores."""
    latent = model.targets.latent
    if encoder_weights is not None:  # None: θ keeps its own weights (a pretrained folder)
        latent.encoder.load_state_dict(encoder_weights)
    latent.freeze()
    record = {}
    with torch.no_grad():
        batches = list(stats_batches(cuts, cfg, logmel, model, ctx.device))
        if cfg.auto_layers:
            record = pick_layers(model, batches, cfg, ctx)
            latent.set_layers(record["layers"])
        if cfg.targets.standardize:
            latent.fit_normalizers(batches)
        else:
            latent.reset_normalizers()
    for buf in latent.normalizers.buffers():  # identical on every rank even where kernels are not bitwise reproducible
        dist.broadcast_tensor(buf, ctx)
    model.targets.stage.fill_(stage)
    model.heads.reset_parameters(torch.Generator().manual_seed(cfg.train.seed * MASK_SEED_STRIDE + HEADS_SEED + stage))
    return {"layers": list(latent.layers), **({"layer_scores": record["scores"]} if record else {})}


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
    # not taken: the heads (re-initialised), θ and its statistics (θ becomes the student, reading the student's own
    # normalised log-Mel, so a parent's θ input statistics do not apply either), the stage
    skip = ("heads.", "targets.latent.encoder.", "targets.latent.normalizers.", "targets.latent.input_normalizer.", "targets.stage")
    parent_state = load_model_state(checkpoint)
    state = {k: v for k, v in parent_state.items() if not k.startswith(skip)}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}
    if not any(k.startswith("targets.latent.") for k in parent_state):
        # a BEST-RQ parent has no latent targets: their projections and codebooks are made from the quantizer's seed
        # alone (checked equal above), so the branch's own are exactly those the parent would have made
        own = {k: v for k, v in own.items() if not k.startswith("targets.latent.quantizers.")}
    check_weights(own, state, Path(checkpoint) / MODEL_FILE, "branch's student, feature statistics and quantizers")
    model.load_state_dict(state, strict=False)  # the rest (heads, θ, the stage) is set by the stage's start
    history = meta.get("history") or [dict(MEL_STAGE)]
    stage = int(meta.get("stage", 0)) + 1
    step = int(meta["step"])
    if step >= cfg.optim.max_steps:
        raise SpeechrqError(f"{checkpoint}: is at step {step}, not before this run's optim.max_steps={cfg.optim.max_steps}")
    return step, [*history, {"stage": stage, "start": step, "targets": f"{BRANCHED_FROM}{checkpoint}"}]


def branch_parent(meta: dict) -> str | None:
    """The checkpoint a run was branched from (``--init-from``), read from a checkpoint's history."""
    for entry in reversed(meta.get("history") or []):
        if str(entry.get("targets", "")).startswith(BRANCHED_FROM):
            return entry["targets"][len(BRANCHED_FROM):]
    return None


def start_stage(model: MaskedPredictionModel, cfg: PretrainConfig, cuts, logmel: LogMel, ctx: dist.Context) -> tuple[int, list]:
    """A new run's first stage: stage 0, a branch, or θ fixed from step 0. Returns the first step and the history."""
    if cfg.targets.init_from and cfg.targets.branch_targets == "mel":  # BEST-RQ continued from a checkpoint: fresh heads
        step, history = branch_from(cfg.targets.init_from, model, cfg)
        history[-1].update(stage=0, source="mel")
        model.targets.stage.fill_(0)
        model.heads.reset_parameters(torch.Generator().manual_seed(cfg.train.seed * MASK_SEED_STRIDE + HEADS_SEED))
        return step, history
    if cfg.targets.init_from:  # Figure 2: branch stage k+1 from a checkpoint of stage k
        step, history = branch_from(cfg.targets.init_from, model, cfg)
        history[-1].update(set_target_encoder(model, model.encoder.state_dict(), history[-1]["stage"], cuts, cfg, logmel, ctx))
        return step, history
    if cfg.targets.encoder:  # θ fixed from another run or a Hugging Face folder, from step 0
        weights = None
        if not is_pretrained_folder(cfg.targets.encoder):
            ckpt = theta_checkpoint(cfg.targets.encoder, cfg.model.preset)
            weights = ckpt.load_into(model.targets.latent.encoder, "encoder.").state_dict()  # whole, or one line
            # θ reads log-Mel normalised as in its own run, whatever this corpus's statistics
            ckpt.load_into(model.targets.latent.input_normalizer, "normalizer.")
        record = set_target_encoder(model, weights, 1, cuts, cfg, logmel, ctx)
        return 0, [{"stage": 1, "start": 0, "targets": f"encoder {cfg.targets.encoder}", **record}]
    return 0, [dict(MEL_STAGE)]


def refresh(model: MaskedPredictionModel, step: int, history: list, cfg: PretrainConfig, cuts, logmel: LogMel,
            ctx: dist.Context) -> int:
    """A refresh at ``step``: θ <- a copy of the student, a new stage in ``history``; returns the stage."""
    stage = int(model.targets.stage) + 1
    record = set_target_encoder(model, model.encoder.state_dict(), stage, cuts, cfg, logmel, ctx)
    history.append({"stage": stage, "start": step, "targets": f"student at step {step}", **record})
    return stage
