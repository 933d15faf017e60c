"""The package imports in one direction: no module imports, even lazily or for type checking only,
a module that imports it back (DESIGN.md, "One direction")."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import tfa_middleware

PACKAGE = tfa_middleware.__name__
ROOT = Path(tfa_middleware.__file__).parent
# Run by Alembic only, with its context configured: importing it anywhere else fails by design.
NOT_IMPORTABLE = {f"{PACKAGE}.migrations.env"}


def modules() -> dict[str, Path]:
    found = {PACKAGE: ROOT / "__init__.py"}
    for info in pkgutil.walk_packages([str(ROOT)], prefix=f"{PACKAGE}."):
        path = ROOT.joinpath(*info.name.split(".")[1:])
        found[info.name] = path / "__init__.py" if info.ispkg else path.with_suffix(".py")
    return found


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports: every ``import`` and ``from … import``
    statement, at the top, inside functions and under TYPE_CHECKING alike."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            targets.add(source)
            # `from . import phone` imports a module, not a name.
            targets.update(f"{source}.{alias.name}" for alias in node.names)
    # Importing a.b.c runs a.b's __init__ first, so a subpackage counts too; but a module's own
    # packages are always loaded before it (and the top one is the facade over everything).
    own = {name.rsplit(".", depth)[0] for depth in range(name.count(".") + 1)}
    edges = set()
    for target in targets:
        parts = target.split(".")
        for end in range(2, len(parts) + 1):
            candidate = ".".join(parts[:end])
            if candidate in known and candidate not in own:
                edges.add(candidate)
    return edges


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_imports() -> None:
    for name in sorted(modules()):
        if name not in NOT_IMPORTABLE:
            importlib.import_module(name)


def test_no_import_circles() -> None:
    found = modules()
    graph = {name: imported(name, path, set(found)) for name, path in found.items()}
    assert graph[f"{PACKAGE}.store"], "the graph found no imports at all: the parser is broken"
    assert [sorted(c) for c in circles(graph)] == []


def test_the_circle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [{"a", "b", "c"}]
