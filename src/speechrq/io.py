"""Atomic file output: a reader never sees a half-written file.

Everything speechrq writes that a later step reads (manifests, statistics,
checkpoints) goes through these helpers: the bytes land in a temporary file in
the same directory, are flushed to disk, and the file is renamed over the target,
which POSIX makes atomic.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def default_file_mode() -> int:
    """The mode ``open()`` would give a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


TEMP_MARK = ".tmp-"
"""Every temporary name this package writes holds ``.tmp-<pid>`` (the writer's process id): see
:func:`remove_stale_temporaries`."""
_TEMP = re.compile(r"^\..+\.tmp-(\d+)(?:-.*)?$")


def temp_owner(name: str) -> int | None:
    """The pid of the writer of a temporary named ``name`` (``.X.tmp-<pid>...``), or None for any other name."""
    m = _TEMP.match(name)
    return int(m.group(1)) if m else None


def process_alive(pid: int) -> bool:
    """Whether a process of this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_if_stale(path: Path, own_too: bool = False) -> bool:
    """Delete ``path`` (a file or folder) if it is a temporary (:func:`temp_owner`) whose writer is no longer alive, or,
    with ``own_too``, this process's own (a write of this process that failed). Returns whether it was removed."""
    import shutil

    pid = temp_owner(path.name)
    if pid is None or (pid == os.getpid() and not own_too) or (pid != os.getpid() and process_alive(pid)):
        return False
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    return True


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete, anywhere under ``folder``, the temporaries (files or folders) that writers killed mid-write left behind:
    names with ``.tmp-<pid>`` whose process is no longer alive (:func:`remove_if_stale`). Those of live processes
    (another command filling a shared cache) are left alone. Returns what was removed."""
    removed = []
    for root, dirs, files in os.walk(folder):
        removed += [Path(root) / name for name in [*files, *dirs] if remove_if_stale(Path(root) / name)]
        dirs[:] = [d for d in dirs if temp_owner(d) is None]
    return removed


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def is_disk_full(e: BaseException, path: str | os.PathLike | None = None) -> bool:
    """Whether ``e`` says the file system (or a quota, or the largest file size) ran out: an ``OSError`` with ENOSPC,
    EDQUOT or EFBIG; the short-write errors of numpy (``OSError: N requested and M written``), torch (``RuntimeError``)
    and safetensors (``SafetensorError``); or, given the ``path`` being written, any error while that file system
    has less than :data:`FULL_BELOW` bytes free."""
    if isinstance(e, OSError) and e.errno in DISK_FULL:
        return True
    if not isinstance(e, Exception):
        return False
    text = str(e)
    if any(m in text for m in ("unexpected pos", "PytorchStreamWriter failed", "file write failed", "No space left",
                               "Disk quota exceeded", "File too large", "os error 28")) \
            or re.search(r"\d+ requested and \d+ written", text):
        return True
    if path is not None:
        try:
            st = os.statvfs(Path(path).parent)
            return st.f_bavail * st.f_frsize < FULL_BELOW
        except OSError:
            return False
    return False


FULL_BELOW = 1 << 20
"""Free bytes under which a failed write is taken for a full disk (:func:`is_disk_full`)."""


def disk_full_error(path: str | os.PathLike, what: str | None = None) -> "SpeechrqError":
    """The one-line error for a full disk while writing ``path``."""
    from .errors import SpeechrqError

    path = Path(path)
    return SpeechrqError(f"{path.parent}: no space left on the device while writing {path.name}"
                         f"{f' ({what})' if what else ''}; nothing half-written was kept: free space and run the command "
                         "again (it continues from what was finished; a training run with --resume)")


@contextmanager
def atomic_path(path: str | os.PathLike, what: str | None = None, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    ``durable``: the temporary is flushed to the disk (fsync) before the rename, so ``path`` survives a system crash
    whole. Caches of what can be computed again (one file per utterance: hidden states, targets) pass False: the rename
    still makes a killed process leave either the whole file or none, and their readers take a file that does not load
    (a system crash's leftover) for one to compute again; an fsync per utterance costs more than the write on most disks.

    The temporary name keeps ``path``'s suffixes so that writers which choose a
    format by extension (``.jsonl.gz``, ``.safetensors``) behave as for ``path``, and holds
    ``.tmp-<pid>`` (:func:`remove_stale_temporaries`). Whatever ends the block early (an error, a
    termination signal turned into an exception by the CLI) removes the temporary. A full disk is
    :func:`disk_full_error` (one line naming the folder and the file; ``what`` says what the file is).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TEMP_MARK}{os.getpid()}-", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, default_file_mode())  # mkstemp makes 0600; give the file the usual mode
        yield tmp_path
        if durable:
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except Exception as e:
        if is_disk_full(e, path):
            raise disk_full_error(path, what) from None
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def read_cache_array(path: str | os.PathLike):
    """The array of a cache file written by :func:`atomic_path` with ``durable=False`` (``.npy``), or None when there is
    none.

    Raises:
        TornCacheFile: the file does not load (cut short, empty, another format): the leftover of a system crash while
            it was written, which only an fsync would have prevented; it is removed first, so the command run again
            computes it.
        SpeechrqError: a folder, or a file this process may not read, stands where the file belongs (not a crash's
            doing: nothing is removed).
    """
    import zipfile

    import numpy as np

    from .errors import SpeechrqError, TornCacheFile

    path = Path(path)
    try:
        return np.load(path)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise SpeechrqError(f"{path}: a folder where a cached file belongs; remove it and run the command again") from None
    except PermissionError as e:
        raise SpeechrqError(f"{path}: this cached file cannot be read ({e.strerror}); allow reading it or remove it") from None
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as e:  # cut short, empty, a zip or pickle header: not a .npy
        # (a MemoryError or a bug is not the file's fault: it is raised as it is and the file is kept)
        path.unlink(missing_ok=True)
        said = str(e).splitlines()[0] if str(e) else "cut short"
        raise TornCacheFile(f"{path}: a cached file that does not load ({type(e).__name__}: {said}), left by a system crash "
                            "while it was written; removed: run the command again to compute it") from None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


class DuplicateKeyError(ValueError):
    """A JSON object that gives one key twice (:func:`unique_pairs`)."""

    def __init__(self, key: str):
        super().__init__(f"key {key!r} given twice")
        self.key = key


def unique_pairs(pairs: list[tuple[str, Any]]) -> dict:
    """``json.loads``'s ``object_pairs_hook`` that refuses an object giving one key twice (plain ``json`` keeps the last
    silently): :class:`DuplicateKeyError`."""
    out = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateKeyError(k)
        out[k] = v
    return out


def loads_json(text: str, source: str | os.PathLike) -> Any:
    """``json.loads`` refusing duplicate keys: a :class:`~speechrq.errors.SpeechrqError` line naming ``source`` and the
    key. Malformed JSON is left to the caller (``json.JSONDecodeError``)."""
    from .errors import SpeechrqError

    try:
        return json.loads(text, object_pairs_hook=unique_pairs)
    except DuplicateKeyError as e:
        raise SpeechrqError(f"{source}: key {e.key!r} given twice in one object; keep one") from None


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, turning a missing or malformed file, or an object giving a key twice, into a one-line error."""
    from .errors import SpeechrqError

    path = Path(path)
    try:
        return loads_json(path.read_text(encoding="utf-8"), path)
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
