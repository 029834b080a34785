"""The keyed hash chain: per generation, its key's id, where its keyed chain starts, its size.

Entries written before this revision keep their legacy sha256 chain: a generation's keyed
chain starts after its last entry (`chain_keyed_from`), a new one's at seq 1. The key's id
is set by the first keyed write (the key lives outside the database, so no migration can
know it); `chain_id`, random per ledger (a re-run's generation takes its parent's), is MACed
into the chain where its keyed part starts and names the ledger in its anchors, so two
ledgers never take each other's anchors and an owner who changes it breaks the chain;
`chain_entries` counts the ledger's rows so each batch's anchor names its head without
counting the table.

Revision ID: 0005
Revises: 0004
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = """
ALTER TABLE generations
    ADD COLUMN chain_id         text NOT NULL DEFAULT gen_random_uuid()::text,
    ADD COLUMN chain_key_id     text,
    ADD COLUMN chain_keyed_from bigint NOT NULL DEFAULT 1,
    ADD COLUMN chain_entries    bigint NOT NULL DEFAULT 0,
    ADD CONSTRAINT generations_chain_keyed_from CHECK (chain_keyed_from >= 1),
    ADD CONSTRAINT generations_chain_entries CHECK (chain_entries >= 0);
DO $$
DECLARE
    g record;
    last_seq bigint;
    rows bigint;
BEGIN
    FOR g IN SELECT name, schema_name FROM generations LOOP
        EXECUTE format('SELECT coalesce(max(seq), 0), count(*) FROM %I.ledger', g.schema_name)
            INTO last_seq, rows;
        UPDATE generations SET chain_keyed_from = last_seq + 1, chain_entries = rows
        WHERE name = g.name;
    END LOOP;
END
$$;
"""

DOWNGRADE = """
ALTER TABLE generations
    DROP COLUMN chain_id,
    DROP COLUMN chain_key_id,
    DROP COLUMN chain_keyed_from,
    DROP COLUMN chain_entries;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
