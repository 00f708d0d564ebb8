"""Checking a JSON file that speechrq wrote before reading it.

Results, tables and caches written by speechrq are read back by later commands (``speechrq report``, the results
pages, ``asr tables``, a resumed comparison, ...). Such a file may have been edited by hand, truncated or written
by another version; every reader checks what it is about to read against a small schema and answers in one line
naming the file and the dotted key at fault (:class:`~speechrq.errors.SpeechrqError`), e.g.::

    docs/latent_study.json: arms.BEST-RQ.pr.mean: expected a number, got 'n/a'
    docs/latent_study.json: arms: missing key 'BEST-RQ'

A schema is built from

- the leaf types :data:`NUMBER` (an int or float, not a boolean), :data:`INT`, :data:`STRING`, :data:`BOOL` and
  :data:`ANY`;
- ``{key: schema, opt(key): schema, REST: schema}``: a JSON object holding each ``key`` (``opt`` keys may be absent;
  with ``REST``, every other key's value follows that schema; other keys are otherwise ignored);
- :class:`Each` (an object of any keys, every value one schema; ``int_keys`` when its keys are step numbers),
  :class:`ListOf` (a list, each item one schema, optionally of a fixed length) and :class:`Maybe` (``null`` or the schema).

Only what a reader reads is checked: a schema names the keys and types that reader relies on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import SpeechrqError


@dataclass(frozen=True)
class Type:
    what: str  # "a number", for the message
    test: Callable[[Any], bool]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


NUMBER = Type("a number", _is_number)
INT = Type("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
STRING = Type("a string", lambda v: isinstance(v, str))
BOOL = Type("true or false", lambda v: isinstance(v, bool))
OBJECT = Type("an object", lambda v: isinstance(v, dict))
ANY = Type("anything", lambda v: True)


@dataclass(frozen=True)
class opt:  # noqa: N801 - reads as a marker in a schema: {opt("key"): NUMBER}
    """A key that may be absent (when present, its value follows the schema)."""

    key: str


REST = opt("\0rest")  # {REST: schema}: every key not named follows schema


@dataclass(frozen=True)
class Maybe:
    """``null`` or ``schema``."""

    schema: Any


@dataclass(frozen=True)
class Each:
    """A JSON object of any keys, each value following ``schema``; with ``int_keys``, each key an integer in text
    (steps, seeds: JSON object keys are strings)."""

    schema: Any
    int_keys: bool = False


@dataclass(frozen=True)
class ListOf:
    """A list, each item following ``schema``; with ``length``, exactly that many items."""

    schema: Any
    length: int | None = None


def got(value: Any) -> str:
    """How a message names a value it did not expect."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def where(path: str, key: Any) -> str:
    """``path`` extended by an object key (``a.b``) or a list index (``a[3]``)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def invalid(source: Any, path: str, what: str) -> SpeechrqError:
    """The one-line error for ``source`` (a file) at ``path`` (a dotted key; empty: the whole file)."""
    return SpeechrqError(f"{source}: {path}: {what}" if path else f"{source}: {what}")


def missing(source: Any, path: str, key: Any, why: str = "") -> SpeechrqError:
    return invalid(source, path, f"missing key {str(key)!r}" + (f" ({why})" if why else ""))


def check(value: Any, schema: Any, source: Any, path: str = "") -> Any:
    """``value`` when it follows ``schema``; otherwise :class:`SpeechrqError` naming ``source`` and the key path."""
    if isinstance(schema, Type):
        if not schema.test(value):
            raise invalid(source, path, f"expected {schema.what}, got {got(value)}")
    elif isinstance(schema, Maybe):
        if value is not None:
            check(value, schema.schema, source, path)
    elif isinstance(schema, dict):
        if not isinstance(value, dict):
            raise invalid(source, path, f"expected an object, got {got(value)}")
        named = set()
        for key, sub in schema.items():
            if key is REST:
                continue
            name = key.key if isinstance(key, opt) else key
            named.add(name)
            if name in value:
                check(value[name], sub, source, where(path, name))
            elif not isinstance(key, opt):
                raise missing(source, path, name)
        if REST in schema:
            for name, v in value.items():
                if name not in named:
                    check(v, schema[REST], source, where(path, name))
    elif isinstance(schema, Each):
        if not isinstance(value, dict):
            raise invalid(source, path, f"expected an object, got {got(value)}")
        for name, v in value.items():
            if schema.int_keys and not _int_text(name):
                raise invalid(source, where(path, name), "expected a whole number as the key")
            check(v, schema.schema, source, where(path, name))
    elif isinstance(schema, ListOf):
        if not isinstance(value, list):
            raise invalid(source, path, f"expected a list, got {got(value)}")
        if schema.length is not None and len(value) != schema.length:
            raise invalid(source, path, f"expected a list of {schema.length} items, got {len(value)}")
        for i, v in enumerate(value):
            check(v, schema.schema, source, where(path, i))
    else:  # pragma: no cover - a programming error in a schema
        raise TypeError(f"not a schema: {schema!r}")
    return value


def _int_text(key: str) -> bool:
    try:
        int(key)
    except (TypeError, ValueError):
        return False
    return True


def need(container: dict, key: Any, source: Any, path: str, why: str = "") -> Any:
    """``container[key]``, or the one-line error naming ``path`` and the missing key (``why``: who names the key)."""
    if not isinstance(container, dict) or key not in container:
        raise missing(source, path, key, why)
    return container[key]


def load(path: str | os.PathLike, validate: Any, source: Any = None) -> Any:
    """Read the JSON file ``path`` (:func:`speechrq.io.read_json`) and check it: ``validate`` is a schema or a function
    ``(data, source) -> data`` that raises :class:`SpeechrqError`. ``source`` names the file in messages (``path``)."""
    from .io import read_json

    data = read_json(path)
    source = Path(path) if source is None else source
    return validate(data, source) if callable(validate) and not isinstance(validate, Type) else check(data, validate, source)


__all__ = ["ANY", "BOOL", "INT", "NUMBER", "OBJECT", "REST", "STRING", "Each", "ListOf", "Maybe", "check", "got", "invalid", "load",
           "missing", "need", "opt", "where"]
