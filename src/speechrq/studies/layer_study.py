"""Latent-RQ Table 2: which target layers? Branch one stage-0 checkpoint once per layer set.

Each branch is a Latent-RQ stage started from the same checkpoint (θ = its
encoder, the same quantizer seed), trained for the same number of steps with
only ``targets.layers`` changed, in ``OUT/layer_study/layers_A_B``. The branches
resume if interrupted and are skipped when already finished, so re-running the
study only probes. The probes then compare the branches' last checkpoints.
"""

from __future__ import annotations

import copy
from pathlib import Path

from ..checkpoint import latest_checkpoint, read_meta
from ..config import config_from_dict, read_yaml
from ..errors import SpeechrqError


def parse_layer_sets(text: str) -> list[list[int]]:
    """``"1;2;1,2"`` -> ``[[1], [2], [1, 2]]``."""
    sets = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        try:
            sets.append([int(x) for x in part.split(",")])
        except ValueError:
            raise SpeechrqError(f"--layer-sets: {part!r} is not a comma-separated list of layer indices (e.g. '1;2;1,2')") from None
    if not sets:
        raise SpeechrqError("--layer-sets: no layer set given (e.g. '1;2;1,2')")
    return sets


def branch_config(checkpoint: str | Path, layers: list[int], steps: int, out_dir: Path, config: str | Path | None = None):
    """The config of one branch: ``config`` (default: the checkpoint's own) with the layers, parent and budget set."""
    from ..pretrain.config import PretrainConfig

    meta = read_meta(checkpoint)
    base = read_yaml(config) if config else copy.deepcopy(meta["config"])
    base["out_dir"] = str(out_dir)
    base.setdefault("targets", {}).update({"layers": layers, "init_from": str(checkpoint), "refresh_at": [], "encoder": None})
    base.setdefault("optim", {})["max_steps"] = int(meta["step"]) + steps
    base.setdefault("train", {})["checkpoint_every"] = steps
    return config_from_dict(PretrainConfig, base, source=str(config or checkpoint))


def layer_study(checkpoint: str | Path, layer_sets: list[list[int]], steps: int, out: str | Path, config: str | Path | None = None,
                progress: bool = True) -> dict[str, Path]:
    """Train every branch to its budget (resuming or skipping finished ones); returns ``{"layers A,B": last checkpoint}``."""
    from ..pretrain.trainer import train

    if steps < 1:
        raise SpeechrqError(f"--study-steps: must be >= 1, got {steps}")
    finals = {}
    for layers in layer_sets:
        run = Path(out) / "layer_study" / ("layers_" + "_".join(str(k) for k in layers))
        cfg = branch_config(checkpoint, layers, steps, run, config)
        last = latest_checkpoint(run / "checkpoints")
        if progress and (last is None or read_meta(last)["step"] < cfg.optim.max_steps):
            print(f"layer study: target layers {layers}, {steps} steps from {checkpoint} -> {run}")
        # resumed, or reused when finished, only if its config and inputs (the parent's weights, the corpus) are the same
        last = train(cfg, resume=last is not None, progress=progress)
        finals["layers " + ",".join(str(k) for k in layers)] = last
    return finals
