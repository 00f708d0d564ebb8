"""What travels with the package: the shipped configs and the reference checkpoint, addressable by name.

The configs (``speechrq/configs/{pretrain,asr}/NAME.yaml``) and the tiny reference encoder
(``speechrq/assets/reference/tiny_bestrq``: 4000 BEST-RQ steps on the demo corpus) are package data, so an
installed speechrq finds them from any directory:

- ``speechrq pretrain tiny`` reads the shipped ``configs/pretrain/tiny.yaml``; ``speechrq asr train tiny`` the
  shipped ``configs/asr/tiny.yaml``;
- ``--encoder tiny_bestrq`` (and every other place a speechrq checkpoint is named) reads the reference checkpoint;
- ``speechrq configs list|show|copy`` lists, prints and copies them (copy one to edit it).

A path that exists always wins over a name, so a file or folder called ``tiny`` in the current directory is read
as that file. In a clone of the repository, ``configs/`` and ``assets/`` at its root are links to these folders, so
``configs/pretrain/tiny.yaml`` names the same file.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["CONFIG_KINDS", "REFERENCE", "config_names", "config_path", "config_arg", "checkpoint_arg", "describe"]

CONFIG_KINDS = ("pretrain", "asr")
"""The config families: ``pretrain`` (``PretrainConfig``) and ``asr`` (``ASRConfig``)."""

REFERENCE = "tiny_bestrq"
"""The shipped reference encoder's name: the tiny BEST-RQ encoder after 4000 steps on the demo corpus (``make reference``)."""


def _root() -> Path:
    return Path(str(resources.files("speechrq")))


def reference_checkpoint() -> Path:
    """The reference checkpoint's folder (``model.safetensors`` and ``meta.json``)."""
    return _root() / "assets" / "reference" / REFERENCE / "checkpoints" / "step_00004000"


def config_names(kind: str) -> list[str]:
    """The shipped config names of ``kind`` (one of :data:`CONFIG_KINDS`), sorted."""
    return sorted(p.stem for p in (_root() / "configs" / kind).glob("*.yaml"))


def config_path(kind: str, name: str) -> Path:
    """The shipped config ``name`` of ``kind``; a name that is not shipped is a :class:`~speechrq.errors.SpeechrqError`
    listing those that are."""
    from .errors import SpeechrqError

    if kind not in CONFIG_KINDS:
        raise SpeechrqError(f"config kind {kind!r}: choose one of {', '.join(CONFIG_KINDS)}")
    path = _root() / "configs" / kind / f"{name}.yaml"
    if not path.is_file():
        raise SpeechrqError(f"{name}: not a shipped {kind} config (shipped: {', '.join(config_names(kind))})")
    return path


def describe(path: Path) -> str:
    """A config's description: its opening comment up to the first full stop, or to the first indented (command)
    comment line, on one line without the ``#``."""
    words = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#") or line.startswith("#   "):
            break
        words.append(line.lstrip("#").strip())
    text = " ".join(words)
    end = text.find(". ")
    return (text[:end + 1] if end >= 0 else text).rstrip(":")


def config_arg(kind: str):
    """An argparse ``type``: a config file's path as given when it exists, else the shipped config of that name
    (``tiny``, ``tiny.yaml`` or ``KIND/tiny``) when there is one, else the value as given (reading it then names the missing file
    and points here)."""

    def resolve(value: str) -> str:
        if Path(value).exists():
            return value
        name = value[:-5] if value.endswith(".yaml") else value
        name = name[len(kind) + 1:] if name.startswith(f"{kind}/") else name  # pretrain/tiny, as `speechrq configs` names it
        if "/" not in name and name and (_root() / "configs" / kind / f"{name}.yaml").is_file():
            return str(_root() / "configs" / kind / f"{name}.yaml")
        return value

    resolve.__name__ = f"{kind}_config"  # argparse names the type in its messages
    return resolve


def checkpoint_arg(value: str) -> str:
    """An argparse ``type`` for a speechrq checkpoint: the path as given, or the reference checkpoint's folder for
    :data:`REFERENCE` when no such path exists here. Anything else is passed on as given (the command says what is
    wrong with it)."""
    if value == REFERENCE and not Path(value).exists():
        return str(reference_checkpoint())
    return value
