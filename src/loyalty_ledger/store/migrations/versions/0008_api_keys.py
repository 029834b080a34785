"""API keys of the HTTP API (`loyalty serve`): a name, a scope, and the key's SHA-256 only.

The key itself is shown once, when it is created; a stolen database gives no key
(a key is 256 random bits, so one unsalted hash suffices, as for GitHub's tokens).
Revoked keys stay, so the name in an input's source (`http:<name>`) keeps its meaning.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE public.api_keys (
            name text PRIMARY KEY,
            scope text NOT NULL,
            key_hash bytea NOT NULL UNIQUE,
            prefix text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz,
            CONSTRAINT api_keys_scope CHECK (scope IN ('read', 'pos', 'support', 'admin')),
            CONSTRAINT api_keys_hash CHECK (octet_length(key_hash) = 32),
            CONSTRAINT api_keys_name CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$')
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE public.api_keys")
