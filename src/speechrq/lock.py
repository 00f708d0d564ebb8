"""One writer per output folder: an OS lock held for the lifetime of the command that writes it.

Every command that writes a folder or file the user named (a pre-training or ASR run, ``evaluate``'s output,
``units fit``/``units encode``, ``features stats``, ``synth``, ``data import``, comparisons and studies) calls
:func:`hold` on it first and keeps it until it returns. A second process asking for the same path is refused
in one line naming the path and the process that holds it::

    speechrq: error: exp/asr: in use by process 4242 (speechrq asr train configs/asr/tiny.yaml) since 2026-12-06 08:01:12;
    wait for it to finish, or write to another folder

The lock is ``flock(2)`` on a small file *beside* the held path (``parent/.NAME.lock``, holding the holder's pid,
host and command line), so it never changes what the folder holds, and the kernel drops it when the process ends,
however it ends (a killed run never blocks the next; the file itself stays, empty of meaning). Holding is
re-entrant within a process (a comparison holding its folder may train the systems inside it).

When a folder is taken, the temporary files that writers of this package leave when killed mid-write
(:func:`speechrq.io.remove_stale_temporaries`: names with the writer's pid in them) are removed, except those of
processes still alive (a cache shared by several commands may be inside); when a file is taken, those of that file
beside it (``.NAME.tmp-<pid>-...``).

Under torchrun, rank 0 holds the path for the whole job; the other ranks wait until the lock file names their job
(``MASTER_ADDR:MASTER_PORT`` and torchrun's run id), so a second job's ranks never write into a folder held by
the first. If rank 0 is refused, torchrun ends the others.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from .errors import SpeechrqError

RANK_WAIT_SECONDS = 600.0
"""How long a rank other than 0 waits for rank 0 of its job to take hold of an output (rank 0 may first load data)."""

_HELD: dict[str, list] = {}  # resolved path -> [fd, depth]


def lock_file(path: str | os.PathLike) -> Path:
    """``parent/.NAME.lock``: the file whose ``flock`` holds ``path`` (``path`` resolved first)."""
    p = Path(path).resolve()
    return p.parent / f".{p.name}.lock"


def _job() -> str | None:
    """This process's torchrun job (None outside torchrun)."""
    if "RANK" not in os.environ or os.environ.get("WORLD_SIZE", "1") == "1":
        return None
    return ":".join(os.environ.get(k, "") for k in ("MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"))


def _holder(fd: int) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        return json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}


def describe_holder(info: dict) -> str:
    if not info.get("pid"):
        return "another process"
    where = "" if info.get("host") in (None, socket.gethostname()) else f" on {info['host']}"
    cmd = f" ({info['command']})" if info.get("command") else ""
    since = f" since {info['since']}" if info.get("since") else ""
    return f"process {info['pid']}{where}{cmd}{since}"


def _command_line() -> str:
    argv = [Path(sys.argv[0]).name if i == 0 else a for i, a in enumerate(sys.argv)]
    text = " ".join(argv)
    return text if len(text) <= 300 else text[:297] + "..."


def _acquire(path: Path, what: str) -> int:
    lf = lock_file(path)
    try:
        lf.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lf, os.O_RDWR | os.O_CREAT, 0o666)
    except (FileExistsError, NotADirectoryError):
        above = next((q for q in [lf.parent, *lf.parent.parents] if q.exists()), lf.parent)
        raise SpeechrqError(f"{path}: cannot be written: {above} is a file, not a folder") from None
    except PermissionError:
        raise SpeechrqError(f"{path}: cannot be written: no permission to write in {lf.parent}") from None
    except OSError as e:
        raise SpeechrqError(f"{path}: cannot be written ({e.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        info = _holder(fd)
        os.close(fd)
        raise SpeechrqError(f"{path}: in use by {describe_holder(info)}, writing {info.get('what') or what}; wait for it "
                            "to finish, or write to another folder") from None
    except OSError as e:  # a filesystem without locks: say so rather than write unguarded
        os.close(fd)
        raise SpeechrqError(f"{lf}: cannot lock {path} on this filesystem ({e.strerror}); write to a local disk") from None
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command_line(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"), "job": _job(), "what": what}
    data = (json.dumps(info) + "\n").encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    return fd


def _wait_for_rank0(path: Path, what: str, timeout: float) -> None:
    """A rank other than 0: return once rank 0 of this job holds ``path``."""
    lf, job, deadline = lock_file(path), _job(), time.monotonic() + timeout
    while True:
        try:
            fd = os.open(lf, os.O_RDONLY)
        except FileNotFoundError:
            fd = None
        if fd is not None:
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    fcntl.flock(fd, fcntl.LOCK_UN)  # nobody holds it yet
                except BlockingIOError:
                    if _holder(fd).get("job") == job:
                        return
            finally:
                os.close(fd)
        if time.monotonic() > deadline:
            raise SpeechrqError(f"{path}: rank 0 of this job did not take hold of it ({what}) within {timeout:.0f} s")
        time.sleep(0.2)


@contextlib.contextmanager
def hold(path: str | os.PathLike, what: str, wait_seconds: float = RANK_WAIT_SECONDS) -> Iterator[Path]:
    """Hold ``path`` (a folder or a file, made or not) for writing until the block ends; yields it.

    Raises :class:`~speechrq.errors.SpeechrqError` in one line when another process holds it. Stale temporary files
    of dead writers inside a held folder are removed when it is taken. Under torchrun, rank 0 holds it and the
    other ranks wait (at most ``wait_seconds``) until it is held by their job.
    """
    from .io import remove_stale_temporaries

    p = Path(path)
    key = str(p.resolve())
    if key in _HELD:  # this process holds it already (a study training the runs inside its folder)
        _HELD[key][1] += 1
        try:
            yield p
        finally:
            _HELD[key][1] -= 1
        return
    if _job() is not None and os.environ.get("RANK", "0") != "0":
        _wait_for_rank0(p, what, wait_seconds)
        yield p
        return
    fd = _acquire(p, what)
    _HELD[key] = [fd, 1]
    try:
        if p.is_dir():
            remove_stale_temporaries(p)
        else:
            _remove_stale_temporaries_of(p)
        yield p
    finally:
        _HELD[key][1] -= 1
        if _HELD[key][1] == 0:
            del _HELD[key]
            os.close(fd)  # drops the flock; the file stays (removing it would race with a process opening it)


def _remove_stale_temporaries_of(p: Path) -> None:
    """A held file's temporaries beside it whose writer is dead: ``.NAME.tmp-<pid>-...``, and those of the files a held
    prefix names (``asr tables --prefix P`` writes ``P.json``, ``P.md``, ``P_figure6.png``, ``P_errors.json.gz``: ``.P.json.tmp-<pid>-...``)."""
    import glob

    from .io import TEMP_MARK, remove_if_stale

    for t in p.parent.glob(f".{glob.escape(p.name)}*{TEMP_MARK}*"):
        remove_if_stale(t)


def held() -> list[str]:
    """The paths this process holds now (resolved)."""
    return sorted(_HELD)
