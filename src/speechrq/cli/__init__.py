"""``speechrq``: one command, a sub-command per job, ``--help`` everywhere.

Heavy imports (torch, lhotse) happen inside the sub-commands, so ``--help`` and
argument errors answer at once. User mistakes surface as one line,
``speechrq: error: ...``, with exit status 2 and no traceback.

One module per command group, each holding its handlers beside the parser that calls them (``add_commands(sub)``):
``data`` (synth, data), ``features``, ``pretrain`` (pretrain, export), ``evaluate``, ``units``, ``asr`` and
``asr_decode``, ``targets``, ``report``, ``configs`` (the shipped configs), ``bench``; ``common`` holds what they share, ``reference`` renders the parser
(its tree for the snapshot test, a Markdown reference page).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..allocator import keep_freed_memory
from ..errors import OtherRankFailed, SpeechrqError, Terminated, install_termination_handlers
from . import asr, bench, configs, data, evaluate, features, pretrain, report, targets, units

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = argparse.ArgumentParser(prog="speechrq", description="Random-quantization speech pre-training and discrete speech units.")
    p.add_argument("--version", action="version", version=f"speechrq {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (data, features, pretrain, evaluate, units, asr, targets, report, configs, bench):  # the order of `speechrq --help`
        group.add_commands(sub)
    return p


def _other_rank() -> str | None:
    """Under torchrun, this process's rank when it is not rank 0 (None otherwise)."""
    rank = os.environ.get("RANK", "0")
    return rank if os.environ.get("WORLD_SIZE", "1") != "1" and rank != "0" else None


RANK0_GRACE_SECONDS = 3.0


def _let_rank0_speak() -> None:
    """A rank that leaves silently because rank 0 refuses the job waits a moment first: torchrun ends the whole group
    when one rank exits with an error, and rank 0 must have printed why before that."""
    import time

    time.sleep(RANK0_GRACE_SECONDS)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="speechrq: %(levelname)s: %(message)s")
    parser = build_parser()
    rank = _other_rank()
    if rank is None:
        args = parser.parse_args(argv)
    else:  # every rank parses the same command line: a usage error is rank 0's to print
        import contextlib
        import io

        with contextlib.redirect_stderr(io.StringIO()):
            args = parser.parse_args(argv)
    install_termination_handlers()  # SIGTERM/SIGHUP unwind like an exception: temporaries removed, nothing half-written
    keep_freed_memory()  # no page faults on every step's large tensors (speechrq.allocator)
    try:
        args.func(args)
    except SpeechrqError as e:
        from ..distributed import share_started

        # before its share of a pass, a rank refuses exactly what rank 0 refuses (same inputs, same code): said once
        if rank is None or share_started():
            print(f"speechrq: error{'' if rank is None else f' (rank {rank})'}: {e}", file=sys.stderr)
        else:
            _let_rank0_speak()
        return 2
    except OtherRankFailed:  # rank 0 said why, once
        _let_rank0_speak()
        return 2
    except KeyboardInterrupt:
        if rank is None:
            print("speechrq: interrupted", file=sys.stderr)
        return 130
    except Terminated as t:
        import signal

        if rank is None:
            again = ("the same command with --resume continues from the last checkpoint" if getattr(args, "resume", None) is False
                     else "the same command continues from what was finished")  # a training refuses its folder without it
            print(f"speechrq: stopped by {signal.Signals(t.signum).name}; nothing half-written was kept: {again}", file=sys.stderr)
        return 128 + t.signum
    except Exception as e:  # a write that no atomic writer saw: a full disk is still one line
        from ..io import is_disk_full

        if not is_disk_full(e):
            raise
        where = f" while writing {e.filename}" if getattr(e, "filename", None) else ""
        print(f"speechrq: error{'' if rank is None else f' (rank {rank})'}: no space left on the device{where} "
              f"({os.strerror(e.errno) if getattr(e, 'errno', None) else e}); free space and run the same command again",
              file=sys.stderr)
        return 2
    return 0
