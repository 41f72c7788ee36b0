"""Modules that import each other (at the top or inside a function, directly or round a longer
circle) are a knot: none of them can be read, tested or moved without the others. None is
left; a new one fails. Services do not reach for the ``Workbench`` facade either: it is what
the entry points (the CLI, the pages) open; a service gets the workspace passed in."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import workbench

ROOT = Path(workbench.__file__).parent
# Circles allowed (none): a new one fails.
KNOWN: set[frozenset[str]] = set()


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node but what sits under ``if TYPE_CHECKING:`` (annotations only)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports() -> dict[str, set[str]]:
    """Module → the workbench modules it imports at run time. The package itself (the
    ``Workbench`` facade that opens every service) is left out: services name it for
    typing only."""
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    modules.pop("workbench")
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            found |= {m for m in targets if m in modules and m != name}
        graph[name] = found
    return graph


def test_no_two_modules_import_each_other_beyond_the_known():
    graph = _imports()
    circles = {frozenset({a, b}) for a, deps in graph.items() for b in deps
               if a in graph.get(b, set())}
    assert circles == KNOWN, sorted(sorted(c) for c in circles)


def test_no_circle_of_any_length():
    graph = _imports()
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import circle: {' -> '.join(exc.args[1])}") from None


# The entry points open the workspace through the facade; nothing else does.
ENTRY_POINTS = ("workbench.cli", "workbench.ui")


def test_no_service_imports_the_facade():
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    offenders = []
    for name, path in modules.items():
        if name == "workbench" or name.startswith(ENTRY_POINTS):
            continue
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "workbench" and node.level == 0:
                facade = [a.name for a in node.names if f"workbench.{a.name}" not in modules]
                if facade:
                    offenders.append(f"{name}: from workbench import {', '.join(facade)}")
            elif isinstance(node, ast.Import) and any(a.name == "workbench" for a in node.names):
                offenders.append(f"{name}: import workbench")
    assert offenders == []


def test_events_do_not_know_about_webhooks():
    """The outbox belongs with the events that fill it; webhooks read it."""
    assert "workbench.webhooks" not in _imports()["workbench.events"]
