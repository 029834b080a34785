"""Dead letters keep their raw input as bytes: a NUL, invalid UTF-8 or any byte is stored as sent.

Existing letters were stored as text (invalid UTF-8 already replaced by U+FFFD when
they arrived), so their bytes are that text's UTF-8; `loyalty dlq redrive` still refuses
the ones whose reason says their bytes were not UTF-8 and whose text holds U+FFFD.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE dead_letters ALTER raw TYPE bytea USING convert_to(raw, 'UTF8')")


def downgrade() -> None:
    # Lossless back only for letters that are UTF-8 without NUL: the others refuse to convert.
    op.execute("ALTER TABLE dead_letters ALTER raw TYPE text USING convert_from(raw, 'UTF8')")
