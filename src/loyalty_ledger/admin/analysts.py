"""Analyst logins: read the live generation's read models and views in schema `live`, write
nothing, and see members' PII only when granted it.

An analyst role gets LOGIN, USAGE on `live` and SELECT on everything in it (also on views
created there later by this role, e.g. at a promotion), `search_path = live`, and with
`with_pii` SELECT on `members`; nothing else. `live`'s views run with their owner's
rights, so the generation schemas themselves stay closed to the analyst.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from psycopg import sql

from loyalty_ledger.errors import UserError
from loyalty_ledger.projectors.install import LIVE_SCHEMA
from loyalty_ledger.store.db import Connection

NAME_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
MARK = "loyalty analyst: read-only"  # the role's comment: only such roles are ever changed


class AnalystError(UserError):
    """A name or role we must not use, or a database without the `live` schema."""


@dataclass(frozen=True, slots=True)
class Grant:
    role: str
    created: bool  # False: an existing analyst role, updated
    with_pii: bool
    relations: int  # what it can read in `live`


def grant_analyst(
    conn: Connection, name: str, password: str | None = None, with_pii: bool = False
) -> Grant:
    """Create (or update) the read-only login `name`; idempotent."""
    if not NAME_PATTERN.match(name):
        raise AnalystError(
            f"role name {name!r} is not valid: use lowercase letters, digits and _ "
            "(at most 63), starting with a letter or _"
        )
    try:
        return _grant(conn, name, password, with_pii)
    except psycopg.errors.InsufficientPrivilege as e:
        raise AnalystError(
            f"not allowed to create roles here ({str(e).strip().splitlines()[0]}): "
            "run it as a role with CREATEROLE"
        ) from None


def _grant(conn: Connection, name: str, password: str | None, with_pii: bool) -> Grant:
    role, live = sql.Identifier(name), sql.Identifier(LIVE_SCHEMA)
    with conn.transaction():
        if conn.execute("SELECT to_regnamespace(%s) IS NULL", (LIVE_SCHEMA,)).fetchone() == (True,):
            raise AnalystError(
                f"this database has no schema {LIVE_SCHEMA!r} yet: it appears with the "
                "generations migration (run any loyalty command on it first)"
            )
        created = _create_or_check(conn, name, role)
        if password is not None:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(role, sql.Literal(password)))
        for statement in (
            "COMMENT ON ROLE {role} IS {mark}",
            "ALTER ROLE {role} SET search_path = {live}",
            # PostgreSQL 15+ already refuses PUBLIC this; older servers and old databases don't
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            "GRANT CONNECT ON DATABASE {database} TO {role}",
            "GRANT USAGE ON SCHEMA {live} TO {role}",
            "GRANT SELECT ON ALL TABLES IN SCHEMA {live} TO {role}",
            "ALTER DEFAULT PRIVILEGES IN SCHEMA {live} GRANT SELECT ON TABLES TO {role}",
            "GRANT SELECT ON members TO {role}"
            if with_pii
            else "REVOKE ALL ON members FROM {role}",
        ):
            conn.execute(
                sql.SQL(statement).format(
                    role=role, live=live, mark=sql.Literal(MARK),
                    database=sql.Identifier(conn.info.dbname),
                )
            )  # fmt: skip
        row = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relnamespace = to_regnamespace(%s)",
            (LIVE_SCHEMA,),
        ).fetchone()
    return Grant(name, created, with_pii, int(row[0]) if row else 0)


def _create_or_check(conn: Connection, name: str, role: sql.Identifier) -> bool:
    found = conn.execute(
        "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls, "
        "shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s",
        (name,),
    ).fetchone()
    if found is None:
        conn.execute(
            sql.SQL(
                "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
            ).format(role)
        )
        return True
    powerful, comment = found
    if powerful or comment != MARK:
        raise AnalystError(
            f"role {name!r} exists and is not an analyst login made by this command; "
            "choose another name"
        )
    conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(role))
    return False
