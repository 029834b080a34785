"""Connections: URL forms for psycopg and SQLAlchemy, and driver errors translated once, here."""

from __future__ import annotations

import weakref

import psycopg
from psycopg.rows import TupleRow

Connection = psycopg.Connection[TupleRow]


class StoreUnavailable(Exception):
    """The database cannot be reached or refused us; the message names the URL's problem."""


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


# The URL of each connection we opened, so a second one can be opened beside it (the
# pipeline's writer thread) without threading URLs and passwords through every caller.
_URLS: weakref.WeakKeyDictionary[Connection, str] = weakref.WeakKeyDictionary()


def connect(url: str, *, autocommit: bool = True) -> Connection:
    try:
        conn = psycopg.connect(psycopg_url(url), autocommit=autocommit, connect_timeout=10)
    except psycopg.Error as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StoreUnavailable(f"cannot connect to {redact(url)}: {first}") from e
    _URLS[conn] = url
    return conn


def sibling(conn: Connection) -> Connection:
    """A new connection to the database `conn` is connected to (it must come from `connect`)."""
    return connect(_URLS[conn])
