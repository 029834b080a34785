"""The migrations create exactly the tables that store/schema.py describes."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, pool

from loyalty_ledger.generations.catalog import FIRST, GENERATION_TABLES, schema_of
from loyalty_ledger.generations.migrate import migrate
from loyalty_ledger.projectors.sql import projections
from loyalty_ledger.store.tables import metadata


def _differences(url: str, schema: str, tables: set[str]) -> list[Any]:
    """What differs between the metadata's `tables` and what `schema` holds."""
    engine = create_engine(
        url, poolclass=pool.NullPool, connect_args={"options": f"-csearch_path={schema}"}
    )

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ != "table":
            return True
        return name in tables

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include})
        return list(compare_metadata(context, metadata))


def _all_differences(url: str) -> list[Any]:
    projected = {p.name for p in projections()}
    per_generation = set(GENERATION_TABLES)
    shared = set(metadata.tables) - per_generation - projected
    return _differences(url, schema_of(FIRST), per_generation) + _differences(url, "public", shared)


def test_migrated_database_matches_the_schema_module(database_url: str) -> None:
    assert _all_differences(database_url) == []


def test_migrate_twice_is_a_no_op(database_url: str) -> None:
    migrate(database_url)
    assert _all_differences(database_url) == []
