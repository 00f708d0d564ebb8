"""Phase times of a long job (``make demo``): run each phase through this module, then print the table.

``python -m speechrq.phases FILE --run ID NAME COMMAND...`` runs ``COMMAND``, prints it, and appends
``ID  NAME  seconds  exit status`` to the tab-separated ``FILE``; its exit status is the command's.
``python -m speechrq.phases FILE --run ID --summary [--json OUT]`` prints run ``ID``'s phases with their total
(and writes them to ``OUT`` as JSON: ``{"run", "phases": [{"name", "seconds", "exit"}], "total_seconds"}``).
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


def phases_json(file: Path, run: str) -> dict:
    """Run ``run``'s phases as a dict (what ``--json`` writes and the documentation's results page renders)."""
    rows = [line.split("\t") for line in file.read_text().splitlines() if line.startswith(f"{run}\t")] if file.exists() else []
    phases = [{"name": r[1], "seconds": float(r[2]), "exit": int(r[3])} for r in rows]
    return {"run": run, "phases": phases, "total_seconds": sum(p["seconds"] for p in phases)}


def format_phases(d: dict) -> str:
    """A Markdown table of :func:`phases_json`'s phases and their total."""
    lines = ["| phase | wall time |", "|---|---|"]
    lines += [f"| {p['name']} | {minutes(p['seconds'])}{'' if p['exit'] == 0 else ' (exit ' + str(p['exit']) + ')'} |" for p in d["phases"]]
    lines.append(f"| total | {minutes(d['total_seconds'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[1] != "--run":
        print("usage: python -m speechrq.phases FILE --run ID (NAME COMMAND... | --summary [--json OUT])", file=sys.stderr)
        return 2
    file, run, rest = Path(argv[0]), argv[2], argv[3:]
    if rest[:1] == ["--summary"]:
        if not (len(rest) == 1 or (len(rest) == 3 and rest[1] == "--json")):
            print("python -m speechrq.phases: --summary takes only --json OUT", file=sys.stderr)
            return 2
        print(summary(file, run))
        if len(rest) == 3:
            import json

            Path(rest[2]).write_text(json.dumps(phases_json(file, run), indent=1) + "\n")
        return 0
    if len(rest) < 2:
        print("python -m speechrq.phases: give a phase name and its command", file=sys.stderr)
        return 2
    return run_phase(file, run, rest[0], rest[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
