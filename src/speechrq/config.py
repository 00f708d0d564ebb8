"""Typed configs: dataclasses loaded from YAML, checked before any work starts.

Every job's settings are a tree of dataclasses. :func:`load_config` reads a
YAML file, applies ``--set key.sub=value`` overrides, and builds the tree,
refusing unknown keys, wrong types and impossible combinations with one line
that names the file and the key::

    exp/x.yaml: optim.lr: expected a number, got 'fast'
    exp/x.yaml: unknown key 'optim.lrr' (known: lr, betas, ...)

A key given twice in one mapping of a config file (a second ``lr:``, a second
``optim:`` block) is refused with the file and both lines (:func:`load_yaml`),
never resolved silently; ``--set`` given the same key twice keeps the later one.

A dataclass may define ``validate(self) -> None`` that raises
:class:`ConfigError` for combinations; it is called after its fields are built,
innermost first, and its message gets the dataclass's key path in front.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from .errors import SpeechrqError

T = TypeVar("T")


class ConfigError(SpeechrqError):
    """A config value or combination that cannot work."""


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is float:
        return "a number"
    if tp is int:
        return "an integer"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple):
        return "a list"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return str(tp)


def _convert(value: Any, tp: Any, key: str) -> Any:
    """``value`` as type ``tp``, or ConfigError naming ``key``."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: expected {' or '.join(_type_name(a) for a in args if a is not type(None))}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(tp, value, key)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected a list of {len(args)} values, got {len(value)}")
            return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)  # 1e5 in YAML is a float
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _looks_like_float(value):
            value = float(value)  # PyYAML reads 3e-4 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):  # YAML's .nan and .inf pass every range check written as a comparison
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"config field {key}: unsupported type {tp}")  # a programming error


def _build(cls: type[T], data: dict, prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for k in data:
        if k not in fields:
            where = f"{prefix}.{k}" if prefix else str(k)
            raise ConfigError(f"unknown key {where!r} (known: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            if dataclasses.is_dataclass(hints[name]):
                kwargs[name] = _convert({}, hints[name], key)
            else:
                raise ConfigError(f"missing key {key!r}")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ConfigError as e:
            raise ConfigError(f"{prefix}.{e}" if prefix else str(e)) from None
    return obj


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"optim.lr=3e-4"`` -> ``(["optim", "lr"], 0.0003)``; the value is read as YAML."""
    import yaml

    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. optim.lr=3e-4")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: empty key")
    try:
        value = load_yaml(raw, f"--set {item!r}") if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {item!r}: value is not YAML ({str(e).splitlines()[0]})") from None
    return key.split("."), value


def _looks_like_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return s.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity")


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``KEY=VALUE`` overrides in order. One key given twice is allowed and **the later wins** (the usual
    command-line convention: ``--set optim.lr=1e-3 --set optim.lr=2e-3`` trains at 2e-3), unlike a config file,
    where a key given twice is refused (:func:`load_yaml`)."""
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a mapping")
            node = child
        node[path[-1]] = value
    return data


def config_from_dict(cls: type[T], data: dict, source: str = "config", overrides: list[str] = ()) -> T:
    """Build ``cls`` from a plain dict (plus overrides); errors start with ``source``."""
    import copy

    data = apply_overrides(copy.deepcopy(data), list(overrides))
    try:
        return _build(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def _unique_key_loader():
    """A ``yaml.SafeLoader`` whose mappings refuse a key given twice (PyYAML keeps the last silently): made on first
    use, so that importing this module does not import yaml."""
    global _UniqueKeyLoader
    if _UniqueKeyLoader is None:
        import yaml

        class UniqueKeyLoader(yaml.SafeLoader):
            def construct_mapping(self, node, deep=False):
                if isinstance(node, yaml.MappingNode):
                    seen: dict = {}
                    for key_node, _ in node.value:
                        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be overridden
                            continue
                        key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
                        try:
                            first = seen.get(key)
                        except TypeError:  # an unhashable key: SafeLoader's own error says so
                            continue
                        if first is not None:
                            raise DuplicateKey(key, line, first)
                        seen[key] = line
                return super().construct_mapping(node, deep)

        _UniqueKeyLoader = UniqueKeyLoader
    return _UniqueKeyLoader


_UniqueKeyLoader = None


class DuplicateKey(Exception):
    """A mapping that gives one key twice: raised inside the YAML loader, reported by :func:`load_yaml`."""

    def __init__(self, key: Any, line: int, first: int):
        super().__init__(key, line, first)
        self.key, self.line, self.first = key, line, first


def load_yaml(text: str, source: str | Path) -> Any:
    """Parse YAML ``text`` like ``yaml.safe_load``, but refuse a key given twice in one mapping (a second ``lr:`` or a
    second ``optim:`` block, which PyYAML would let replace the first silently): ``ConfigError`` naming ``source``,
    the line of the second and of the first, ``SOURCE: line 9: key 'lr' given twice (first at line 3)``. Keys merged in
    with ``<<: *anchor`` may be overridden, as YAML defines. Every YAML file speechrq reads goes through here."""
    import yaml

    try:
        return yaml.load(text, Loader=_unique_key_loader())
    except DuplicateKey as e:
        raise ConfigError(f"{source}: line {e.line}: key {e.key!r} given twice (first at line {e.first})") from None


def read_yaml(path: str | Path) -> dict:
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (a shipped config's name works too: speechrq configs list)") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    try:
        data = load_yaml(text, path)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where} ({getattr(e, 'problem', None) or e})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return data


def load_config(cls: type[T], path: str | Path, overrides: list[str] = ()) -> T:
    """Read ``path`` (YAML), apply ``KEY=VALUE`` overrides, build and validate ``cls``."""
    return config_from_dict(cls, read_yaml(path), source=str(path), overrides=overrides)


def config_to_dict(cfg: Any) -> dict:
    """Plain dict of a config tree (tuples as lists), ready for YAML or JSON."""

    def plain(v):
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def dump_yaml(cfg: Any) -> str:
    import yaml

    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def diff_configs(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts."""
    out = []
    for k in sorted(set(a) | set(b)):
        key = f"{prefix}.{k}" if prefix else k
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_configs(va, vb, key)
        elif va != vb:
            out.append(key)
    return out
