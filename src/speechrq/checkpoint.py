"""The one way speechrq writes checkpoints.

A checkpoint is a directory, ``RUN/checkpoints/step_00001000/``, holding

- ``model.safetensors``: every parameter and buffer of the model, including the
  feature statistics and the quantizer's projections, codebooks and seed;
- ``trainer.pt``: optimizer state and RNG states, readable with
  ``torch.load(weights_only=True)`` (no code is executed on load);
- ``meta.json``: the step, the full config, the data position of each rank and
  whatever else the job needs to continue.

It is written into a hidden temporary directory and renamed into place, so a
killed job leaves either the whole checkpoint or none of it. Re-saving a step
that exists (a resumed run) moves the old copy aside first; a job killed
between the two renames leaves the old copy aside, and the next listing puts it
back, so there is never a moment without a complete checkpoint of that step.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from .errors import SpeechrqError
from .io import TEMP_MARK, default_file_mode, disk_full_error, is_disk_full, remove_if_stale

MODEL_FILE, TRAINER_FILE, META_FILE = "model.safetensors", "trainer.pt", "meta.json"
_STEP_DIR = re.compile(r"^step_(\d{8,})$")
_ASIDE = re.compile(r"^\.(step_\d{8,})\.old-\d+$")  # an existing step moved aside while it is re-saved


def step_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f"step_{step:08d}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(path: str | Path, model_state: dict[str, torch.Tensor], trainer_state: dict[str, Any] | None,
                    meta: dict[str, Any]) -> Path:
    """Write a checkpoint directory atomically; an existing one at ``path`` is replaced.
    ``trainer_state`` None writes weights only (an exported checkpoint: it cannot resume a run)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}{TEMP_MARK}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in model_state.items()}
        save_file(tensors, str(tmp / MODEL_FILE), metadata={"format": "pt"})
        files = [MODEL_FILE, META_FILE]
        if trainer_state is not None:
            torch.save(trainer_state, tmp / TRAINER_FILE)
            files.append(TRAINER_FILE)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))
        for name in files:
            os.chmod(tmp / name, default_file_mode())  # safetensors creates its file 0600
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(tmp)
    except BaseException as e:  # an error, a full disk or a termination signal: no half-written checkpoint is left
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(e, tmp / MODEL_FILE):
            raise disk_full_error(path, "a checkpoint") from None
        raise
    if path.exists():  # re-saving a step (a resumed run): swap, then drop the old one
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def _recover_aside(root: Path) -> None:
    """Put back a step moved aside by a re-save that was killed before the new copy moved in."""
    for p in root.glob(".step_*.old-*"):
        m = _ASIDE.match(p.name)
        if not m or not (p / META_FILE).exists():
            continue
        try:
            if (root / m.group(1)).exists():
                shutil.rmtree(p, ignore_errors=True)  # the re-save completed; this copy is stale
            else:
                os.replace(p, root / m.group(1))
        except OSError:  # a read-only copy of a run: list what is there
            pass


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root``, oldest first, as ``(step, path)``."""
    root = Path(root)
    if not root.is_dir():
        return []
    _recover_aside(root)
    out = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and (p / META_FILE).exists():
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest_checkpoint(root: str | Path) -> Path | None:
    ckpts = list_checkpoints(root)
    return ckpts[-1][1] if ckpts else None


def prune_checkpoints(root: str | Path, keep_last: int, keep: set[int] = frozenset()) -> None:
    """Delete all but the newest ``keep_last`` checkpoints (and any step in ``keep``), and stale temporaries."""
    root = Path(root)
    ckpts = list_checkpoints(root)
    for step, p in ckpts[:-keep_last] if keep_last > 0 else ckpts:
        if step not in keep:
            shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".step_*"):  # left by a job killed while writing (or a failed save of ours); never a live one's
        remove_if_stale(p, own_too=True)


def read_meta(path: str | Path) -> dict[str, Any]:
    from .io import loads_json

    path = Path(path)
    try:
        return loads_json((path / META_FILE).read_text(), path / META_FILE)  # a key given twice: refused, never the last kept
    except FileNotFoundError:
        raise SpeechrqError(f"{path}: not a speechrq checkpoint (no {META_FILE})") from None
    except json.JSONDecodeError as e:
        raise SpeechrqError(f"{path / META_FILE}: corrupt ({e})") from None


def load_model_state(path: str | Path, device: str | torch.device = "cpu", prefix: str = "") -> dict[str, torch.Tensor]:
    """The checkpoint's weights; with ``prefix``, only those of one submodule, read alone and with the prefix removed."""
    from safetensors import SafetensorError, safe_open

    f = Path(path) / MODEL_FILE
    if not f.exists():
        raise SpeechrqError(f"{path}: not a speechrq checkpoint (no {MODEL_FILE})")
    try:
        with safe_open(str(f), framework="pt", device=str(device)) as st:
            return {k[len(prefix):]: st.get_tensor(k) for k in st.keys() if k.startswith(prefix)}
    except (SafetensorError, OSError) as e:
        raise SpeechrqError(f"{f}: cannot read ({e})") from None


def _first(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def describe_weight_mismatch(missing: list[str], unexpected: list[str], mismatched: list[tuple[str, tuple, tuple]]) -> str:
    """``2 missing (a, b), 1 unexpected (c), 1 of another shape (d: (3, 4) in the file, (3, 5) in the model)``, or ``""``
    when all three are empty: how many weights of each kind, and the first names."""
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({_first(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_first(unexpected)})")
    if mismatched:
        shapes = [f"{k}: {tuple(a)} in the file, {tuple(b)} in the model" for k, a, b in mismatched]
        parts.append(f"{len(mismatched)} of another shape ({_first(shapes, 2)})")
    return ", ".join(parts)


def check_weights(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], source: str | Path, what: str = "model") -> None:
    """Refuse ``state`` unless it holds exactly the keys of ``expected`` (a module's ``state_dict()``), each of the same
    shape: one :class:`SpeechrqError` line naming ``source``, how many weights are missing, unexpected or of another
    shape, and the first names. Nothing is ever left at its random initialisation."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items()
                  if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if (why := describe_weight_mismatch(missing, unexpected, mismatched)):
        raise SpeechrqError(f"{source}: the weights do not load whole into the {what}: {why}")


def load_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path, what: str = "model") -> None:
    """``module.load_state_dict(state)``, strictly, after :func:`check_weights` (a mismatch is one line, never a
    multi-line RuntimeError or a partly random module)."""
    check_weights(module.state_dict(), state, source, what)
    module.load_state_dict(state)


EXPORT_DROPS = ("heads.",)  # the prediction heads: only continuing this very run needs them (a branch re-initialises them)


def export_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """Copy what frozen-encoder users and Latent-RQ branches read (encoder, feature statistics, quantizers, θ)
    to ``dst``: no prediction heads and no optimizer state, so a shipped checkpoint stays small."""
    meta = read_meta(src)
    state = {k: v for k, v in load_model_state(src).items() if not k.startswith(EXPORT_DROPS)}
    meta = meta | {"exported_from": str(Path(src).resolve()), "export_dropped": [*EXPORT_DROPS, TRAINER_FILE]}  # from anywhere
    return save_checkpoint(dst, state, None, meta)


def load_trainer_state(path: str | Path) -> dict[str, Any]:
    f = Path(path) / TRAINER_FILE
    if not f.exists():
        raise SpeechrqError(f"{path}: no {TRAINER_FILE}; this checkpoint holds weights only and cannot resume a run")
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors of a damaged file
        raise SpeechrqError(f"{f}: cannot read ({str(e).splitlines()[0]})") from None
