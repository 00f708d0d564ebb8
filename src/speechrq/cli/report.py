"""``speechrq report``: every claim of both papers with the number measured here."""

from __future__ import annotations

from pathlib import Path

from ..errors import SpeechrqError
from .common import _holds


@_holds(lambda a: a.out or str(Path(a.demo) / "report.md"), "the report")
def cmd_report(args) -> None:
    from ..io import atomic_write_text
    from ..studies.report import demo_report

    if not Path(args.demo).is_dir():
        raise SpeechrqError(f"{args.demo}: not a directory (the demo's output folder, e.g. exp/demo)")
    out = Path(args.out) if args.out else Path(args.demo) / "report.md"
    text = demo_report(args.demo, args.docs)
    if not Path(args.docs).is_dir():  # an installed speechrq outside a clone: the shipped studies are in the repository
        import sys

        print(f"note: {args.docs}: no such folder here, so the rows of the shipped studies say 'not measured'; "
              f"--docs names the docs/ folder of a speechrq clone", file=sys.stderr)
    atomic_write_text(out, text)
    print(text, end="")
    print(f"{out}: written")


def add_commands(sub) -> None:
    """``report``."""
    rp = sub.add_parser("report", help="every claim of both papers with the number measured here, its noise and a verdict",
                        description="Render DEMO/report.md from the demo's JSON outputs and the shipped studies in --docs.")
    rp.add_argument("demo", metavar="DEMO", help="the demo's output folder (e.g. exp/demo)")
    rp.add_argument("--docs", default="docs", help="folder of the shipped study JSONs (default: docs)")
    rp.add_argument("--out", help="output file (default: DEMO/report.md)")
    rp.set_defaults(func=cmd_report)
