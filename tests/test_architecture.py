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
BASE = {"frames", "errors", "io", "checks", "lock"}  # import nothing of speechrq but each other


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
    assert "speechrq.pretrain.trainer" in GRAPH["speechrq.cli"]
    assert "speechrq.frames" in GRAPH["speechrq.models.conformer"]  # a relative import, resolved


@pytest.mark.parametrize("importer, imported, why", RULES)
def test_dependency_rule(importer, imported, why):
    bad = sorted(f"{m} imports {i}" for m, deps in GRAPH.items() if top(m) == importer for i in deps if top(i) == imported)
    assert not bad, f"{importer} must not import {imported} ({why}): " + "; ".join(bad)


def test_no_library_module_imports_the_cli():
    bad = sorted(m for m, deps in GRAPH.items() if m not in ("speechrq.cli", "speechrq.__main__") and "speechrq.cli" in deps)
    assert not bad, f"library modules import the CLI: {bad}"


def test_the_base_modules_import_only_each_other():
    for name in BASE:
        deps = {top(i) for i in GRAPH[f"speechrq.{name}"]}
        assert deps <= BASE, f"speechrq.{name} imports {deps - BASE}"
