"""Atomic file output: a reader never sees a half-written file.

Everything speechrq writes that a later step reads (manifests, statistics,
checkpoints) goes through these helpers: the bytes land in a temporary file in
the same directory, are flushed to disk, and the file is renamed over the target,
which POSIX makes atomic.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def default_file_mode() -> int:
    """The mode ``open()`` would give a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary name keeps ``path``'s suffixes so that writers which choose a
    format by extension (``.jsonl.gz``, ``.safetensors``) behave as for ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, default_file_mode())  # mkstemp makes 0600; give the file the usual mode
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, turning a missing or malformed file into a one-line error."""
    from .errors import SpeechrqError

    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpeechrqError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SpeechrqError(f"{path}: a directory, not a JSON file") from None
    except (PermissionError, UnicodeDecodeError) as e:
        raise SpeechrqError(f"{path}: cannot be read as JSON ({e.__class__.__name__})") from None
    except json.JSONDecodeError as e:
        raise SpeechrqError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def utterance_file(directory: str | os.PathLike, utt_id: str, suffix: str = ".npy") -> Path:
    """The one file-name rule of speechrq's per-utterance caches: ``directory/<id>.npy``, ``/`` in an id as ``__``."""
    return Path(directory) / f"{utt_id.replace('/', '__')}{suffix}"


def _hash_file(h, path: Path) -> None:
    """Feed ``path``'s bytes to the hash ``h`` in 4 MB blocks (weights files are large)."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, all 64 hex digits (what ``sha256sum`` prints)."""
    import hashlib

    h = hashlib.sha256()
    _hash_file(h, Path(path))
    return h.hexdigest()


def file_fingerprint(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, first 16 hex digits."""
    return file_sha256(path)[:16]


def folder_fingerprint(path: str | os.PathLike) -> str:
    """sha256 over a folder's files (relative names and bytes), first 16 hex digits."""
    import hashlib

    path = Path(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        _hash_file(h, f)
    return h.hexdigest()[:16]
