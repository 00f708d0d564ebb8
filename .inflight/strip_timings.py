"""Take the training times out of a shipped ``asr compare`` or ``asr tables`` JSON timed on shared cores, saying why.

    .venv/bin/python .inflight/strip_timings.py docs/asr_compare_seeds_tiny_bestrq.json "WHY"

Removes ``s_per_step`` and ``epoch_s`` from every row and every seed's run (``asr tables``: Figure 6 and its PNG too)
and sets ``timings_removed`` to WHY (the results page then says why they are not shown); the errors, intervals and
verdicts are untouched.
"""

import json
import sys
from pathlib import Path


def main(path: str, why: str) -> None:
    p = Path(path)
    d = json.loads(p.read_text())
    if "rows" in d:  # an asr compare
        for row in d["rows"].values():
            for r in (row, *row.get("seeds", {}).values()):
                r.pop("s_per_step", None)
                r.pop("epoch_s", None)
    else:  # asr tables: Figure 6 and the rows' step times, and the figure's file
        d.pop("figure6", None)
        for key in ("table1", "table2", "table3", "table4"):
            for r in d.get(key) or []:
                r.pop("s_per_step", None)
                r.pop("epoch_s", None)
        p.with_name(p.stem + "_figure6.png").unlink(missing_ok=True)
    d["timings_removed"] = why
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(d, indent=2, sort_keys=True) + "\n")
    tmp.replace(p)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
