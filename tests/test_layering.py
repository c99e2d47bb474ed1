"""The layering: which package may import which, checked on every import in the tree.

`../shared/design.md`'s layout, as a table: `core` is the only package the
others share and imports none of them; `jobs`, `webhook`, `tui` and `sim`
never import each other; `cli`, the composition root, wires them together.
Inside `core`, the rooms form layers (each `__init__.py` says so). Imports
inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("core", "jobs", "webhook", "tui", "sim", "cli", "bench", "tests")

#: unit -> the units of ours it may import (itself always allowed).
ALLOWED: dict[str, set[str]] = {
    "core": set(),  # core/__init__.py: the package's docstring only
    "core.errors": set(),
    "core.security": {"core.errors"},
    "core.platform": {"core.errors", "core.security"},
    "core.store": {"core.errors", "core.security", "core.platform"},
    "core.cloud": {"core.errors", "core.security", "core.platform"},
    "core.domain": {"core.errors", "core.security", "core.platform", "core.store", "core.cloud"},
    "jobs": {"core"},
    "webhook": {"core"},
    "tui": {"core"},
    "sim": {"core"},
    "cli": {"core", "jobs", "webhook", "tui", "sim"},
}

#: Libraries that belong to one edge each: the domain must not know them.
FRAMEWORKS: dict[str, set[str]] = {
    "litestar": {"webhook", "cli"},
    "rq": {"jobs", "cli"},
    "textual": {"tui", "cli"},
    "click": {"cli", "sim"},
}


def _unit(module: str) -> str:
    """The unit a module belongs to: a room of core, or a top-level package."""
    parts = module.split(".")
    if parts[0] == "core" and len(parts) > 1 and parts[1] != "__init__":
        return f"core.{parts[1]}"
    return parts[0]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in a file, absolute or relative, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield node.lineno, module
            if module == "core":  # `from core import errors` imports the unit core.errors
                for alias in node.names:
                    yield node.lineno, f"core.{alias.name}"


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _violations() -> list[str]:
    found: list[str] = []
    for package in ("core", "jobs", "webhook", "tui", "sim", "cli"):
        for path in _sources(package):
            unit = _unit(_module_name(path))
            allowed = ALLOWED.get(unit)
            if allowed is None:
                found.append(f"{path.relative_to(ROOT)}: unit {unit} has no row in ALLOWED")
                continue
            for line, module in _imports(path):
                top = module.split(".")[0]
                where = f"{path.relative_to(ROOT)}:{line}"
                if top in FRAMEWORKS and package not in FRAMEWORKS[top]:
                    found.append(f"{where}: {unit} imports {module}")
                if top not in OURS:
                    continue
                target = _unit(module)
                if target == "core" and module in ("core", "core.__init__"):
                    continue  # the package itself, for its docstring
                if target == unit or target in allowed or top in allowed:
                    continue
                found.append(f"{where}: {unit} imports {module}")
    return sorted(set(found))


def test_every_import_follows_the_layering() -> None:
    assert _violations() == []


def test_every_core_room_says_what_it_may_import() -> None:
    rooms = [p for p in (ROOT / "core").iterdir() if (p / "__init__.py").is_file()]
    assert rooms, "core has no subpackages"
    for room in rooms:
        unit = f"core.{room.name}"
        assert unit in ALLOWED, f"{unit} is missing from ALLOWED"
        doc = ast.get_docstring(ast.parse((room / "__init__.py").read_text())) or ""
        assert "May import" in doc, f"{unit}/__init__.py does not say what it may import"
    loose = sorted(
        p.name for p in (ROOT / "core").glob("*.py") if p.name not in {"__init__.py", "errors.py"}
    )
    assert loose == [], f"modules outside core's rooms: {loose}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from jobs.enqueue import x\n", "webhook/bad.py:1: webhook imports jobs.enqueue"),
        ("def f():\n    import tui.app\n", "webhook/bad.py:2: webhook imports tui.app"),
        ("from rq import Queue\n", "webhook/bad.py:1: webhook imports rq"),
    ],
)
def test_the_check_catches_a_wrong_import(
    source: str, expected: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A copy of the check run over a tree holding one bad module.
    (tmp_path / "webhook").mkdir()
    (tmp_path / "webhook" / "bad.py").write_text(source)
    for package in ("core", "jobs", "tui", "sim", "cli"):
        (tmp_path / package).mkdir()
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    assert expected in _violations()


def test_a_core_room_may_not_reach_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for package in ("core/security", "jobs", "webhook", "tui", "sim", "cli"):
        (tmp_path / package).mkdir(parents=True)
    (tmp_path / "core" / "security" / "leak.py").write_text("from core.store import models\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    assert _violations() == ["core/security/leak.py:1: core.security imports core.store"]
