"""The command line's surface, pinned: every command, flag, default, help text and rendered ``--help`` equals the snapshot
in tests/fixtures/cli_parser.json; the Markdown reference page names every command and flag.

A flag changed on purpose is a new snapshot: ``python tests/test_cli_parser.py`` rewrites the fixture (same pinned
terminal width and core count as the test), and the diff of the fixture shows what a user will see change.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
from pathlib import Path

import pytest

from speechrq.cli import build_parser
from speechrq.cli.reference import commands, format_cli_reference, parser_tree

SNAPSHOT = Path(__file__).parent / "fixtures" / "cli_parser.json"
COLUMNS = "100"  # argparse wraps --help at the terminal's width
CORES = 2  # --workers defaults to this process's cores: the snapshot was taken with 2
SNAPSHOT_PYTHON = (3, 11)  # argparse's rendering (usage and help text) changes between Python versions


def _pin(monkeypatch, cores: int = CORES) -> None:
    """The environment the parser reads while it is built: terminal width, core count, no colour (Python 3.14)."""
    monkeypatch.setenv("COLUMNS", COLUMNS)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: cores)


def _without_rendering(tree):
    """The tree less argparse's rendered text (usage, help), which only the snapshot's Python version reproduces."""
    if isinstance(tree, dict):
        parser = "actions" in tree  # a parser's help is its rendered --help; an action's is the flag's own text
        return {k: _without_rendering(v) for k, v in tree.items() if not (parser and k in ("usage", "help"))}
    if isinstance(tree, list):
        return [_without_rendering(v) for v in tree]
    return tree


def _where(tree: dict, key) -> str:
    """A readable step of the path to a difference: a sub-command by name, an action by its flags."""
    if isinstance(key, int) and isinstance(tree, list) and isinstance(tree[key], dict) and "dest" in tree[key]:
        a = tree[key]
        return f"actions[{key}] ({'/'.join(a['option_strings']) or a['dest']})"
    return str(key)


def first_difference(expected, actual, path: tuple[str, ...] = ()) -> str | None:
    """None when equal, else the path to the first difference and what differs there (long text as a line diff)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            if key not in actual:
                return f"{' > '.join((*path, str(key)))}: in the snapshot, gone from the parser"
            if key not in expected:
                return f"{' > '.join((*path, str(key)))}: new in the parser, not in the snapshot"
            if (why := first_difference(expected[key], actual[key], (*path, str(key)))) is not None:
                return why
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        for i, (e, a) in enumerate(zip(expected, actual)):
            label = _where(expected, i)  # "actions > actions[3] (--k)" said once
            if (why := first_difference(e, a, (*path[:-1], label) if label.startswith("actions[") else (*path, label))):
                return why
        if len(expected) != len(actual):
            return f"{' > '.join(path)}: {len(expected)} items in the snapshot, {len(actual)} in the parser"
        return None
    if expected == actual:
        return None
    where = " > ".join(path)
    if isinstance(expected, str) and isinstance(actual, str) and ("\n" in expected or len(expected) > 60):
        expected_lines = expected.splitlines() if "\n" in expected else re.findall(r".{1,60}(?:\s|$)|.{1,60}", expected)
        actual_lines = actual.splitlines() if "\n" in actual else re.findall(r".{1,60}(?:\s|$)|.{1,60}", actual)
        diff = difflib.unified_diff(expected_lines, actual_lines, "snapshot", "parser", lineterm="", n=1)
        return f"{where}:\n" + "\n".join(diff)
    return f"{where}: snapshot {expected!r}, parser {actual!r}"


def live_tree(monkeypatch) -> dict:
    _pin(monkeypatch)
    return json.loads(json.dumps(parser_tree(build_parser())))  # tuples as lists, as the JSON snapshot holds them


def test_the_parser_is_the_snapshot(monkeypatch):
    expected, actual = json.loads(SNAPSHOT.read_text()), live_tree(monkeypatch)
    if sys.version_info[:2] != SNAPSHOT_PYTHON:
        expected, actual = _without_rendering(expected), _without_rendering(actual)
    why = first_difference(expected, actual)
    assert why is None, f"the command line differs from {SNAPSHOT.name} (on purpose? python {__file__} rewrites it):\n{why}"


def test_a_difference_is_reported_at_its_place():
    """The report names the command and flag and shows what changed, not two 170 kB trees."""
    tree = json.loads(SNAPSHOT.read_text())
    changed = json.loads(SNAPSHOT.read_text())
    units = next(a for a in changed["actions"] if a["dest"] == "command")["subcommands"]["units"]
    fit = next(a for a in units["actions"] if a["dest"] == "units_command")["subcommands"]["fit"]
    next(a for a in fit["actions"] if a["option_strings"] == ["--k"])["default"] = "'5'"
    why = first_difference(tree, changed)
    assert why == ("actions[2] (command) > subcommands > units > actions[1] (units_command) > subcommands > fit > "
                   "actions[15] (--k) > default: snapshot '2000', parser \"'5'\""), why
    assert first_difference(tree, json.loads(SNAPSHOT.read_text())) is None


def test_the_reference_names_every_command_and_every_flag():
    page = format_cli_reference()
    paths = list(commands(build_parser()))
    assert len(paths) > 25
    for path, parser in paths:
        assert f"`{parser.prog}`" in page, path
        if parser.description:
            assert " ".join(parser.description.split()) in page, path
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                assert all(f"`{parser.prog} {name}`" in page for name in action.choices), path
                continue
            for flag in action.option_strings or [action.metavar or action.dest]:
                assert f"`{flag}`" in page, (path, flag)


def test_every_table_row_of_the_reference_has_its_four_cells():
    for line in format_cli_reference().splitlines():
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line)[1:-1]
            assert len(cells) in (2, 4), line


def test_the_reference_escapes_pipes_in_cells():
    p = argparse.ArgumentParser(prog="demo", description="Demo.")
    p.add_argument("--sep", default="a|b", help="the separator: | or ;")
    sub = p.add_subparsers(dest="command")
    sub.add_parser("go", help="either|or")
    page = format_cli_reference(p)
    assert "| `--sep` | `SEP` | `a\\|b` | the separator: \\| or ; |" in page
    assert "| `demo go` | either\\|or |" in page


def test_the_reference_does_not_depend_on_the_machine(monkeypatch):
    """--workers defaults to the cores of whoever runs it; the page says "all cores" on every machine."""
    _pin(monkeypatch, cores=1)
    one = format_cli_reference()
    _pin(monkeypatch, cores=64)
    assert format_cli_reference() == one
    assert "| `--workers` | `WORKERS` | all cores |" in one


def test_the_reference_shows_the_flags_default_and_value():
    page = format_cli_reference()
    assert "| `--kind` | `{kmeans,rvq,pq,rpq}` | `kmeans` | quantizer (default: kmeans) |" in page
    assert "| `--set` | `KEY=VALUE` (repeatable) |" in page
    assert "| `--corpus` (required) | `CORPUS` |  |" in page
    assert "| `AUDIO` | `AUDIO [AUDIO ...]` |  | sound files |" in page


if __name__ == "__main__":  # rewrite the snapshot from the live parser, in the test's pinned environment
    with pytest.MonkeyPatch.context() as mp:
        SNAPSHOT.write_text(json.dumps(live_tree(mp), indent=1, sort_keys=True))
    print(f"{SNAPSHOT}: written")
