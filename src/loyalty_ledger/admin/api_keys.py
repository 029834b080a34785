"""API keys of the HTTP API: created (the key shown once), listed, revoked, and checked.

A key is `ll_` and 43 URL-safe characters (256 random bits); the database keeps
its SHA-256 and its first characters (to tell keys apart in a list), never the
key. A key's name is part of the source address of every input it posts
(`http:<name>`), so names are short, lowercase and never reused.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg

from loyalty_ledger.errors import UserError
from loyalty_ledger.store.db import Connection

KEY_PREFIX = "ll_"
SHOWN_CHARS = 8  # of the key, stored to tell keys apart: "ll_" and 5 random characters
NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")  # paired with CHECK api_keys_name


class Scope(StrEnum):
    """What a key may do; each scope may do all that the ones before it may."""

    read = "read"  # read customers, statements, rewards, the program
    pos = "pos"  # also post the customer events a till or a web shop sends
    support = "support"  # also the console and corrections
    admin = "admin"  # also ticks and keys

    def allows(self, needed: Scope) -> bool:
        order = list(Scope)
        return order.index(self) >= order.index(needed)


class ApiKeyError(UserError):
    """A key name that is taken, malformed or unknown; the message says which."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    scope: Scope
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def create(conn: Connection, name: str, scope: Scope) -> tuple[ApiKey, str]:
    """A new key named `name`: the record and the key, which is never shown again."""
    if not NAME.fullmatch(name):
        raise ApiKeyError(
            f"key name {name!r} is not allowed: use 1-64 of a-z, 0-9, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO public.api_keys (name, scope, key_hash, prefix) "
                "VALUES (%s, %s, %s, %s) RETURNING created_at",
                (name, scope.value, key_hash(key), key[:SHOWN_CHARS]),
            ).fetchone()
    except psycopg.errors.UniqueViolation:
        raise ApiKeyError(
            f"a key named {name!r} exists (names are never reused, revoked ones included): "
            "choose another name"
        ) from None
    assert row is not None
    return ApiKey(name, scope, key[:SHOWN_CHARS], row[0], None), key


def listed(conn: Connection) -> list[ApiKey]:
    rows = conn.execute(
        "SELECT name, scope, prefix, created_at, revoked_at FROM public.api_keys ORDER BY name"
    ).fetchall()
    return [ApiKey(name, Scope(scope), *rest) for name, scope, *rest in rows]


def revoke(conn: Connection, name: str) -> ApiKey:
    """Revoke key `name` (a running server stops trusting it within http.auth.KEY_TRUST_S)."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE public.api_keys SET revoked_at = coalesce(revoked_at, now()) "
            "WHERE name = %s RETURNING name, scope, prefix, created_at, revoked_at",
            (name,),
        ).fetchone()
    if row is None:
        raise ApiKeyError(f"no key named {name!r}: `loyalty api-keys list` shows them")
    return ApiKey(row[0], Scope(row[1]), row[2], row[3], row[4])


AUTHENTICATE = (
    "SELECT name, scope, prefix, created_at FROM public.api_keys "
    "WHERE key_hash = %s AND revoked_at IS NULL"
)


def may_be_a_key(key: str) -> bool:
    """Whether `key` has a key's shape (else it is not looked up at all)."""
    return key.startswith(KEY_PREFIX) and len(key) <= 128


def authenticate(conn: Connection, key: str) -> ApiKey | None:
    """The live key `key` is, or None (unknown or revoked)."""
    if not may_be_a_key(key):
        return None
    return key_from(conn.execute(AUTHENTICATE, (key_hash(key),)).fetchone())


def key_from(row: Sequence[Any] | None) -> ApiKey | None:
    """The key from AUTHENTICATE's row, whoever ran the query."""
    return None if row is None else ApiKey(row[0], Scope(row[1]), row[2], row[3], None)
