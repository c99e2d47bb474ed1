"""The TUI's import graph: no cycle, screens below the app, pure modules without Textual.

Every import counts, wherever it stands (module level, in a function, under
TYPE_CHECKING): a cycle hidden in a function or a type-checking block is still a
cycle in the design.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TUI = Path(__file__).resolve().parents[2] / "tui"

#: The modules that hold the TUI's logic and must run (and be tested) without Textual.
PURE = {
    "tui.backend",
    "tui.cells",
    "tui.filters",
    "tui.live",
    "tui.model",
    "tui.pool_reads",
    "tui.pool_view",
    "tui.reads",
    "tui.rollout_reads",
    "tui.rollout_view",
    "tui.state",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(TUI.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, module: str) -> Iterator[str]:
    """Every module `path` (module `module`) imports, absolute.

    `from a import b` yields `a` and `a.b` (b may be a module or a name in a).
    """
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def graph() -> dict[str, set[str]]:
    """tui's modules and the tui modules each imports."""
    files = {module_name(p): p for p in TUI.rglob("*.py")}
    return {
        name: {dep for dep in imported(path, name) if dep in files and dep != name}
        for name, path in files.items()
    }


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle (its modules, the first repeated at the end), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for dep in sorted(edges.get(node, ())):
            cycle = visit(dep)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(edges):
        cycle = visit(start)
        if cycle:
            return cycle
    return None


def test_the_checker_sees_cycles_and_relative_and_function_level_imports(tmp_path) -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    source = tmp_path / "x.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..app import RachelApp\n"
        "def f():\n    import tui.live\n    from . import base\n"
    )
    found = set(imported(source, "tui.screens.x"))
    assert {"tui.app", "tui.live", "tui.screens.base"} <= found


def test_tui_has_no_import_cycle() -> None:
    edges = graph()
    assert "tui.app" in edges and "tui.screens.fleet" in edges  # the walk found the package
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_only_the_app_imports_the_app() -> None:
    importers = sorted(name for name, deps in graph().items() if "tui.app" in deps)
    assert importers == []


def test_pure_modules_do_not_import_textual() -> None:
    for name in sorted(PURE):
        path = TUI / (name.removeprefix("tui.").replace(".", "/") + ".py")
        textual = sorted(m for m in imported(path, name) if m.split(".")[0] == "textual")
        assert not textual, f"{name} imports {textual}"
