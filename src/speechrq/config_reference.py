"""The config reference: every key of the YAML configs speechrq reads, as Markdown, made from the dataclasses.

Each config dataclass documents itself where it is defined: a class docstring, and after every field the string
literal that follows it (an *attribute docstring*, which mkdocstrings/griffe also render in the API reference)::

    @dataclass
    class DataConfig:
        \"\"\"The ``data:`` section of a pre-training config ...\"\"\"

        max_duration: float = 60.0
        \"\"\"Seconds of audio per micro-batch on each rank ... > 0, and at least ``max_utterance_duration``.\"\"\"

:func:`field_docs` reads them from the source with :mod:`ast`; :func:`format_config_reference` renders one table per
section of each config in :data:`CONFIGS` (key, type, default, meaning). ``tests/test_config_reference.py`` checks
that every field has a meaning and a row, and that no row names a field that does not exist.

This module sits above :mod:`speechrq.config` (which loads configs and knows none of them) and imports the configs
of :mod:`speechrq.pretrain` and :mod:`speechrq.asr`.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import re
import textwrap
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from .asr.config import ASRConfig
from .pretrain.config import PretrainConfig

# (name, root dataclass, the command that reads it): every config :func:`speechrq.config.load_config` builds
CONFIGS: list[tuple[str, type, str]] = [
    ("pretrain", PretrainConfig, "speechrq pretrain CONFIG"),
    ("asr", ASRConfig, "speechrq asr train CONFIG"),
]


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """``{field: its attribute docstring}`` for each field of dataclass ``cls`` that has one (cleaned of indentation)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = next(node for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and node.name == cls.__name__).body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def class_doc(cls: type) -> str:
    """The class's own docstring (not the signature dataclasses make up for a class without one), or ``""``."""
    doc = cls.__dict__.get("__doc__") or ""
    return "" if doc.startswith(f"{cls.__name__}(") else inspect.cleandoc(doc)


def config_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """The fields a config file may set (``init`` fields, as :func:`speechrq.config.load_config` reads them) and
    their resolved types."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.init]


def sections(cls: type, prefix: str = "") -> list[tuple[str, type]]:
    """``[(dotted key, dataclass)]``: ``cls`` itself (key ``prefix``) and every section nested in it, in field order."""
    out = [(prefix, cls)]
    for f, tp in config_fields(cls):
        if dataclasses.is_dataclass(tp):
            out += sections(tp, f"{prefix}.{f.name}" if prefix else f.name)
    return out


def config_classes() -> list[type]:
    """Every config dataclass of :data:`CONFIGS`, each once, roots first."""
    return list(dict.fromkeys(c for _, root, _ in CONFIGS for _, c in sections(root)))


_PLURAL = {"integer": "integers", "number": "numbers", "string": "strings", "boolean": "booleans"}


def type_text(tp: Any) -> str:
    """A field's type in the words of a YAML file: ``number``, ``list of integers``, ``one of `a`, `b` ``, ..."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        parts = [type_text(a) for a in args if a is not type(None)] + (["null"] if type(None) in args else [])
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]
    if origin is Literal:
        return ("`" + str(args[0]) + "`" if len(args) == 1 else "one of " + ", ".join(f"`{a}`" for a in args))
    if origin in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            items = {type_text(a) for a in args}
            item = items.pop() if len(items) == 1 else None
            return f"list of {len(args)} {_PLURAL.get(item, item)}" if item else "list of " + ", ".join(type_text(a) for a in args)
        item = type_text(args[0]) if args else "values"
        return f"list of {_PLURAL.get(item, item)}"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", type(None): "null"}
    if tp in names:
        return names[tp]
    if dataclasses.is_dataclass(tp):
        return "section"
    return getattr(tp, "__name__", str(tp))


def default_value(f: dataclasses.Field) -> Any:
    """A field's default as a config file would hold it (tuples as lists); :data:`dataclasses.MISSING` for none."""
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return dataclasses.MISSING
    return json.loads(json.dumps(value))


def default_text(f: dataclasses.Field) -> str:
    """A field's default in YAML (flow style: ``60.0``, ``null``, ``"train"``, ``[0.9, 0.98]``), or ``(required)``."""
    value = default_value(f)
    return "(required)" if value is dataclasses.MISSING else "`" + json.dumps(value, ensure_ascii=False) + "`"


def markdown(text: str) -> str:
    """A docstring's reStructuredText markup in Markdown: double backquotes and roles (``:mod:`a.b```) become code spans;
    a role's ``~a.b`` keeps its last part."""
    text = re.sub(r":[a-z]+:`~([^`]+)`", lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", text)
    return re.sub(r":[a-z]+:`([^`]+)`", r"`\1`", text).replace("``", "`")


def _cell(text: str) -> str:
    """One Markdown table cell: on one line, its ``|`` escaped."""
    return " ".join(markdown(text).split()).replace("|", "\\|")


def format_section(key: str, cls: type, summary: str = "") -> list[str]:
    """One section's heading, ``summary`` (the section field's own docstring), the class docstring and a table: a row
    per field that is not a section of its own."""
    docs = field_docs(cls)
    rows = [(f"{key}.{f.name}" if key else f.name, f, tp) for f, tp in config_fields(cls) if not dataclasses.is_dataclass(tp)]
    lines = [f"### `{key}` ({cls.__name__})" if key else f"### Top level ({cls.__name__})", ""]
    if summary:
        lines += [f"*{' '.join(markdown(summary).split())}*", ""]
    if class_doc(cls):
        lines += [markdown(class_doc(cls)), ""]
    if rows:
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        lines += [f"| `{name}` | {_cell(type_text(tp))} | {_cell(default_text(f))} | {_cell(docs.get(f.name, ''))} |"
                  for name, f, tp in rows]
        lines.append("")
    return lines


def format_config_reference() -> str:
    """The config reference page, Markdown: for each config of :data:`CONFIGS` a section per table of its YAML file
    (``data``, ``model``, ...), each key with its type, default and meaning (unit and valid range included)."""
    lines = ["# Config reference", "",
             "Every key of the YAML configs speechrq reads, made from the config dataclasses' own documentation "
             "(`speechrq.config_reference`). A key left out of a file takes its default; `--set KEY=VALUE` sets one "
             "on the command line, with the dotted key of the first column (`--set optim.lr=3e-4`). Unknown keys, "
             "wrong types and values out of range are refused before any work starts (`speechrq.config`).", ""]
    for name, root, command in CONFIGS:
        lines += [f"## {name}: `{command}`", ""]
        found = sections(root)
        owners = dict(found)
        for key, cls in found:
            parent, _, leaf = key.rpartition(".")
            summary = field_docs(owners[parent]).get(leaf, "") if key else ""
            lines += format_section(key, cls, summary)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":  # `make docs`: python -m speechrq.config_reference docs/reference/config.md
    import sys

    from .io import atomic_write_text

    atomic_write_text(sys.argv[1], format_config_reference())
