"""The package's import graph has no cycle.

An AST walk over src/proselflc builds one edge per `import proselflc.x` / `from proselflc.x import y`
/ relative import, from the importing module to the imported one (`from pkg import name` counts as
an edge to `pkg.name` when that is a module, else to `pkg`).

Which imports count:
- module-level imports, including those inside module-level `if`/`try` blocks: they run while the
  module is being initialised, and a cycle among them is what breaks (a partially initialised module,
  an ImportError that depends on which module was imported first);
- function-level imports as well: a cycle through a deferred import does not break at import time,
  but it is the same layering loop (config -> losses -> config was one) hidden behind a function
  call, and it breaks the day someone hoists the import. Keeping the whole graph acyclic keeps every
  layer importable on its own;
- imports under `if TYPE_CHECKING:` as well: they never run, but a type one module needs from a module
  that imports it is a shared type living too high; it belongs in a module below both (the analysis's
  `Report` in `report_views`, the dataset registry in `dataset_registry`);
- not the implicit import of a parent package when a submodule is imported: Python initialises the
  parent first by design, and a submodule importing from its package's leaf modules is the normal
  layout, not a loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "proselflc"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import node, wherever it is (module level, `if TYPE_CHECKING:`, function bodies)."""
    return [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ImportFrom names (relative imports resolved against `module`)."""
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (see the module docstring for what counts)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in _imports(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(name, path, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search, white/grey/black)."""
    colour = dict.fromkeys(graph, 0)
    for root in sorted(graph):
        if colour[root]:
            continue
        stack = [(root, iter(sorted(graph[root])))]
        path = [root]
        colour[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour[child] == 1:
                return [*path[path.index(child) :], child]
            elif colour[child] == 0:
                colour[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph[child]))))
    return None


def test_the_package_import_graph_has_no_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 30, "the walk found the package's modules"
    assert "proselflc.errors" in graph["proselflc.config"], "config's import of errors is an edge"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_errors_and_the_registry_import_nothing_else_from_the_project() -> None:
    graph = import_graph()
    assert graph["proselflc.errors"] == set()
    assert graph["proselflc.registry"] == {"proselflc.errors"}


def test_config_sits_below_the_datasets_it_checks() -> None:
    """Config checks `data.name` against the registry's table, never by importing the loaders above it."""
    graph = import_graph()
    assert not {m for m in graph["proselflc.config"] if m == "proselflc.data" or m.startswith("proselflc.data.")}
    assert graph["proselflc.dataset_registry"] == {"proselflc.registry"}


@pytest.mark.parametrize(
    ("source", "edges"),
    [
        ("import proselflc.b\n", {"proselflc.b"}),
        ("def f():\n    from proselflc import b\n", {"proselflc.b"}),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import proselflc.b\n", {"proselflc.b"}),
        ("from . import b\n", {"proselflc.b"}),
        ("from .b import thing\n", {"proselflc.b"}),
    ],
)
def test_the_walk_counts_what_its_docstring_says(source: str, edges: set[str], tmp_path: Path, monkeypatch) -> None:
    package = tmp_path / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(source)
    (package / "b.py").write_text("")
    monkeypatch.setattr(f"{__name__}.SRC", tmp_path)
    assert import_graph()["proselflc.a"] == edges


def test_a_cycle_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
