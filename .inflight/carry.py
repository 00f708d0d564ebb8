"""Issue 35's unfinished re-runs across a new checkout: the small files of every finished ASR run and latent seed.

A new session's checkout holds what main holds, not exp/. Each ``asr compare`` folder resumes from its
``compare.json`` and its finished runs' ``config.yaml``, ``metrics.jsonl`` and ``errors_*.json`` (the units
and checkpoints are not read again once a run is finished and recorded), so those are carried here:

``bench latent`` resumes seed by seed from each finished seed's ``seed.json`` (its probe scores, Figure 3 points and θ's
ranking) and its runs' ``metrics.jsonl`` (the convergence section's step times, the shipped logs); a seed without its
record is not carried (it trains again from nothing on the new machine).

    .venv/bin/python .inflight/carry.py save      # exp/ -> .inflight/runs.tar.gz (commit it)
    .venv/bin/python .inflight/carry.py restore   # .inflight/runs.tar.gz -> exp/ (before the queue resumes)

This folder goes when issue 35's tables have landed in docs/.
"""

import io
import json
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHIVE = ROOT / ".inflight" / "runs.tar.gz"
COMPARES = ["exp/table2", "exp/mel_k500", "exp/mel_k1000", "exp/mel_k2000", "exp/ml/asr"]
RUN_FILES = ["config.yaml", "metrics.jsonl", "errors_dev.json", "errors_test.json"]
LATENT = "exp/latent"


def save() -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from speechrq.studies.asr_runs import run_dir

    files = []
    for out in map(Path, COMPARES):
        if not (ROOT / out / "compare.json").exists():
            continue
        files += [out / "identity.json", out / "compare.json"]
        for name, row in json.loads((ROOT / out / "compare.json").read_text())["rows"].items():
            for seed in row.get("seeds", {}):
                run = run_dir(out, row, int(seed))
                files += [run / f for f in RUN_FILES if (ROOT / run / f).exists()]
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
