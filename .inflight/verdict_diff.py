"""Every verdict of a shipped results JSON at a git revision against the working tree's (issue 35's closing note).

    .venv/bin/python .inflight/verdict_diff.py c0d5d3d docs/asr_compare_seeds_tiny_bestrq.json [--all]

Each verdict-bearing entry is named by its path, with list items named by their row / baseline / arm / task; its
difference and 95% interval are read from the entry itself or from its ``cer`` (the compare tables' key). Prints a
Markdown table of the verdicts that changed (``--all``: every one), then a count.
"""

import json
import subprocess
import sys

NAMES = ("row", "baseline", "against", "arm", "task", "name", "claim", "system", "what")


def entries(node, path=()):
    if isinstance(node, dict):
        if "verdict" in node and isinstance(node["verdict"], str):
            yield " / ".join(path), node
        for k, v in node.items():
            yield from entries(v, (*path, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            label = " vs ".join(str(v[n]) for n in NAMES if isinstance(v, dict) and n in v) or str(i)
            yield from entries(v, (*path, label))


def interval(e):
    for d in (e, e.get("cer") if isinstance(e.get("cer"), dict) else None):
        if d and "ci" in d:
            return f"{d['difference']:+.2f} [{d['ci'][0]:+.2f}, {d['ci'][1]:+.2f}]"
    return "-"


def named(d):
    """An ``asr tables`` JSON's row differences named by their baseline (``baselines[i]``; older files had no ``against``)."""
    for key in ("table2", "table3"):
        for r in d.get(key) or []:
            for i, x in enumerate(r.get("differences") or []):
                x.setdefault("against", d["baselines"][i])
    return d


def main(rev, path, show_all):
    old = dict(entries(named(json.loads(subprocess.run(["git", "show", f"{rev}:{path}"], check=True, capture_output=True, text=True).stdout))))
    new = dict(entries(named(json.load(open(path)))))
    print(f"| comparison | {rev} | now |\n|---|---|---|")
    changed = 0
    for key in list(old) + [k for k in new if k not in old]:
        o, n = old.get(key), new.get(key)
        ov = f"{interval(o)} {o['verdict']}" if o else "(absent)"
        nv = f"{interval(n)} {n['verdict']}" if n else "(absent)"
        differs = (o or {}).get("verdict") != (n or {}).get("verdict")
        changed += differs
        if differs or show_all:
            print(f"| {key} | {ov} | {nv} |")
    print(f"\n{changed} of {len(set(old) | set(new))} verdicts changed")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], "--all" in sys.argv[3:])
