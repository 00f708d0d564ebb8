"""Every ``speechrq ...`` command written in the README and the documentation parses with the real parser, and every
path it names under ``exp/demo/`` is one that ``make demo`` makes.

What is checked:

- **Where.** README.md and every page of the site (``docs/**/*.md`` less ``exclude_docs``; the rendered results pages
  included), in fenced ``sh``/``bash`` code blocks (every line), unlabelled or ``console`` blocks (lines starting
  ``$ ``) and in inline code spans that name a path under ``exp/`` (a span
  without one names a command, it does not show one to run). A line ending in ``\\`` is joined with the next; ``#`` starts a comment; a line is split at ``;``, ``&&``, ``||`` and ``|`` into commands.
- **Which.** A command is a run of words starting with ``speechrq`` (also after ``torchrun ... -m`` or
  ``python -m``); its arguments go to ``speechrq.cli.build_parser().parse_args``, and a ``SystemExit`` (an unknown
  flag, a missing argument, a bad choice) fails the test naming the file and the command. Usage synopses are not
  commands and are skipped: an inline span or line with ``[``, ``...``, ``|`` inside the arguments, or an upper-case
  placeholder where the parser wants a choice (``KIND``, ``CONFIG``, ``SUBCOMMAND``).
- **Demo paths.** An argument naming ``exp/demo/X...`` must start with a top-level output of ``make demo``
  (:data:`DEMO_OUTPUTS`, read from the Makefile's ``demo`` target) unless it is the command's own output (``--out``,
  ``out_dir=``, ``synth``'s folder); a ``exp/demo/stage{0,1}/checkpoints/step_N`` must name a step the demo keeps: a
  multiple of ``train.checkpoint_every`` of the stage's config, within its steps (stage 1 starts where it branches).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def site_pages() -> list[Path]:
    """README.md and the pages of the site: docs/**/*.md less mkdocs.yml's ``exclude_docs`` (the studies' own outputs)."""
    text = (ROOT / "mkdocs.yml").read_text()
    block = re.search(r"^exclude_docs: \|\n((?:  .*\n)+)", text, re.M).group(1)
    excluded = {line.strip().lstrip("/") for line in block.splitlines() if line.strip().endswith(".md")}
    return [ROOT / "README.md", *(p for p in sorted((ROOT / "docs").rglob("*.md")) if str(p.relative_to(ROOT / "docs")) not in excluded)]


PAGES = site_pages()
SYNOPSIS = re.compile(r"\[|\.\.\.|(?<![\w-])[A-Z]{3,}(?:_[A-Z]+)*(?![\w-])")


def demo_recipe() -> str:
    text = (ROOT / "Makefile").read_text()
    m = re.search(r"^demo:.*?\n((?:\t.*\n|\s*\n)+)", text, re.M)
    assert m, "no demo target in the Makefile"
    return m.group(1).replace("$(DEMO)", "exp/demo").replace("$(BIN)/", "")


def demo_outputs() -> set[str]:
    """The top-level entries of exp/demo/ that `make demo` writes: every exp/demo/X its recipe names, the phase log its
    ``PHASE`` variable names, and ``report.md`` (``speechrq report DEMO`` writes its ``--out`` default there: the
    parser's help says so, checked below)."""
    text = (ROOT / "Makefile").read_text()
    phase = re.search(r"^PHASE = .*$", text, re.M).group(0).replace("$(DEMO)", "exp/demo")
    return set(re.findall(r"exp/demo/([\w.]+)", demo_recipe() + phase)) | {"report.md"}


def demo_checkpoints() -> dict[str, set[int]]:
    """stage -> the checkpoint steps the demo's runs keep, from the configs the recipe names and its --set/--init-from."""
    recipe = demo_recipe().replace("\\\n", " ")
    out = {}
    for config, stage in re.findall(r"speechrq pretrain (\S+) .*?out_dir=exp/demo/(stage\d)", recipe):
        cfg = yaml.safe_load((ROOT / config).read_text())
        every, last, keep = cfg["train"]["checkpoint_every"], cfg["optim"]["max_steps"], cfg["train"]["keep_last"]
        line = next(line for line in recipe.splitlines() if f"out_dir=exp/demo/{stage}" in line)
        branch = re.search(r"--init-from \S+step_(\d+)", line)
        first = int(branch.group(1)) if branch else 0
        steps = [s for s in range(every, last + 1, every) if s > first]
        out[stage] = set(steps[-keep:])
    return out


DEMO_OUTPUTS = demo_outputs()
DEMO_CHECKPOINTS = demo_checkpoints()
OUTPUT_FLAGS = {"--out", "--prefix", "--json"}


def _spans(text: str) -> list[str]:
    """Command lines: each fenced shell block's lines (continuations joined) and each inline code span."""
    found = []
    for lang, body in re.findall(r"^```(\w*)[^\n]*\n(.*?)^```", text, re.S | re.M):
        lines = body.replace("\\\n", " ").splitlines()
        if lang in ("sh", "bash", "shell"):
            found += lines
        elif lang in ("", "console", "text"):  # a layout or an output: only its prompted lines are commands
            found += [line for line in lines if line.startswith("$ ")]
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    found += [s.replace("\n", " ") for s in re.findall(r"`([^`]+)`", prose) if "exp/" in s]
    return found


def commands(text: str) -> list[list[str]]:
    """Every speechrq command of ``text`` as its argument list (after ``speechrq``)."""
    out = []
    for line in _spans(text):
        line = line.strip().removeprefix("$ ")
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split, lexer.commenters = True, "#"
        try:
            tokens = list(lexer)
        except ValueError:  # an unbalanced quote: not a shell line
            continue
        parts, current = [], []
        for t in tokens:  # split at ; && || | outside quotes
            if t and set(t) <= set(";&|"):
                parts.append(current)
                current = []
            else:
                current.append(t)
        parts.append(current)
        for words in parts:
            for i, w in enumerate(words):
                if w == "speechrq" and (i == 0 or words[i - 1] in ("-m", "do", "then")):
                    args = words[i + 1:]
                    if args and not any(SYNOPSIS.search(a) for a in args):
                        out.append(args)
                    break
    return out


def all_commands() -> list[tuple[str, list[str]]]:
    return [(str(p.relative_to(ROOT)), c) for p in PAGES for c in commands(p.read_text())]


def _id(item) -> str:
    return f"{item[0]}: speechrq {' '.join(item[1])[:80]}"


def parse(args: list[str]):
    from speechrq.cli import build_parser

    return build_parser().parse_args(args)


def test_the_pages_hold_commands_to_check():
    found = all_commands()
    assert len(found) > 60, len(found)
    assert {a[0] for _, a in found} >= {"synth", "pretrain", "evaluate", "units", "asr", "bench"}


@pytest.mark.parametrize("page,args", all_commands(), ids=[_id(x) for x in all_commands()])
def test_every_documented_command_parses(page, args, capsys):
    try:
        parse(args)
    except SystemExit as e:
        err = capsys.readouterr().err.strip().splitlines()
        pytest.fail(f"{page}: `speechrq {' '.join(args)}` does not parse: {err[-1] if err else e}")


def demo_path_problems(args: list[str]) -> list[str]:
    """What is wrong with the exp/demo paths of one command (empty: nothing)."""
    problems = []
    own = {args[i + 1] for i, a in enumerate(args[:-1]) if a in OUTPUT_FLAGS}
    own |= {a.split("=", 1)[1] for a in args if a.startswith("out_dir=")}
    if args[:1] == ["synth"] and len(args) > 1:
        own.add(args[1])
    for a in args:
        for path in re.findall(r"exp/demo/[\w./-]*", a):
            path = path.rstrip("/.")
            top = path.split("/")[2] if path.count("/") >= 2 else ""
            if path in own or any(path.startswith(o + "/") for o in own):
                continue
            if top not in DEMO_OUTPUTS:
                problems.append(f"{path}: the demo makes no exp/demo/{top} (it makes {', '.join(sorted(DEMO_OUTPUTS))})")
                continue
            m = re.fullmatch(r"exp/demo/(stage\d)/checkpoints/step_(\d+)", path)
            if m and int(m.group(2)) not in DEMO_CHECKPOINTS.get(m.group(1), set()):
                problems.append(f"{path}: the demo keeps {m.group(1)} steps {sorted(DEMO_CHECKPOINTS.get(m.group(1), []))} only")
    return problems


def test_the_report_writes_report_md_in_the_demo_folder():
    from speechrq.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.choices and "report" in a.choices).choices["report"]
    assert "DEMO/report.md" in next(a.help for a in sub._actions if "--out" in a.option_strings)
    assert "speechrq report exp/demo" in demo_recipe()


def test_the_demo_outputs_are_read_from_the_makefile():
    assert {"corpus", "stage0", "stage1", "eval", "curves", "asr", "report.md", "phases.tsv"} <= DEMO_OUTPUTS
    assert DEMO_CHECKPOINTS["stage0"] == {250, 500, 750, 1000} and DEMO_CHECKPOINTS["stage1"] == {750, 1000}


def test_every_demo_path_is_one_the_demo_makes():
    problems = [f"{page}: `speechrq {' '.join(args)}`: {p}" for page, args in all_commands() for p in demo_path_problems(args)]
    assert not problems, "\n".join(problems)


def test_a_broken_command_and_a_path_the_demo_never_makes_are_caught(capsys):
    """The checks themselves: an unknown flag does not parse, and a checkpoint step the demo never saves is named."""
    (bad,) = commands("```sh\nspeechrq evaluate exp/demo/stage0 --no-such-flag \\\n    --out exp/x\n```\n")
    with pytest.raises(SystemExit):
        parse(bad)
    (step,) = commands("`speechrq evaluate exp/demo/stage0/checkpoints/step_00000200 --corpus exp/demo/corpus --out exp/e`")
    assert parse(step) and demo_path_problems(step) == [
        "exp/demo/stage0/checkpoints/step_00000200: the demo keeps stage0 steps [250, 500, 750, 1000] only"]
    assert demo_path_problems(["evaluate", "exp/demo/stage9", "--out", "exp/demo/new"])[0].startswith("exp/demo/stage9: the demo makes no")
