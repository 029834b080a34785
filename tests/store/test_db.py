"""Connections: a second one opened beside a first goes where the first goes, with no registry."""

from __future__ import annotations

from collections.abc import MutableMapping, MutableSet

import pytest

from loyalty_ledger.generations import catalog
from loyalty_ledger.store import db
from loyalty_ledger.store.db import Database, StoreUnavailable, connect, sibling


def test_a_sibling_works_on_the_same_database_and_generation(database_url: str) -> None:
    with connect(database_url) as conn:
        live = catalog.live(conn)
        with sibling(conn) as beside:
            assert Database.of(beside) == Database.of(conn)
            assert db.schema_of(beside) == live.schema_name
            name = beside.execute("SELECT current_database()").fetchone()
            assert name == conn.execute("SELECT current_database()").fetchone()


def test_a_connection_carries_its_own_identity() -> None:
    """No module-level table of connections: nothing to leak, nothing to get out of date."""
    kinds = MutableMapping | MutableSet
    tables = [k for k, v in vars(db).items() if not k.startswith("__") and isinstance(v, kinds)]
    assert tables == []


def test_an_unreachable_sibling_names_the_database_not_the_password() -> None:
    gone = Database((("dbname", "nowhere"), ("host", "127.0.0.1"), ("password", "s3cret"),
                     ("port", "1")), None)  # fmt: skip
    with pytest.raises(StoreUnavailable) as raised:
        gone.connect()
    assert "nowhere" in str(raised.value) and "s3cret" not in str(raised.value)
