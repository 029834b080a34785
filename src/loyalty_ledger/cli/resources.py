"""What a command holds for its lifetime: the database (LOYALTY_DATABASE_URL, or the
embedded server in ./.loyalty/), a generation to read, and a progress display on stderr."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loyalty_ledger.progress import Progress
from loyalty_ledger.store import embedded
from loyalty_ledger.store.db import Connection, connect, live_schema, use_schema

EMBEDDED_ROOT = Path(".loyalty")


@contextmanager
def database(migrate: bool = True) -> Iterator[Connection]:
    """LOYALTY_DATABASE_URL, or the embedded server in ./.loyalty/ for this command's lifetime."""
    url = os.environ.get("LOYALTY_DATABASE_URL")
    if url:
        with _open(url, migrate) as conn:
            yield conn
        return
    with embedded.running(EMBEDDED_ROOT) as server, _open(server.url, migrate) as conn:
        yield conn


@contextmanager
def _open(url: str, migrate: bool) -> Iterator[Connection]:
    conn = connect(url)  # first: an unreachable URL fails here, with its message
    try:
        if migrate:
            from loyalty_ledger.generations.migrate import migrate as run_migrations

            run_migrations(url)
        schema = live_schema(conn)
        if schema is not None:  # the connection came before the migrations made it
            use_schema(conn, schema)
        yield conn
    finally:
        conn.close()


def use_generation(conn: Connection, name: str) -> None:
    """Point this connection at generation `name` instead of the live one."""
    from loyalty_ledger.generations import catalog as generations

    generations.use(conn, generations.get(conn, name))


@contextmanager
def progress(label: str, unit: str = "") -> Iterator[Progress]:
    """A progress display on stderr when it is a terminal, log lines otherwise."""
    from loyalty_ledger.progress import reporting

    with reporting(label, unit, sys.stderr.isatty()) as update:
        yield update
