"""The package's folders are layers, and imports only point down.

A module may import from its own layer or from any layer below it; an upward
import fails here with the module, the line and the layer it reached for.
Lazy imports inside functions count too: they are still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import loyalty_ledger

PACKAGE = Path(loyalty_ledger.__file__).parent

# Lowest first. A top-level module or a package, by its first name under loyalty_ledger.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "text", "log", "progress"}),
    frozenset({"program", "events", "event_schemas"}),
    frozenset({"ledger"}),
    frozenset({"engine"}),
    frozenset({"store"}),
    frozenset({"projectors", "analytics"}),
    frozenset({"kafka"}),
    frozenset({"sources"}),
    frozenset({"pipeline"}),
    frozenset({"generations"}),
    frozenset({"runtime", "admin"}),
    frozenset({"cli", "http"}),
)
# The decision and its entries know nothing of any store, Kafka or source: only the
# wire models and the program below them.
PURE = frozenset({"engine", "ledger"})


def _unit(module: str) -> str | None:
    """`loyalty_ledger.store.batch` -> `store`; None for anything outside the package."""
    parts = module.split(".")
    if parts[0] != "loyalty_ledger":
        return None
    return parts[1] if len(parts) > 1 else ""


def _layer(unit: str) -> int:
    for index, members in enumerate(LAYERS):
        if unit in members:
            return index
    raise AssertionError(f"{unit!r} is in no layer: add it to LAYERS in tests/test_layers.py")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of the package in `path`, including `from x import m`."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _modules() -> list[tuple[Path, str]]:
    """Every module of the package with its unit, migrations excepted (tested on their own)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[:2] == ("store", "migrations"):
            continue
        found.append((path, relative.parts[0].removesuffix(".py")))
    return found


def upward_imports(modules: list[tuple[Path, str]]) -> list[str]:
    """`path:line: unit imports module (a higher layer)` for every upward import."""
    problems = []
    for path, unit in modules:
        if unit == "__init__":
            continue
        own = _layer(unit)
        for line, module in _imports(path):
            target = _unit(module)
            if target and target != unit and _layer(target) > own:
                problems.append(f"{path.name}:{line}: {unit} imports {module} (a higher layer)")
    return problems


def test_every_unit_has_a_layer() -> None:
    for _, unit in _modules():
        if unit != "__init__":
            _layer(unit)


def test_imports_only_point_down() -> None:
    assert upward_imports(_modules()) == []


def test_the_engine_and_the_ledger_know_nothing_of_the_store() -> None:
    reached = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {module}"
        for path, unit in _modules()
        if unit in PURE
        for line, module in _imports(path)
        if (_unit(module) or "") not in PURE | {"", "errors", "text", "log", "program", "events"}
        and _unit(module) is not None
    ]
    assert reached == []


def test_the_check_catches_an_upward_import(tmp_path: Path) -> None:
    """The walker itself: an engine module importing the store, even lazily, is found."""
    module = tmp_path / "bad.py"
    module.write_text("def f() -> None:\n    from loyalty_ledger.store import batch\n")
    assert upward_imports([(module, "engine")]) == [
        "bad.py:2: engine imports loyalty_ledger.store (a higher layer)",
        "bad.py:2: engine imports loyalty_ledger.store.batch (a higher layer)",
    ]
    assert upward_imports([(module, "pipeline")]) == []
