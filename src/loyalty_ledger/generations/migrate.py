"""Migrating a database: alembic's upgrade, then every generation's read models completed.

The read models sit above the store (projectors/), so this step lives here and not in store/.
"""

from __future__ import annotations

import re
from functools import cache

from loyalty_ledger.generations import catalog as generations
from loyalty_ledger.projectors import install
from loyalty_ledger.projectors.sql import projections
from loyalty_ledger.store import locks
from loyalty_ledger.store.db import Connection, connect, sqlalchemy_url
from loyalty_ledger.store.tables import migrations_dir


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest schema (idempotent, safe to run concurrently)."""
    with connect(url) as conn:
        if up_to_date(conn):
            return  # the usual case, every command: without alembic's import and lock
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    with connect(url) as lock:
        locks.migrating(lock)
        command.upgrade(config, "head")
        _ensure_read_models(lock)


def _ensure_read_models(conn: Connection) -> None:
    """Read models added to projections/ since a generation was made: created empty at
    checkpoint 0 (the next catch-up fills them), and shown in `live`."""
    with conn.transaction():
        for generation in generations.listing(conn):
            if generation.status != "retired":
                install.ensure_read_models(conn, generation.schema_name)
        shown = {name for (name,) in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (install.LIVE_SCHEMA,),
        )}  # fmt: skip
        if not set(install.live_relations()) <= shown:
            install.expose(conn, generations.live(conn).schema_name)


# Up to date: at the head revision, every read model in every generation not retired, and
# every one shown in `live`. A migration commits its revision with its changes, so one
# running meanwhile is not seen as done: the caller then takes the lock and waits for it.
_READ_MODELS_SHOWN = """
SELECT NOT EXISTS (
           SELECT FROM public.generations g, unnest(%(models)s::text[]) AS m(name)
           WHERE g.status <> 'retired'
             AND to_regclass(format('%%I.%%I', g.schema_name, m.name)) IS NULL)
   AND NOT EXISTS (
           SELECT FROM unnest(%(shown)s::text[]) AS l(name)
           WHERE to_regclass(format('%%I.%%I', %(live)s::text, l.name)) IS NULL)
"""


def up_to_date(conn: Connection) -> bool:
    """Whether `migrate` has nothing to do here: three small queries, no alembic."""
    exists = conn.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL").fetchone()
    if not (exists and exists[0]):
        return False  # an empty database: the full path makes everything
    at = conn.execute("SELECT max(version_num) FROM public.alembic_version").fetchone()
    if at is None or at[0] != head_revision():
        return False  # older, or a migration in flight: the full path, under the lock
    params = {
        "models": [p.name for p in projections()], "shown": install.live_relations(),
        "live": install.LIVE_SCHEMA,
    }  # fmt: skip
    row = conn.execute(_READ_MODELS_SHOWN, params).fetchone()
    return bool(row and row[0])


@cache
def head_revision() -> str:
    """The newest migration's revision: the one no other names as its down_revision,
    read off the files (importing them is alembic's job)."""
    found: dict[str, str | None] = {}
    for path in (migrations_dir() / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        revision = re.search(r'^revision = "([^"]+)"', text, re.MULTILINE)
        down = re.search(r'^down_revision = "([^"]+)"', text, re.MULTILINE)
        assert revision is not None, f"{path.name} names no revision"
        found[revision[1]] = down[1] if down else None
    (head,) = set(found) - set(found.values())
    return head
