"""The dependency rules of the package, enforced on every import statement (top-level and inside functions).

Layers, lowest first: ``frames``/``errors``/``io``/``lock`` -> ``data``, ``models`` -> ``features`` -> ``targets``
-> ``encoders`` -> ``training``, ``pretrain``, ``evaluate``, ``units``, ``asr`` -> ``studies`` -> ``cli``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import speechrq

ROOT = Path(speechrq.__file__).parent

# (importer package, imported package, why): a module under the first may never import the second
RULES = [
    ("evaluate", "pretrain", "evaluation never reaches into training"),
    ("evaluate", "studies", "evaluation never trains"),
    ("evaluate", "training", "evaluation never trains"),
    ("models", "features", "models take features as tensors"),
    ("models", "data", "models know no corpus"),
    ("models", "pretrain", "models know no objective"),
    ("models", "targets", "models know no objective"),
    ("data", "models", "data knows no model"),
    ("data", "features", "data knows no model input"),
    ("data", "targets", "data knows no model"),
    ("data", "encoders", "data knows no model"),
    ("data", "pretrain", "data knows no model"),
    ("targets", "pretrain", "targets are computed, never trained"),
    ("targets", "training", "targets are computed, never trained"),
    ("targets", "encoders", "targets take their encoder as a module"),
    ("encoders", "pretrain", "frozen encoders are read without the trainer"),
    ("encoders", "evaluate", "encoders sit below evaluation"),
    ("encoders", "training", "frozen encoders are never trained"),
    ("training", "pretrain", "the engine serves every trainer"),
    ("units", "pretrain", "units read encoders, not the trainer"),
    ("asr", "pretrain", "discrete ASR knows no pre-training"),
    ("asr", "evaluate", "discrete ASR knows no probes"),
]
BASE = {"frames", "errors", "io", "checks", "lock", "allocator"}  # import nothing of speechrq but each other


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every speechrq module ``path`` imports, relative imports resolved, wherever the statement stands."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("speechrq")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("speechrq"):
                found.add(target)
                found |= {f"{target}.{a.name}" for a in node.names}  # "from . import grammar" imports a module
    return found


def top(module: str) -> str:
    """``speechrq.pretrain.trainer`` -> ``pretrain``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


GRAPH = {module_name(p): imports_of(p) for p in sorted(ROOT.rglob("*.py"))}


def test_the_walker_sees_imports_inside_functions():
    # evaluate.run imports the corpus loader inside evaluate(); cli imports pretrain inside its commands
    assert "speechrq.data.corpus" in GRAPH["speechrq.evaluate.run"]
    assert "speechrq.pretrain.trainer" in GRAPH["speechrq.cli.pretrain"]
    assert "speechrq.cli.pretrain" in GRAPH["speechrq.cli"]  # a package's __init__ is the package
    assert "speechrq.frames" in GRAPH["speechrq.models.conformer"]  # a relative import, resolved


@pytest.mark.parametrize("importer, imported, why", RULES)
def test_dependency_rule(importer, imported, why):
    bad = sorted(f"{m} imports {i}" for m, deps in GRAPH.items() if top(m) == importer for i in deps if top(i) == imported)
    assert not bad, f"{importer} must not import {imported} ({why}): " + "; ".join(bad)


def test_no_library_module_imports_the_cli():
    """The command line is a package (speechrq.cli.*): only its own modules and ``python -m speechrq`` import it."""
    assert {"speechrq.cli", "speechrq.cli.common", "speechrq.cli.units"} <= set(GRAPH)
    bad = sorted(f"{m} imports {i}" for m, deps in GRAPH.items() if top(m) != "cli" and m != "speechrq.__main__"
                 for i in deps if top(i) == "cli")
    assert not bad, f"library modules import the CLI: {bad}"


def test_every_import_names_a_module_that_exists():
    """A relative import one level short (``from .data.corpus`` in speechrq/cli/, meaning speechrq.data) resolves to a
    module that does not exist: inside a command's function it fails only when that command runs."""
    modules = set(GRAPH) | {"speechrq"}
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")
                target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
                if target not in modules:
                    bad.append(f"{name} line {node.lineno}: {target}")
    assert not bad, f"imports of modules that do not exist: {bad}"


def test_the_base_modules_import_only_each_other():
    for name in BASE:
        deps = {top(i) for i in GRAPH[f"speechrq.{name}"]}
        assert deps <= BASE, f"speechrq.{name} imports {deps - BASE}"


def module_edges(path: Path) -> dict[str, int]:
    """The speechrq modules ``path``'s import statements load, each with the line of its first such statement.

    Every statement counts, wherever it stands (top level, inside a function, under ``TYPE_CHECKING``), as for the
    layer rules above. A package is its ``__init__``, and an edge goes to the module a statement names:

    - ``import speechrq.a.b`` -> ``speechrq.a.b``;
    - ``from speechrq.a import b, c`` (or ``from .a import ...``, resolved) -> ``speechrq.a.b`` for each name that is a
      submodule, and ``speechrq.a`` (its ``__init__``) when a name is not a submodule: a name read from the package
      is defined by its ``__init__``. ``from . import grammar`` in ``speechrq.data.recipes`` is an edge to
      ``speechrq.data.grammar`` only; ``from ..encoders import FrozenEncoder`` in ``speechrq.encoders.frozen``
      would be an edge to ``speechrq.encoders`` (whose ``__init__`` imports ``frozen``: a cycle).
    - The parent packages Python initialises before a submodule are no edge of their own: a package's
      ``__init__`` re-exporting its submodules would otherwise make a cycle with each of them.
    """
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name in GRAPH]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                target = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target not in GRAPH:
                continue
            targets = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in GRAPH]
            if len(targets) < len(node.names):  # some name is defined by the package's (or module's) own code
                targets.append(target)
        else:
            continue
        for t in targets:
            if t != name:
                found[t] = min(found.get(t, node.lineno), node.lineno)
    return found


def import_cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle ``[a, b, ..., a]`` for each group of modules that import each other in a circle (a strongly
    connected component of more than one module, or a module importing itself), shortest from its first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in edges.get(v, ()):
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    cycles = []
    for group in sorted(groups):
        start, inside = group[0], set(group)
        paths, seen = {start: [start]}, {start}
        frontier = [start]
        while frontier:  # breadth first within the group: the shortest way back to its first module
            nxt = []
            for v in frontier:
                for w in sorted(edges.get(v, ())):
                    if w == start:
                        cycles.append(paths[v] + [start])
                        nxt = []
                        break
                    if w in inside and w not in seen:
                        seen.add(w)
                        paths[w] = paths[v] + [w]
                        nxt.append(w)
                else:
                    continue
                break
            frontier = nxt
    return cycles


EDGES = {module_name(p): module_edges(p) for p in sorted(ROOT.rglob("*.py"))}


def test_the_cycle_finder_names_each_cycle():
    edges = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}, "e": {"e": 5}, "f": {"a": 6}}
    assert import_cycles(edges) == [["a", "b", "c", "a"], ["e", "e"]]
    assert import_cycles({"a": {"b": 1}, "b": {}}) == []


def test_the_edges_follow_the_package_rule():
    assert {"speechrq.encoders.frozen", "speechrq.encoders.hf", "speechrq.encoders.cache"} <= set(EDGES["speechrq.encoders"])
    assert "speechrq.encoders.lengths" in EDGES["speechrq.encoders.hf"]  # a relative import, resolved
    assert "speechrq.encoders" not in EDGES["speechrq.encoders.frozen"]  # the parent package is no edge by itself
    assert "speechrq.encoders" in EDGES["speechrq.evaluate.run"]  # `from ..encoders import FrozenEncoder`: its __init__
    assert "speechrq.formats" in EDGES["speechrq.studies.report"]  # `from .. import formats`: the module, not speechrq
    assert "speechrq" not in EDGES["speechrq.studies.report"]


def test_no_import_cycles():
    """No two speechrq modules import each other, directly or through others: code both need lives in a module below
    both (e.g. :mod:`speechrq.encoders.lengths` below ``frozen`` and ``hf``). Edges are :func:`module_edges`' (every
    import statement, inside functions too; a package is its ``__init__``, reached only by a name read from it)."""
    cycles = import_cycles(EDGES)
    assert not cycles, "import cycles between speechrq modules: " + "; ".join(
        " -> ".join(f"{a} (line {EDGES[a][b]})" for a, b in zip(c, c[1:])) + f" -> {c[-1]}" for c in cycles)
