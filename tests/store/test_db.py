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


def _name(conn: db.Connection) -> str:
    found = conn.execute("SELECT application_name FROM pg_stat_activity "
                         "WHERE pid = pg_backend_pid()").fetchone()  # fmt: skip
    assert found is not None
    return str(found[0])


def test_connections_are_named_for_pg_stat_activity(database_url: str) -> None:
    """The command's name, and a second connection's role after it: an operator tells the
    ingest's writer backend from its projector's."""
    with connect(database_url) as plain:
        assert _name(plain) == "loyalty"
    with db.application("loyalty ingest"), connect(database_url) as conn:
        assert _name(conn) == "loyalty ingest"
        with sibling(conn, "writer") as writer, sibling(conn) as unnamed:
            assert (_name(writer), _name(unnamed)) == ("loyalty ingest writer", "loyalty ingest")
    with db.application("loyalty " + "x" * 100), connect(database_url) as long, \
            sibling(long, "projector") as beside:  # fmt: skip
        assert len(_name(beside)) == db.APPLICATION_NAME_MAX


def test_a_name_in_the_url_wins(database_url: str) -> None:
    """A shop's own application_name (the URL's, or PGAPPNAME) is kept; roles go after it."""
    sep = "&" if "?" in database_url else "?"
    with db.application("loyalty ingest"), \
            connect(f"{database_url}{sep}application_name=till-sync") as conn:  # fmt: skip
        assert _name(conn) == "till-sync"
        with sibling(conn, "writer") as writer:
            assert _name(writer) == "till-sync writer"
