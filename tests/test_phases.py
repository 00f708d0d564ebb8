"""``python -m speechrq.phases``: each phase's command runs, its time is kept per run, failures pass through."""

from __future__ import annotations

import json
import sys

from speechrq.phases import main, minutes


def test_phases_time_each_command_and_sum_one_run(tmp_path, capsys):
    file = tmp_path / "demo" / "phases.tsv"
    assert main([str(file), "--run", "a", "sleep", sys.executable, "-c", "import time; time.sleep(0.3)"]) == 0
    assert main([str(file), "--run", "a", "fails", sys.executable, "-c", "raise SystemExit(3)"]) == 3  # make stops on it
    assert main([str(file), "--run", "b", "other run", sys.executable, "-c", "pass"]) == 0
    rows = [line.split("\t") for line in file.read_text().splitlines()]
    assert [(r[0], r[1], r[3]) for r in rows] == [("a", "sleep", "0"), ("a", "fails", "3"), ("b", "other run", "0")]
    assert float(rows[0][2]) >= 0.3
    capsys.readouterr()
    assert main([str(file), "--run", "a", "--summary"]) == 0
    out = capsys.readouterr().out
    assert "sleep" in out and "fails" in out and "(exit 3)" in out and "other run" not in out and "total" in out
    assert main([str(file), "--run", "a", "missing", "no-such-command-here"]) == 127
    assert main([str(file), "--run"]) == 2


def test_minutes():
    assert minutes(437.2) == "7 min 17 s" and minutes(59.6) == "1 min 00 s" and minutes(12) == "12 s"


def test_the_summary_as_json_is_what_the_results_page_renders(tmp_path):
    from speechrq.phases import format_phases

    file = tmp_path / "phases.tsv"
    file.write_text("r1\tcorpus\t10.0\t0\nr1\ttraining\t200.5\t1\nr2\tcorpus\t3.0\t0\n")
    assert main([str(file), "--run", "r1", "--summary", "--json", str(tmp_path / "p.json")]) == 0
    d = json.loads((tmp_path / "p.json").read_text())
    assert d == {"run": "r1", "phases": [{"name": "corpus", "seconds": 10.0, "exit": 0}, {"name": "training", "seconds": 200.5, "exit": 1}],
                 "total_seconds": 210.5}
    assert format_phases(d).splitlines()[2:] == ["| corpus | 10 s |", "| training | 3 min 20 s (exit 1) |", "| total | 3 min 30 s |"]
    assert main([str(file), "--run", "r1", "--summary", "--json"]) == 2  # --json needs a path
