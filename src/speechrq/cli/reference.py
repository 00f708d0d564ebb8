"""The parser, rendered: its whole tree as plain data (the snapshot ``tests/test_cli_parser.py`` compares) and a Markdown
reference page of every command and flag.

Both walk the live parser, so neither can drift from ``speechrq --help``. The help text argparse renders wraps at the
terminal's width: set ``COLUMNS`` (the snapshot is taken at 100) for output that does not depend on the terminal.
"""

from __future__ import annotations

import argparse


def parser_tree(parser: argparse.ArgumentParser) -> dict:
    """Everything a user can see or type of ``parser`` and its sub-parsers, as JSON-able data: prog, description,
    usage and help as rendered, and per action its class, flags, dest, nargs, const, default, type, choices, required,
    help and metavar; a parser's ``set_defaults`` by qualified name (the handler functions' module paths left out)."""
    out = {"prog": parser.prog, "description": parser.description, "epilog": parser.epilog, "usage": parser.format_usage(),
           "help": parser.format_help(), "actions": []}
    for a in parser._actions:
        d = {"cls": type(a).__name__, "option_strings": a.option_strings, "dest": a.dest, "nargs": a.nargs,
             "const": repr(a.const), "default": repr(a.default), "type": getattr(a.type, "__name__", repr(a.type)),
             "choices": None if a.choices is None or isinstance(a, argparse._SubParsersAction) else list(a.choices),
             "required": a.required, "help": a.help, "metavar": a.metavar}
        if isinstance(a, argparse._SubParsersAction):
            d["subcommands"] = {name: parser_tree(sp) for name, sp in a.choices.items()}
            d["choices_help"] = [(c.dest, c.help) for c in a._choices_actions]
        out["actions"].append(d)
    out["defaults"] = {k: getattr(v, "__qualname__", repr(v)) for k, v in parser._defaults.items()}
    return out


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """``(path, parser)`` for the parser and every sub-parser under it, depth first in the order of ``--help``."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


def _cell(text: str) -> str:
    """One Markdown table cell: whitespace collapsed, ``|`` escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _description(text: str | None, prog: str) -> str:
    """A parser's description as ``--help`` prints it (argparse expands ``%(prog)s`` only when the text holds it)."""
    text = " ".join((text or "").split())
    return text % {"prog": prog} if "%(prog)" in text else text


def _value(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    """What follows the flag on the command line, as ``--help`` shows it (``N``, ``{cpu,cuda}``, ``OUT [OUT ...]``)."""
    if action.nargs == 0 or (not action.option_strings and action.nargs is None):  # a flag, or a positional named already
        return ""
    default = action.dest if not action.option_strings else action.dest.upper()
    value = f"`{formatter._format_args(action, default)}`"
    return value + (" (repeatable)" if isinstance(action, argparse._AppendAction) else "")


def _default(action: argparse.Action) -> str:
    """The default as the page shows it: ``doc_default`` when the flag sets one (a default computed from the machine,
    e.g. its core count, which the page must not depend on), nothing for none, off or a flag without a value."""
    if getattr(action, "doc_default", None) is not None:
        return action.doc_default
    if action.nargs == 0 or action.default is None or action.default is argparse.SUPPRESS:
        return ""
    return f"`{action.default}`"


def _flag(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    return ", ".join(f"`{s}`" for s in action.option_strings) + (" (required)" if action.required else "")


def format_cli_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """A Markdown page: every command and sub-command of ``parser`` (default: ``speechrq``'s), its description, its
    sub-commands, and a table of its arguments (flags, value, default, help)."""
    if parser is None:
        from . import build_parser

        parser = build_parser()
    lines = ["# Command-line reference", "",
             f"Every command of `{parser.prog}` and its arguments, generated from the parser itself "
             f"(`speechrq.cli.reference.format_cli_reference`): `{parser.prog} COMMAND --help` says the same.", ""]
    for path, p in commands(parser):
        formatter = p._get_formatter()
        lines += [f"{'#' * min(2 + max(len(path) - 1, 0), 6)} `{p.prog}`", ""]
        if (text := _description(p.description, p.prog)):
            lines += [text, ""]
        rows = []
        for action in p._actions:
            if action.help is argparse.SUPPRESS:
                continue
            if isinstance(action, argparse._SubParsersAction):
                lines += ["| Command | Does |", "| --- | --- |"]
                lines += [f"| `{p.prog} {c.dest}` | {_cell(formatter._expand_help(c) if c.help else '')} |"
                          for c in action._choices_actions]
                lines.append("")
                continue
            help_text = formatter._expand_help(action) if action.help else ""
            rows.append(f"| {_cell(_flag(action))} | {_cell(_value(action, formatter))} | {_cell(_default(action))} "
                        f"| {_cell(help_text)} |")
        if rows:
            lines += ["| Argument | Value | Default | Help |", "| --- | --- | --- | --- |", *rows, ""]
    return "\n".join(lines)


if __name__ == "__main__":  # `make docs`: python -m speechrq.cli.reference docs/reference/cli.md
    import sys

    from ..io import atomic_write_text

    atomic_write_text(sys.argv[1], format_cli_reference() + "\n")
