"""The package's shape: no import cycle among msr's modules (lazy imports inside functions included), the
layers import only those above them, every error a user can cause derives from msr.errors.UserError, and
every program starts through msr.cli.entry.run_entry."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import msr
from msr.errors import UserError

PACKAGE = Path(msr.__file__).resolve().parent
PROGRAMS = ("train", "evaluate", "predict", "convert", "aggregate")
#: What each layer must never import (DESIGN.md: models, data and evaluation know nothing of the programs).
FORBIDDEN = {
    "msr.models": (
        "lightning",
        "hydra",
        "msr.data",
        "msr.evaluation",
        "msr.training",
        "msr.studies",
        "msr.cli",
    ),
    "msr.evaluation": ("lightning", "hydra", "msr.training", "msr.studies", "msr.cli"),
    "msr.training": ("msr.studies", "msr.cli"),
    "msr.studies": ("msr.cli",),
}


def module_names() -> dict[str, Path]:
    """Return {dotted name: file} of every module of msr."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        names[name] = path
    return names


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Return every module `name` imports anywhere in its file (top level or inside functions): msr's
    modules by their dotted names, others by their top-level package."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if target.split(".")[0] != "msr":
                found.add(target.split(".")[0])
                continue
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target != name:
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components of more than one module of `graph` (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in graph:
                continue
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_and_each_layer_imports_only_those_above_it():
    modules = module_names()
    graph = {name: imported(name, path, modules) for name, path in modules.items()}
    assert cycles(graph) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the check works
    for layer, forbidden in FORBIDDEN.items():
        for name, deps in graph.items():
            if name == layer or name.startswith(layer + "."):
                bad = sorted(d for d in deps if any(d == f or d.startswith(f + ".") for f in forbidden))
                assert not bad, f"{name} imports {bad}"


def test_every_error_msr_raises_for_the_user_derives_from_user_error():
    errors = []
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="msr."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == info.name and issubclass(cls, BaseException):
                errors.append(cls)
    assert len(errors) >= 10
    assert [cls.__qualname__ for cls in errors if not issubclass(cls, UserError)] == []


def test_all_five_programs_start_through_the_one_entry_wrapper():
    for program in PROGRAMS:
        source = inspect.getsource(importlib.import_module(f"msr.cli.{program}").main)
        calls = [
            n.func.id
            for n in ast.walk(ast.parse(source))
            if isinstance(n, ast.Call) and hasattr(n.func, "id")
        ]
        assert "run_entry" in calls, f"msr.cli.{program}.main does not go through msr.cli.entry.run_entry"
