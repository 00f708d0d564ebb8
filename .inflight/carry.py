"""Issue 35's last unfinished re-run across a new checkout: the small files of every finished latent seed.

A new session's checkout holds what main holds, not exp/. ``bench latent`` resumes seed by seed from each finished
seed's ``seed.json`` (its probe scores, Figure 3 points and θ's ranking) and its runs' ``metrics.jsonl`` (the
convergence section's step times, the shipped logs); a seed without its record is not carried (it trains again from
nothing on the new machine). (The ASR tables have all landed in docs/.)

    .venv/bin/python .inflight/carry.py save      # exp/ -> .inflight/runs.tar.gz (commit it)
    .venv/bin/python .inflight/carry.py restore   # .inflight/runs.tar.gz -> exp/ (before the queue resumes)

This folder goes when issue 35's latent study has landed in docs/.
"""

import io
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHIVE = ROOT / ".inflight" / "runs.tar.gz"
LATENT = "exp/latent"


def save() -> None:
    files = []
    latent = ROOT / LATENT
    for record in sorted(latent.glob("seed*/seed.json")):
        files += [record.relative_to(ROOT), *(m.relative_to(ROOT) for m in sorted(record.parent.glob("*/metrics.jsonl")))]
    if (latent / "rank_reference.json").exists():
        files.append(Path(LATENT) / "rank_reference.json")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f in files:
            tar.add(ROOT / f, arcname=str(f))
    tmp = ARCHIVE.with_suffix(".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(ARCHIVE)
    print(f"{ARCHIVE}: {len(files)} files, {ARCHIVE.stat().st_size} bytes")


def restore() -> None:
    with tarfile.open(ARCHIVE) as tar:
        names = tar.getnames()
        clash = [n for n in names if (ROOT / n).exists()]
        if clash:
            sys.exit(f"{ARCHIVE}: {clash[0]} exists here already; restore only into a new checkout")
        tar.extractall(ROOT, filter="data")
    print(f"{ARCHIVE}: {len(names)} files restored under exp/")


if __name__ == "__main__":
    {"save": save, "restore": restore}[sys.argv[1]]()
