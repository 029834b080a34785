"""Connections: URL forms for psycopg and SQLAlchemy, and driver errors translated once, here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import TupleRow

from loyalty_ledger.errors import Unavailable

Connection = psycopg.Connection[TupleRow]


class StoreUnavailable(Unavailable):
    """The database cannot be reached or refused us; the message names the URL's problem."""


# What pg_stat_activity calls this process's connections ("loyalty ingest"), unless the URL or
# PGAPPNAME names them; a second connection adds its role ("loyalty ingest writer"), so an
# operator (and benchmarks/ingest.py) can tell the writer's backend from the projector's.
_application: ContextVar[str] = ContextVar("application", default="loyalty")
APPLICATION_NAME_MAX = 63  # NAMEDATALEN - 1: the server cuts a longer name there


@contextmanager
def application(name: str) -> Iterator[None]:
    """Connections opened within are named `name` (libpq's fallback_application_name)."""
    token = _application.set(name[:APPLICATION_NAME_MAX])
    try:
        yield
    finally:
        _application.reset(token)


def psycopg_url(url: str) -> str:
    """A libpq URL: SQLAlchemy's driver suffix removed."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def sqlalchemy_url(url: str) -> str:
    return "postgresql+psycopg://" + psycopg_url(url).removeprefix("postgresql://")


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, userinfo = head.partition("//")
    return f"{scheme}//{userinfo.split(':', 1)[0]}:***@{tail}"


def connect(url: str, *, autocommit: bool = True, schema: str | None = None) -> Connection:
    """A connection working on generation schema `schema`, by default the live one."""
    try:
        conn = psycopg.connect(
            psycopg_url(url), autocommit=autocommit, connect_timeout=10,
            fallback_application_name=_application.get(),
        )  # fmt: skip
    except psycopg.Error as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StoreUnavailable(f"cannot connect to {redact(url)}: {first}") from e
    chosen = schema or live_schema(conn)
    if chosen is not None:  # None: not migrated yet
        use_schema(conn, chosen)
    return conn


def live_schema(conn: Connection) -> str | None:
    """The live generation's schema; None before the migrations made one."""
    found = conn.execute("SELECT to_regclass('public.generations') IS NOT NULL").fetchone()
    row = None
    if found and found[0]:
        row = conn.execute(
            "SELECT schema_name FROM public.generations WHERE status = 'live'"
        ).fetchone()
    if not conn.autocommit:
        conn.rollback()  # leave no transaction open behind the caller's back
    return None if row is None or row[0] is None else str(row[0])


def use_schema(conn: Connection, schema: str) -> None:
    """Unqualified names now mean `schema`'s tables, then the shared ones in public."""
    conn.execute(sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema)))
    if not conn.autocommit:
        conn.commit()  # a SET inside a rolled-back transaction would be undone


def schema_of(conn: Connection) -> str | None:
    """The generation schema `conn` works on (the first of its search_path that exists)."""
    row = conn.execute("SELECT current_schema()").fetchone()
    if not conn.autocommit:
        conn.rollback()
    return None if row is None or row[0] in (None, "public") else str(row[0])


@dataclass(frozen=True, slots=True)
class Database:
    """Where a connection goes: a server's libpq parameters and the generation schema whose
    tables its unqualified names mean.

    Read from an open connection (psycopg exposes its parameters, the password
    included), so a second connection beside it, such as the pipeline's writer
    thread's, needs no registry of URLs and no URL threaded through every caller.
    """

    params: tuple[tuple[str, str], ...]
    schema: str | None

    @classmethod
    def of(cls, conn: Connection) -> Database:
        params = dict(conn.info.get_parameters())  # without the password: added back here
        if conn.info.password:
            params["password"] = conn.info.password
        return cls(tuple(sorted(params.items())), schema_of(conn))

    def conninfo(self, role: str | None = None) -> str:
        """libpq's connection string for these parameters (for a pool), named for `role`."""
        return make_conninfo(**self._named(role))

    def connect(self, role: str | None = None) -> Connection:
        """A new connection here; with `role`, named after it in pg_stat_activity."""
        params = self._named(role)
        try:
            conn = psycopg.connect(make_conninfo(**params), autocommit=True, connect_timeout=10)
        except psycopg.Error as e:
            where = f"database {params.get('dbname', '?')} on {params.get('host', 'localhost')}"
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StoreUnavailable(f"cannot connect to {where}: {first}") from e
        if self.schema is not None:
            use_schema(conn, self.schema)
        return conn

    def _named(self, role: str | None) -> dict[str, str]:
        params = dict(self.params)
        if role is not None:
            name = params.get("application_name") or params.get("fallback_application_name")
            params["application_name"] = f"{name or 'loyalty'} {role}"[:APPLICATION_NAME_MAX]
        return params


def sibling(conn: Connection, role: str | None = None) -> Connection:
    """A new connection to the database and generation of `conn` (named for `role`)."""
    return Database.of(conn).connect(role)
