"""Generations: a ledger and its read models under one program, each in a schema of its own.

A generation's tables (GENERATION_TABLES and the projections) live in the
PostgreSQL schema `gen_<name>`; a connection works on one generation through
its search_path, with the shared tables (programs, members, dead letters,
duplicates, offsets) in `public` behind it. Exactly one generation is live;
the `live` schema holds a view of each of its read models, so analysts'
queries follow a promotion without changing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from psycopg import sql
from psycopg.rows import class_row

from loyalty_ledger.errors import UserError
from loyalty_ledger.projectors.install import LIVE_SCHEMA, ensure_read_models
from loyalty_ledger.store.db import Connection, use_schema

FIRST = "main"  # the generation a new database starts with
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

# Tables every generation has a copy of; the rest of `public` is shared.
GENERATION_TABLES = (
    "inbox", "ledger", "customer_state", "ticks", "outbox", "relay_checkpoints",
    "projection_checkpoints",
)  # fmt: skip
RELAY_NAMES = ("ledger", "deadletter", "internal")


class GenerationError(UserError):
    """A generation that does not exist, or cannot do what was asked; the message says why."""


@dataclass(frozen=True, slots=True)
class Generation:
    name: str
    schema_name: str
    program_hash: str | None
    status: str  # candidate | live | retired
    parent: str | None  # the generation whose inbox it replays
    replayed_arrival: int  # the parent's inbox replayed up to this arrival
    until_at: datetime | None  # a what-if limited to inputs up to this instant
    created_at: datetime
    promoted_at: datetime | None


_COLUMNS = sql.SQL(
    "name, schema_name, program_hash, status, parent, replayed_arrival, until_at, created_at, "
    "promoted_at"
)


def schema_of(name: str) -> str:
    return f"gen_{name}"


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise GenerationError(
            f"generation name {name!r} is not valid: use lowercase letters, digits and _, "
            "starting with a letter (at most 40)"
        )
    if name == LIVE_SCHEMA:
        raise GenerationError("'live' names the live generation; choose another name")
    return name


def listing(conn: Connection) -> list[Generation]:
    with conn.cursor(row_factory=class_row(Generation)) as cur:
        cur.execute(
            sql.SQL("SELECT {} FROM public.generations ORDER BY created_at, name").format(_COLUMNS)
        )
        return cur.fetchall()


def find(conn: Connection, name: str) -> Generation | None:
    """The generation called `name`; 'live' is the live one."""
    where = sql.SQL("status = 'live'") if name == LIVE_SCHEMA else sql.SQL("name = %(name)s")
    with conn.cursor(row_factory=class_row(Generation)) as cur:
        cur.execute(
            sql.SQL("SELECT {} FROM public.generations WHERE {}").format(_COLUMNS, where),
            {"name": name},
        )
        return cur.fetchone()


def get(conn: Connection, name: str) -> Generation:
    found = find(conn, name)
    if found is None:
        known = ", ".join(g.name for g in listing(conn)) or "none"
        raise GenerationError(f"no generation {name!r}; known: {known} (and 'live')")
    return found


def live(conn: Connection) -> Generation:
    found = find(conn, LIVE_SCHEMA)
    assert found is not None, "no live generation: the migrations make one"
    return found


def use(conn: Connection, generation: Generation) -> None:
    """Work on `generation` from now on (this connection and its siblings)."""
    use_schema(conn, generation.schema_name)


def create(
    conn: Connection,
    name: str,
    program_hash: str,
    parent: Generation,
    until_at: datetime | None,
) -> Generation:
    """A new, empty candidate generation shaped like `parent` (its tables, indexes, triggers)."""
    schema = schema_of(check_name(name))
    with conn.transaction():
        # The ledger's chain id is its generations' too (store/chain.py): a re-run's chain
        # equals the live one's, hash for hash, where their entries are equal.
        conn.execute(
            "INSERT INTO public.generations (name, schema_name, program_hash, status, parent, "
            "until_at, chain_id) SELECT %s, %s, %s, 'candidate', %s, %s, chain_id "
            "FROM public.generations WHERE name = %s",
            (name, schema, program_hash, parent.name, until_at, parent.name),
        )
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for table in GENERATION_TABLES:
            # LIKE copies columns, defaults, CHECKs, indexes and identities (new sequences).
            conn.execute(
                sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                    sql.Identifier(schema, table), sql.Identifier(parent.schema_name, table)
                )
            )
        conn.execute(sql.SQL(APPEND_ONLY_TRIGGERS).format(ledger=sql.Identifier(schema, "ledger")))
        conn.execute(
            sql.SQL("INSERT INTO {} (name, position) SELECT unnest(%s::text[]), 0").format(
                sql.Identifier(schema, "relay_checkpoints")
            ),
            (list(RELAY_NAMES),),
        )
        ensure_read_models(conn, schema)
    return get(conn, name)


APPEND_ONLY_TRIGGERS = (
    "CREATE TRIGGER ledger_no_update_delete BEFORE UPDATE OR DELETE ON {ledger} "
    "FOR EACH ROW EXECUTE FUNCTION public.ledger_refuse_change(); "
    "CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON {ledger} "
    "FOR EACH STATEMENT EXECUTE FUNCTION public.ledger_refuse_change()"
)
