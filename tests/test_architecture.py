"""The layout's promises, checked: no import cycles (type-only imports included), and the
lower layers never import the higher ones."""
from __future__ import annotations

import ast
import os

from twisted.trial.unittest import SynchronousTestCase

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")

#: package -> packages it must not import (at run time or for typing).
LAYERS = {
    "kongish.http": ("kongish.runloop", "kongish.plugins", "kongish.lua", "kongish.admin", "kongish.db",
                     "kongish.node", "kongish.service"),
    "kongish.router": ("kongish.runloop", "kongish.plugins", "kongish.lua", "kongish.admin", "kongish.db",
                        "kongish.http", "kongish.node", "kongish.service"),
    # schema reads route paths as the router does (kongish.router.normalize)
    "kongish.schema": ("kongish.runloop", "kongish.plugins", "kongish.lua", "kongish.admin", "kongish.db",
                       "kongish.http", "kongish.node", "kongish.service"),
    "kongish.db": ("kongish.runloop", "kongish.plugins", "kongish.lua", "kongish.admin", "kongish.http",
                   "kongish.node", "kongish.service"),
    "kongish.settings": ("kongish.runloop", "kongish.plugins", "kongish.lua", "kongish.admin", "kongish.db",
                       "kongish.node", "kongish.service"),
    "kongish.plugins": ("kongish.admin", "kongish.db", "kongish.node", "kongish.service"),
    "kongish.lua": ("kongish.admin", "kongish.db", "kongish.node", "kongish.service"),
    # metrics counts what lua.cost reports; the node, the Admin API and workers build on it
    "kongish.metrics": ("kongish.admin", "kongish.db", "kongish.node", "kongish.service", "kongish.workers",
                        "kongish.plugins", "kongish.http"),
}


def module_imports() -> dict[str, set[str]]:
    """Every kongish module and the kongish modules it imports, anywhere in its body."""
    paths: dict[str, str] = {}
    for directory, _, files in os.walk(os.path.join(SRC, "kongish")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                module = os.path.relpath(path, SRC)[:-3].replace(os.sep, ".").removesuffix(".__init__")
                paths[module] = path
    graph: dict[str, set[str]] = {module: set() for module in paths}
    for module, path in paths.items():
        with open(path, encoding="utf-8") as source:
            tree = ast.parse(source.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    target = target if target in paths else node.module
                    if target in paths and target != module:
                        graph[module].add(target)
            elif isinstance(node, ast.Import):
                graph[module].update(a.name for a in node.names if a.name in paths and a.name != module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


class ArchitectureTests(SynchronousTestCase):
    def test_no_import_cycles(self) -> None:
        self.assertEqual(cycles(module_imports()), [])

    def test_lower_layers_do_not_import_higher_ones(self) -> None:
        wrong = sorted(
            (module, target)
            for module, targets in module_imports().items()
            for package, forbidden in LAYERS.items() if module == package or module.startswith(package + ".")
            for target in targets if any(target == f or target.startswith(f + ".") for f in forbidden))
        self.assertEqual(wrong, [])

    def test_the_checker_sees_a_cycle(self) -> None:
        self.assertEqual(cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}), [["a", "b", "c"]])
