"""The package's import graph has no cycle.

Every ``import`` / ``from ... import`` inside ``src/prunekit`` counts, at module level and
inside functions alike: a function-level import that closes a loop is a cycle that only
happens to work because of the order things run in. An imported name resolves to the
submodule when one has that name (``from . import connection``), otherwise to the module
it is taken from.
"""

from __future__ import annotations

import ast
from pathlib import Path

import prunekit

PACKAGE_DIR = Path(prunekit.__file__).parent


def _modules(root: Path) -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


def _targets(module: str, is_package: bool, node: ast.AST, known: set[str]) -> set[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        assert isinstance(node, ast.ImportFrom)
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            origin = ".".join(base + ([node.module] if node.module else []))
        else:
            origin = node.module or ""
        names = [
            f"{origin}.{a.name}" if f"{origin}.{a.name}" in known else origin for a in node.names
        ]
    out = set()
    for name in names:
        while name not in known and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in known and name != module:
            out.add(name)
    return out


def import_graph(root: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    modules = _modules(root)
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                deps |= _targets(name, is_package, node, known)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_detector_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_relative_and_function_level_imports_are_followed(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import leaf\n")
    (pkg / "sub" / "leaf.py").write_text("def f():\n    from ..top import g\n")
    (pkg / "top.py").write_text("from .sub.leaf import f\n")
    graph = import_graph(pkg)
    assert graph["pkg.sub"] == {"pkg.sub.leaf"}
    assert graph["pkg.sub.leaf"] == {"pkg.top"}
    assert graph["pkg.top"] == {"pkg.sub.leaf"}
    assert find_cycle(graph) is not None


def test_prunekit_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "prunekit.pruning.granularity" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


#: (importer, imported) package prefixes: a room below must not import one above it.
#: The surgery removes what pruning decided, so pruning never imports the surgery (the
#: dependency analysis both use lives in ``prunekit.pruning.dependency``).
FORBIDDEN_UPWARD = [("prunekit.pruning", "prunekit.surgery")]


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{src} -> {dst}"
        for src, deps in graph.items()
        for dst in deps
        for low, high in FORBIDDEN_UPWARD
        if _within(src, low) and _within(dst, high)
    )


def test_detector_finds_a_planted_upward_import() -> None:
    graph = {"prunekit.pruning.step": {"prunekit.surgery.groups"}, "prunekit.surgery": set()}
    assert upward_imports(graph) == ["prunekit.pruning.step -> prunekit.surgery.groups"]


def test_pruning_does_not_import_the_surgery() -> None:
    assert upward_imports(import_graph()) == []
