"""Migrating a database: alembic's upgrade, then every generation's read models completed.

The read models sit above the store (projectors/), so this step lives here and not in store/.
"""

from __future__ import annotations

from loyalty_ledger.generations import catalog as generations
from loyalty_ledger.projectors import install
from loyalty_ledger.store import locks
from loyalty_ledger.store.db import Connection, connect, sqlalchemy_url
from loyalty_ledger.store.tables import migrations_dir


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest schema (idempotent, safe to run concurrently)."""
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
