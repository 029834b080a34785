"""Amendments (PROGRAM.md "Amendments"): a generation's program changes from an instant on.

`program_amendments` keeps each version after a generation's original program: the
whole program (by hash, in `programs`), the instant it is in force from, and when and by
whom it was recorded. `generations.amendments` counts them: every batch reads it, under
a share lock, in its transaction and refuses to commit what was decided under fewer
versions (store.batch), so an amendment and a batch never cross.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE public.generations
            ADD COLUMN amendments integer NOT NULL DEFAULT 0 CHECK (amendments >= 0);
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


def downgrade() -> None:
    op.execute("DROP TABLE public.program_amendments")
    op.execute("ALTER TABLE public.generations DROP COLUMN amendments")
