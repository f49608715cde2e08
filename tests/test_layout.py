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
import shutil
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


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
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
def modules(package: Path = PACKAGE) -> dict[str, ast.AST]:
    """Every module of the package at ``package`` (the project's, or a copy of it)."""
    return {
        module_name(p, package): ast.parse(p.read_text(encoding="utf-8"))
        for p in package.rglob("*.py")
    }


def graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    trees = modules(package)
    known = set(trees)
    return {name: project_imports(tree, known) - {name} for name, tree in trees.items()}


def test_every_module_belongs_to_a_layer() -> None:
    for name in modules():
        layer_of(name)


# Within a layer, too: a provider is handed batches and answers with results, so it reads
# nothing else of delivery/; and outside delivery/providers/ a provider is reached through
# its interface (base, registry, the shared HTTP client), never by its own module.
PROVIDERS = "digest.delivery.providers"
PROVIDER_INTERFACE = {f"{PROVIDERS}.{name}" for name in ("base", "registry", "http")}
# Known cases, each to be removed by the move its comment names; a new one fails.
WITHIN_LAYER_ALLOWED = {
    # mailgun_confirm asks Mailgun's events API: it wants a capability on the Provider
    # interface (as lookup is), found through the registry.
    ("digest.serve.app", "digest.delivery.providers.mailgun"),
    # erasure finds the outbox's files by the name the outbox gives them: it wants an
    # "erase" capability on the Provider interface, found through the registry.
    ("digest.delivery.erasure", "digest.delivery.providers.outbox"),
}


def violation(module: str, dep: str) -> str | None:
    """Why ``module`` may not import ``dep``, or None when it may."""
    own, own_unit = layer_of(module)
    other, other_unit = layer_of(dep)
    if other > own:
        return f"{module} imports {dep}: a later stage"
    if other == own and other_unit != own_unit and own > 0:
        return f"{module} imports {dep}: a sibling service"
    if (module, dep) in WITHIN_LAYER_ALLOWED:
        return None
    inside = module == PROVIDERS or module.startswith(PROVIDERS + ".")
    if inside and dep.startswith("digest.delivery.") and not dep.startswith(PROVIDERS):
        return f"{module} imports {dep}: a provider reads nothing else of delivery/"
    if (
        not inside
        and dep.startswith(PROVIDERS + ".")
        and dep not in PROVIDER_INTERFACE
        and not dep.startswith(f"{PROVIDERS}.registry.")
    ):
        return f"{module} imports {dep}: reach a provider through base or the registry"
    return None


def violations(edges: dict[str, set[str]]) -> list[str]:
    return sorted(v for name, deps in edges.items() for d in deps if (v := violation(name, d)))


def test_no_module_imports_a_later_stage_or_across_a_boundary() -> None:
    assert violations(graph()) == []


def test_the_allowed_within_layer_imports_are_still_there() -> None:
    """An allow-list entry whose import is gone is removed, so it cannot cover a new one."""
    edges = graph()
    assert sorted(e for e in WITHIN_LAYER_ALLOWED if e[1] not in edges.get(e[0], set())) == []


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


def importlib_users(trees: dict[str, ast.AST]) -> set[str]:
    """Modules that import by name: importlib.import_module, ``from importlib import
    import_module`` (or ``__import__``), or the __import__ builtin."""
    by_name = ("import_module", "__import__")

    def imports_by_name(node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute):
            return node.attr in by_name
        if isinstance(node, ast.Name):
            return node.id == "__import__"
        if isinstance(node, ast.ImportFrom) and node.module in ("importlib", "builtins"):
            return any(alias.name in by_name for alias in node.names)
        return False

    return {name for name, tree in trees.items() if any(map(imports_by_name, ast.walk(tree)))}


def test_importlib_only_in_the_provider_registry() -> None:
    assert importlib_users(modules()) <= IMPORTLIB_ALLOWED


@pytest.mark.parametrize(
    ("module", "dep", "why"),
    [
        ("digest.email.compose", "digest.content.posts", None),
        ("digest.content.posts", "digest.email.compose", "a later stage"),
        ("digest.serve.app", "digest.preview.server", "a sibling service"),
        ("digest.config.providers", "digest.delivery.providers.base", "a later stage"),
        ("digest.delivery.send", "digest.delivery.providers.registry", None),
        ("digest.delivery.providers.smtp", "digest.delivery.providers.base", None),
        (
            "digest.delivery.providers.smtp",
            "digest.delivery.ledger",
            "a provider reads nothing else of delivery/",
        ),
        (
            "digest.serve.webhooks",
            "digest.delivery.providers.postmark",
            "reach a provider through base or the registry",
        ),
        (
            "digest.delivery.providers.base",
            "digest.delivery.ledger",
            "a provider reads nothing else of delivery/",
        ),
        ("digest.delivery.erasure", "digest.delivery.providers.outbox", None),  # allowed, known
    ],
)
def test_the_rule_itself(module: str, dep: str, why: str | None) -> None:
    found = violation(module, dep)
    assert found == (None if why is None else f"{module} imports {dep}: {why}")


def test_a_planted_import_turns_the_check_red() -> None:
    edges = graph()
    edges["digest.delivery.providers.smtp"] = edges["digest.delivery.providers.smtp"] | {
        "digest.delivery.ledger"
    }
    edges["digest.serve.webhooks"] = edges["digest.serve.webhooks"] | {
        "digest.delivery.providers.sendgrid"
    }
    assert violations(edges) == [
        "digest.delivery.providers.smtp imports digest.delivery.ledger: "
        "a provider reads nothing else of delivery/",
        "digest.serve.webhooks imports digest.delivery.providers.sendgrid: "
        "reach a provider through base or the registry",
    ]
    planted = ast.parse("from importlib import import_module\nimport_module('digest.cli')\n")
    aliased = ast.parse("from importlib import import_module as load\n")
    assert importlib_users({"digest.email.x": planted, "digest.email.y": aliased}) == {
        "digest.email.x",
        "digest.email.y",
    }


def test_an_import_planted_in_a_copy_of_the_tree_turns_the_checks_red(tmp_path: Path) -> None:
    """The checks run over a copy of digest/ with wrong imports written into its files,
    as a change would write them, and each one is caught by name."""
    copy = tmp_path / "digest"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert violations(graph(copy)) == []  # the copy is as clean as the tree

    def plant(module: str, line: str) -> None:
        path = copy.joinpath(*module.split(".")[1:]).with_suffix(".py")
        path.write_text(path.read_text(encoding="utf-8") + line + "\n", encoding="utf-8")

    plant("digest.delivery.providers.smtp", "from digest.delivery.ledger import Ledger")
    plant("digest.serve.pages", "from digest.delivery.providers import postmark")
    plant("digest.content.select", "import digest.email.compose")
    plant("digest.email.checks", "from importlib import import_module")
    modules.cache_clear()  # read the copy again, as planted
    planted = graph(copy)
    assert violations(planted) == [
        "digest.content.select imports digest.email.compose: a later stage",
        "digest.delivery.providers.smtp imports digest.delivery.ledger: "
        "a provider reads nothing else of delivery/",
        "digest.serve.pages imports digest.delivery.providers.postmark: "
        "reach a provider through base or the registry",
    ]
    assert importlib_users(modules(copy)) - IMPORTLIB_ALLOWED == {"digest.email.checks"}
