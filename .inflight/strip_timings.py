"""Take the training times out of a shipped ``asr compare`` JSON whose runs were timed on shared cores, saying why.

    .venv/bin/python .inflight/strip_timings.py docs/asr_compare_seeds_tiny_bestrq.json "WHY"

Removes ``s_per_step`` and ``epoch_s`` from every row and every seed's run and sets ``timings_removed`` to WHY (the
results page then says "Times per epoch: not shown. WHY"); the errors, intervals and verdicts are untouched.
"""

import json
import sys
from pathlib import Path


def main(path: str, why: str) -> None:
    p = Path(path)
    d = json.loads(p.read_text())
    for row in d["rows"].values():
        for r in (row, *row.get("seeds", {}).values()):
            r.pop("s_per_step", None)
            r.pop("epoch_s", None)
    d["timings_removed"] = why
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(d, indent=2, sort_keys=True) + "\n")
    tmp.replace(p)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
