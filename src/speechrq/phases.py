"""Phase times of a long job (``make demo``): run each phase through this module, then print the table.

``python -m speechrq.phases FILE --run ID NAME COMMAND...`` runs ``COMMAND``, prints it, and appends
``ID  NAME  seconds  exit status`` to the tab-separated ``FILE``; its exit status is the command's.
``python -m speechrq.phases FILE --run ID --summary`` prints run ``ID``'s phases with their total.
A second ``make demo`` reuses what the first finished, so its phases are short; each run keeps its own rows.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def minutes(seconds: float) -> str:
    """``437.2`` -> ``7 min 17 s``."""
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def run_phase(file: Path, run: str, name: str, command: list[str]) -> int:
    print("$ " + " ".join(command), flush=True)
    start = time.monotonic()
    try:
        rc = subprocess.call(command)
    except OSError as e:
        print(f"{command[0]}: {e.strerror}", file=sys.stderr)
        rc = 127
    file.parent.mkdir(parents=True, exist_ok=True)
    with open(file, "a") as f:  # one short line per phase: appended whole
        f.write(f"{run}\t{name}\t{time.monotonic() - start:.1f}\t{rc}\n")
    return rc


def summary(file: Path, run: str) -> str:
    rows = [line.split("\t") for line in file.read_text().splitlines() if line.startswith(f"{run}\t")] if file.exists() else []
    if not rows:
        return f"{file}: no phase of run {run}"
    width = max(len(r[1]) for r in rows)
    lines = [f"{'phase':<{width}}  time", *(f"{r[1]:<{width}}  {minutes(float(r[2]))}" + ("" if r[3] == "0" else f" (exit {r[3]})")
                                          for r in rows)]
    lines.append(f"{'total':<{width}}  {minutes(sum(float(r[2]) for r in rows))}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[1] != "--run":
        print("usage: python -m speechrq.phases FILE --run ID (NAME COMMAND... | --summary)", file=sys.stderr)
        return 2
    file, run, rest = Path(argv[0]), argv[2], argv[3:]
    if rest == ["--summary"]:
        print(summary(file, run))
        return 0
    if len(rest) < 2:
        print("python -m speechrq.phases: give a phase name and its command", file=sys.stderr)
        return 2
    return run_phase(file, run, rest[0], rest[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
