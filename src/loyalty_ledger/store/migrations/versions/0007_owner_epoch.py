"""Consumer offsets: the fencing counter is the owner epoch, not a "generation".

"Generation" names a ledger and its read models under one program; the counter
a claim bumps to fence a partition's lost owner is renamed so the two never meet.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE consumer_offsets RENAME COLUMN generation TO owner_epoch")


def downgrade() -> None:
    op.execute("ALTER TABLE consumer_offsets RENAME COLUMN owner_epoch TO generation")
