"""The package layout is the pipeline: imports flow one way, stage by stage.

    cli -> serve / preview / schedule -> delivery -> email -> audience -> content -> store
        -> config / errors / resources

A module may import its own package and the layers below it, never a later stage; there
are no import cycles (imports inside functions count too); and no module reaches the
project's own code through importlib, except the provider registry, which loads plug-ins
by name.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "digest"

LAYERS: list[tuple[str, ...]] = [
    ("digest", "digest.errors", "digest.resources", "digest.config"),
    ("digest.store",),
    ("digest.content",),
    ("digest.audience",),
    ("digest.email",),
    ("digest.delivery",),
    ("digest.schedule", "digest.serve", "digest.preview"),
    ("digest.cli",),
    ("digest.__main__",),
]
IMPORTLIB_ALLOWED = {"digest.delivery.providers.registry"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> tuple[int, str]:
    """(layer index, the unit it belongs to), by the longest matching prefix."""
    best: tuple[int, str] = (-1, "")
    for index, units in enumerate(LAYERS):
        for unit in units:
            if (module == unit or module.startswith(unit + ".")) and len(unit) > len(best[1]):
                best = (index, unit)
    assert best[0] >= 0, f"{module} is in no layer: add it to LAYERS"
    return best


def project_imports(tree: ast.AST, known: set[str]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found.update(n for n in names if n in known)
    return found


@cache
def modules() -> dict[str, ast.AST]:
    return {module_name(p): ast.parse(p.read_text(encoding="utf-8")) for p in PACKAGE.rglob("*.py")}


def graph() -> dict[str, set[str]]:
    trees = modules()
    known = set(trees)
    return {name: project_imports(tree, known) - {name} for name, tree in trees.items()}


def test_every_module_belongs_to_a_layer() -> None:
    for name in modules():
        layer_of(name)


def test_no_module_imports_a_later_stage() -> None:
    wrong = []
    for name, deps in graph().items():
        own, own_unit = layer_of(name)
        for dep in deps:
            other, other_unit = layer_of(dep)
            if other > own or (other == own and other_unit != own_unit and own > 0):
                wrong.append(f"{name} imports {dep}")
    assert wrong == []


def test_no_import_cycles() -> None:
    edges = graph()
    # a package's __init__ re-exporting its own modules is not a cycle through them
    for name in edges:
        edges[name] = {d for d in edges[name] if not d.startswith(name + ".")}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert cycles == []


def test_importlib_only_in_the_provider_registry() -> None:
    users = []
    for name, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "import_module":
                users.append(name)
            if isinstance(node, ast.Name) and node.id == "__import__":
                users.append(name)
    assert set(users) <= IMPORTLIB_ALLOWED


@pytest.mark.parametrize(
    ("module", "dep", "allowed"),
    [
        ("digest.email.compose", "digest.content.posts", True),
        ("digest.content.posts", "digest.email.compose", False),
        ("digest.serve.app", "digest.preview.server", False),
        ("digest.config.providers", "digest.delivery.providers.base", False),
    ],
)
def test_the_rule_itself(module: str, dep: str, allowed: bool) -> None:
    own, own_unit = layer_of(module)
    other, other_unit = layer_of(dep)
    assert (not (other > own or (other == own and other_unit != own_unit))) is allowed
