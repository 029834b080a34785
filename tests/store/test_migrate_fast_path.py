"""`migrate` on a database already up to date: three queries, no alembic; anything missing
(a read model, a `live` view, the newest revision) takes the full path, which mends it."""

from __future__ import annotations

import subprocess
import sys

from loyalty_ledger.generations.migrate import head_revision, migrate, up_to_date
from loyalty_ledger.store.db import connect
from loyalty_ledger.store.tables import migrations_dir


def test_the_head_is_the_newest_migration_file() -> None:
    newest = sorted((migrations_dir() / "versions").glob("*.py"))[-1]
    assert newest.name.startswith(f"{head_revision()}_")


def test_an_up_to_date_database_is_migrated_without_importing_alembic(database_url: str) -> None:
    probe = (
        "import sys; from loyalty_ledger.generations.migrate import migrate; "
        f"migrate({database_url!r}); print('alembic' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, timeout=60)  # fmt: skip
    assert done.stdout.strip() == "False"


def test_a_missing_read_model_takes_the_full_path_and_is_made_again(database_url: str) -> None:
    with connect(database_url) as conn:
        assert up_to_date(conn)
        conn.execute("DROP TABLE gen_main.tier_moves CASCADE")  # its live view goes with it
        conn.commit()
        assert not up_to_date(conn)
    migrate(database_url)
    with connect(database_url) as conn:
        assert up_to_date(conn)
        assert conn.execute("SELECT count(*) FROM live.tier_moves").fetchone() == (0,)


def test_a_missing_live_view_takes_the_full_path(database_url: str) -> None:
    with connect(database_url) as conn:
        conn.execute("DROP VIEW live.balance")
        conn.commit()
        assert not up_to_date(conn)
    migrate(database_url)
    with connect(database_url) as conn:
        assert up_to_date(conn)


def test_an_older_revision_takes_the_full_path(database_url: str) -> None:
    with connect(database_url) as conn:
        conn.execute("UPDATE public.alembic_version SET version_num = '0010'")
        conn.commit()
        assert not up_to_date(conn)
        conn.execute("DROP TABLE public.alembic_version")
        conn.commit()
        assert not up_to_date(conn)  # and no error: an empty database looks so too
