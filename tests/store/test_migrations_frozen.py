"""Migrations are frozen history: none imports the package, so later code never changes them."""

from __future__ import annotations

import ast
import importlib.util
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from loyalty_ledger.ledger import chain
from loyalty_ledger.ledger.entries import COLUMNS
from loyalty_ledger.store.tables import migrations_dir

MIGRATIONS = migrations_dir()
FILES = sorted([MIGRATIONS / "env.py", *(MIGRATIONS / "versions").glob("*.py")])


def _package_imports(path: Path) -> list[str]:
    """Every import of loyalty_ledger in `path`, relative ones included, as `line: module`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = ["." * node.level + (node.module or "")]
        else:
            continue
        found += [
            f"{node.lineno}: {name}"
            for name in names
            if name.split(".")[0] == "loyalty_ledger" or name.startswith(".")
        ]
    return found


def test_there_are_migrations() -> None:
    assert len(FILES) >= 7, FILES  # env.py and 0001-0006 at least


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_migration_imports_nothing_of_the_package(path: Path) -> None:
    assert _package_imports(path) == []


def test_the_check_sees_an_import(tmp_path: Path) -> None:
    path = tmp_path / "0099_example.py"
    path.write_text(
        "import os\nfrom loyalty_ledger.ledger import chain\nimport loyalty_ledger.store\n"
        "from . import sibling\n",
        encoding="utf-8",
    )
    assert _package_imports(path) == [
        "2: loyalty_ledger.ledger",
        "3: loyalty_ledger.store",
        "4: .",
    ]


def test_0003_hashes_as_verify_checks() -> None:
    """0003's frozen legacy chain is the one `verify` recomputes for entries before 0005."""
    spec = importlib.util.spec_from_file_location(
        "migration_0003", MIGRATIONS / "versions" / "0003_generations.py"
    )
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    at = datetime(2026, 1, 1, 10, tzinfo=UTC)
    rows = [
        ("c1", 1, "credit", at, "e1", 100, Decimal("12.50"), "purchase", *[None] * 5, at),
        ("c1", 2, "redemption", at, "e2", 40, None, None, "r", "gift", *[None] * 4),
    ]
    prev = frozen = chain.GENESIS
    assert migration.GENESIS == chain.GENESIS
    assert migration.COLUMNS == COLUMNS
    for values in rows:
        prev, frozen = chain.legacy_chain_hash(prev, values), migration.chain_hash(frozen, values)
        assert frozen == prev
