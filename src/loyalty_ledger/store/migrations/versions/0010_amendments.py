"""Amendments (PROGRAM.md "Amendments"): a generation's program changes from an instant on.

`program_amendments` keeps each version after a generation's original program: the
whole program (by hash, in `programs`), the instant it is in force from, and when and by
whom it was recorded. `generations.amendments` counts them: every batch reads it, under
a share lock, in its transaction and refuses to commit what was decided under fewer
versions (store.batch), so an amendment and a batch never cross. Each generation's inbox
records the version (program hash) that decided each input.

Revision ID: 0010
Revises: 0009
"""

from alembic import op
from psycopg import sql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE public.generations
            ADD COLUMN amendments integer NOT NULL DEFAULT 0,
            ADD CONSTRAINT generations_amendments CHECK (amendments >= 0);
        CREATE TABLE public.program_amendments (
            generation   text NOT NULL REFERENCES public.generations (name),
            effective_at timestamptz NOT NULL,
            program_hash text NOT NULL REFERENCES public.programs (hash),
            recorded_at  timestamptz NOT NULL DEFAULT now(),
            recorded_by  text NOT NULL,
            PRIMARY KEY (generation, effective_at)
        );
        """
    )
    conn = op.get_bind().connection.driver_connection  # psycopg: SQL composed, not formatted
    assert conn is not None
    for (schema,) in conn.execute("SELECT schema_name FROM public.generations").fetchall():
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD COLUMN program_hash text").format(
                sql.Identifier(schema, "inbox")
            )
        )


def downgrade() -> None:
    op.execute("DROP TABLE public.program_amendments")
    op.execute("ALTER TABLE public.generations DROP COLUMN amendments")
