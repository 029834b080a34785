"""The migrations create exactly the tables that store/schema.py describes."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, pool

from loyalty_ledger.projectors.sql import projections
from loyalty_ledger.store.schema import metadata, migrate


def _differences(url: str) -> list[Any]:
    engine = create_engine(url, poolclass=pool.NullPool)
    projected = {p.name for p in projections()} | {"alembic_version"}

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        return not (type_ == "table" and name in projected)

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include})
        return list(compare_metadata(context, metadata))


def test_migrated_database_matches_the_schema_module(database_url: str) -> None:
    assert _differences(database_url) == []


def test_migrate_twice_is_a_no_op(database_url: str) -> None:
    migrate(database_url)
    assert _differences(database_url) == []
