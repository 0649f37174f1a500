"""The package's layers: imports flow one way (the core <- the Space layer <- app.py), with no cycle, counting the
imports made inside functions too. Read from the source with ``ast``, so an import that only runs on some path
counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The Space layer: what the Gradio app needs beyond the core. Everything else under repaint/ is the core.
SPACE = "repaint.space"


def module_files() -> dict[str, Path]:
    files = {"app": ROOT / "app.py"}
    for path in sorted((ROOT / "repaint").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imported_module(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from ... import`` names, relative ones resolved against ``package``."""
    if not node.level:
        return node.module or ""
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports anywhere in its source (``from . import x`` counts as ``pkg.x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = imported_module(node, package_of(name, path))
            found |= {f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module for alias in node.names}
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports(name, path, set(files)) for name, path in files.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle's modules (Tarjan's strongly connected components with more than one module, or a self-loop)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1 or v in edges[v]:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_have_no_cycle():
    edges = graph()
    assert {"app", "repaint", "repaint.models", "repaint.space.service"} <= set(edges)
    assert edges["app"] >= {"repaint.space.service"}  # the graph sees imports (a sanity check of the reader)
    assert cycles(edges) == []


def test_every_relative_import_names_a_module_of_the_project():
    """A relative import the reader cannot place would hide an edge (and fail at run time, as ``from .images`` in
    repaint/space/ once did)."""
    files = module_files()
    lost = []
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                module = imported_module(node, package_of(name, path))
                if module not in files and not all(f"{module}.{a.name}" in files for a in node.names):
                    lost.append((name, module))
    assert lost == []


def test_the_core_never_imports_the_space_layer():
    def space(module: str) -> bool:
        return module == SPACE or module.startswith(SPACE + ".")

    edges = graph()
    wrong = {m: sorted(filter(space, deps)) for m, deps in edges.items() if m != "app" and not space(m)}
    assert {m: deps for m, deps in wrong.items() if deps} == {}
    assert not any("app" in deps for deps in edges.values())
