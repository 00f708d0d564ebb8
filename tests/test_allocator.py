"""glibc's malloc keeps freed memory once speechrq sets it: a large block freed and allocated again costs no page faults."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="speechrq.allocator sets glibc's malloc only")

# a 76 MB block (one BEST-RQ step's logits at 8 x 4096 heads) allocated, written and freed 5 times: the minor page
# faults of the last 4 rounds
PROBE = """
import ctypes, resource, sys
from speechrq.allocator import keep_freed_memory
print(keep_freed_memory())
{then}
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
n = 76 << 20
faults = []
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    libc.free(p)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(faults[1:]))
"""


def _probe(then: str = "", **env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "SPEECHRQ_KEEP_FREED_MEMORY", "LD_PRELOAD")}
    out = subprocess.run([sys.executable, "-c", PROBE.replace("{then}", then)], env=clean | env, capture_output=True, text=True, check=True).stdout.split()
    return out[0], int(out[1])


def test_a_freed_large_block_is_reused_without_page_faults():
    """Opted out, each round maps the block afresh and faults it in again (19456 faults a round with 4 KiB pages, fewer
    with huge pages); kept, the rounds after the first reuse it and fault at most a tenth as often."""
    was_set, fresh = _probe(SPEECHRQ_KEEP_FREED_MEMORY="0")
    assert was_set == "False"
    assert fresh >= 4 * 16, fresh  # at least 16 faults a round: pages of at most 76 MB / 16 (2 MiB huge pages included)
    was_set, kept = _probe()
    assert was_set == "True"
    assert kept * 10 < fresh, (kept, fresh)


def test_the_users_own_allocator_settings_win():
    for env in ({"MALLOC_MMAP_MAX_": "65536"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"},
                {"MALLOC_TRIM_THRESHOLD_": "131072"}, {"SPEECHRQ_KEEP_FREED_MEMORY": "off"}):
        assert _probe(**env)[0] == "False", env


def test_a_command_sets_it_and_so_does_each_spawned_worker():
    """A command run through ``speechrq.cli.main`` leaves malloc set (probed after it, opted out of here so that only
    the command sets it); each spawned worker's start calls it too."""
    import inspect

    from speechrq import parallel

    command = "import io, contextlib\nfrom speechrq.cli import main\nwith contextlib.redirect_stdout(io.StringIO()): main(['configs', 'list'])"
    _, fresh = _probe(SPEECHRQ_KEEP_FREED_MEMORY="0")
    _, kept = _probe(then=command.replace("main(", "__import__('os').environ.pop('SPEECHRQ_KEEP_FREED_MEMORY'); main("),
                     SPEECHRQ_KEEP_FREED_MEMORY="0")
    assert kept * 10 < fresh, (kept, fresh)
    assert "keep_freed_memory()" in inspect.getsource(parallel._init_worker)
