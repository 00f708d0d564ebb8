"""glibc's malloc told to keep freed memory for the next step (Linux): no page faults on every step's large tensors.

A CPU training step allocates and frees the same large tensors every step. At 8 x 4096 BEST-RQ heads the logits of
the masked frames and their log-probabilities are about 76 MB each. glibc serves each block above its largest mmap
threshold (32 MB) with a fresh ``mmap`` and gives it back to the kernel on ``free``, so every step pays a page fault
per 4 KiB page of each of them again: about 20 ms per 76 MB on the 2-core machine of ``benchmarks/bench_peer.py``,
where a tiny-preset step went from 0.446 to 0.382 s with this on (the same arithmetic: results are bitwise equal).

:func:`keep_freed_memory` turns ``mmap`` off for malloc (``M_MMAP_MAX = 0``) and lets the heap keep up to 1 GiB
free at its top (``M_TRIM_THRESHOLD``), so a freed block is handed out again without touching the kernel. This is
what PyTorch's CPU performance guide gets from jemalloc or tcmalloc, done with the C library already loaded.

What it costs: memory freed below the heap's top stays with the process (it is reused, not returned), so the
resident size stays near the run's peak instead of falling back between steps, and the peak itself can grow a little
(30 tiny-preset steps at 8 x 4096 heads: 954 MiB peak against 869 MiB, and 0.22 million minor page faults against
1.38 million).

Left alone where the user chose an allocator already (``GLIBC_TUNABLES`` with a ``glibc.malloc`` setting,
``MALLOC_MMAP_MAX_``/``MALLOC_TRIM_THRESHOLD_``/``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TOP_PAD_``, or jemalloc/tcmalloc
in ``LD_PRELOAD``), where ``SPEECHRQ_KEEP_FREED_MEMORY`` is ``0`` (or ``false``, ``no``, ``off``), and off
Linux/glibc. ``speechrq``'s command line calls it once at start, and each spawned worker (:mod:`speechrq.parallel`)
at its own: a program that calls ``speechrq.cli.main`` in its own process has its malloc set for the rest of that
process too. ``speechrq.units.sample``'s explicit ``malloc_trim`` still gives freed memory back where it calls it.
"""

from __future__ import annotations

import os
import sys

__all__ = ["keep_freed_memory"]

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_MAX = -4
TRIM_THRESHOLD = 1 << 30
USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")


def _user_chose() -> str | None:
    """What says the user chose the allocator, or None."""
    if os.environ.get("SPEECHRQ_KEEP_FREED_MEMORY", "1").strip().lower() in ("0", "false", "no", "off"):
        return "SPEECHRQ_KEEP_FREED_MEMORY"
    for name in USER_SETTINGS:
        if name in os.environ:
            return name
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES"
    preload = os.environ.get("LD_PRELOAD", "")
    if "jemalloc" in preload or "tcmalloc" in preload:
        return "LD_PRELOAD"
    return None


def _glibc() -> bool:
    """Whether this process runs on glibc (not musl or another C library)."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError, AttributeError):
        return False


def keep_freed_memory() -> bool:
    """Set glibc's malloc to reuse freed blocks (see the module's text); True if it was set by this call.

    Idempotent; never raises (a C library without ``mallopt`` or a refused setting leaves malloc as it was).
    """
    if _user_chose() is not None or not sys.platform.startswith("linux") or not _glibc():
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # the trim threshold first: with mmap off, a refused trim setting would leave freed blocks returned to the kernel
    return bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(mallopt(M_MMAP_MAX, 0))
