"""The PostgreSQL schema as SQLAlchemy Core tables, and `migrate`, which brings a database to head.

The tables here are what the code queries; alembic's revisions under
`store/migrations/` create them, and a test compares the two. The tables named
in store.generations.GENERATION_TABLES exist once per generation, in its
schema; the others once, in `public`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

if TYPE_CHECKING:
    pass

metadata = MetaData()
_now = text("now()")

programs = Table(
    "programs",
    metadata,
    Column("hash", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("source", Text, nullable=False),  # the TOML as given
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=_now),
)

settings = Table(
    "settings",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

inbox = Table(
    "inbox",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("arrival", BigInteger, Identity(always=False), nullable=False, unique=True),
    Column("source", Text, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("customer_id", Text),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("outcome", Text, nullable=False),
    Column("reason", Text),
    Column("body_hash", LargeBinary, nullable=False),
    Column("raw", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=_now),
    # the program version that decided it (its hash); null: decided before amendments
    Column("program_hash", Text),
    CheckConstraint("outcome IN ('accepted', 'rejected')", name="inbox_outcome"),
    CheckConstraint("(outcome = 'rejected') = (reason IS NOT NULL)", name="inbox_reason"),
    Index("inbox_source_position", "source", "position"),
)

duplicates = Table(
    "duplicates",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("source", Text, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("same_body", Boolean, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=_now),
    UniqueConstraint("source", "position", name="duplicates_source_position"),
)

ledger = Table(
    "ledger",
    metadata,
    Column("seq", BigInteger, Identity(always=True), primary_key=True),
    Column("customer_id", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("kind", Text, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("event_id", Text, nullable=False),
    Column("points", BigInteger, nullable=False),
    Column("amount", Numeric),
    Column("cause", Text),
    Column("ref", Text),
    Column("reward", Text),
    Column("tier_from", Text),
    Column("tier_to", Text),
    Column("reason", Text),
    Column("expires_at", DateTime(timezone=True)),
    Column("hash", LargeBinary, nullable=False),  # ledger.keyed_chain over the entry before
    UniqueConstraint("customer_id", "version", name="ledger_customer_version"),
    # Paired with the assertions in ledger.Entry and engine.decide.Decision (the points limit).
    CheckConstraint("points >= 0", name="ledger_points"),
    CheckConstraint("points <= 1000000000000000", name="ledger_points_limit"),  # 10^15
    CheckConstraint("version >= 1", name="ledger_version"),
    Index("ledger_event_id", "event_id"),
)

customer_state = Table(
    "customer_state",
    metadata,
    Column("customer_id", Text, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("state", JSONB, nullable=False),
    Column("next_due_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_now),
    Index("customer_state_next_due", "next_due_at"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("source", Text, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("raw", LargeBinary, nullable=False),  # the input's bytes as they arrived, any bytes
    Column("reason", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="open"),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=_now),
    Column("resolved_at", DateTime(timezone=True)),
    Column("resolution", Text),  # the discard's reason, or where the redriven input went
    UniqueConstraint("source", "position", name="dead_letters_source_position"),
    CheckConstraint("status IN ('open', 'redriven', 'discarded')", name="dead_letters_status"),
    CheckConstraint("(status = 'open') = (resolved_at IS NULL)", name="dead_letters_resolved"),
)

generations = Table(
    "generations",
    metadata,
    Column("name", Text, primary_key=True),
    Column("schema_name", Text, nullable=False, unique=True),
    Column("program_hash", Text, ForeignKey("programs.hash")),
    Column("status", Text, nullable=False),
    Column("parent", Text, ForeignKey("generations.name")),
    Column("replayed_arrival", BigInteger, nullable=False, server_default="0"),
    Column("until_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=_now),
    Column("promoted_at", DateTime(timezone=True)),
    # the hash chain (store/chain.py): its id, its key's id, its first keyed seq, its entries
    Column("chain_id", Text, nullable=False,
           server_default=text("(gen_random_uuid())::text")),
    Column("chain_key_id", Text),
    Column("chain_keyed_from", BigInteger, nullable=False, server_default="1"),
    Column("chain_entries", BigInteger, nullable=False, server_default="0"),
    # how many program_amendments it has: every batch checks it (store.batch)
    Column("amendments", Integer, nullable=False, server_default="0"),
    CheckConstraint("status IN ('candidate', 'live', 'retired')", name="generations_status"),
    CheckConstraint("amendments >= 0", name="generations_amendments"),
    CheckConstraint("chain_keyed_from >= 1", name="generations_chain_keyed_from"),
    CheckConstraint("chain_entries >= 0", name="generations_chain_entries"),
    Index("generations_one_live", text("(true)"), unique=True,
          postgresql_where=text("status = 'live'")),
)  # fmt: skip

program_amendments = Table(
    "program_amendments",
    metadata,
    Column("generation", Text, ForeignKey("generations.name"), primary_key=True),
    Column("effective_at", DateTime(timezone=True), primary_key=True),
    Column("program_hash", Text, ForeignKey("programs.hash"), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=_now),
    Column("recorded_by", Text, nullable=False),
)

erasures = Table(
    "erasures",
    metadata,
    Column("customer_id", Text, primary_key=True),
    Column("erased_at", DateTime(timezone=True), nullable=False, server_default=_now),
    Column("inputs", Integer, nullable=False),  # inbox rows scrubbed, every generation
    Column("dead_letters", Integer, nullable=False),
)

members = Table(
    "members",
    metadata,
    Column("customer_id", Text, primary_key=True),
    Column("email", Text),
    Column("name", Text),
    Column("phone", Text),
    Column("birth_date", Date),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_now),
)

source_positions = Table(
    "source_positions",
    metadata,
    Column("source", Text, primary_key=True),
    Column("position", BigInteger, nullable=False),  # inputs consumed (file: lines)
    Column("byte_offset", BigInteger, nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_now),
)

ticks = Table(
    "ticks",
    metadata,
    Column("stream", Text, primary_key=True),
    Column("n", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("event_id", Text, nullable=False),
)

projection_checkpoints = Table(
    "projection_checkpoints",
    metadata,
    Column("name", Text, primary_key=True),
    Column("seq", BigInteger, nullable=False),
)


consumer_offsets = Table(
    "consumer_offsets",
    metadata,
    Column("group_id", Text, primary_key=True),
    Column("topic", Text, primary_key=True),
    Column("partition", Integer, primary_key=True),
    Column("next_offset", BigInteger, nullable=False),
    Column("owner_epoch", BigInteger, nullable=False),  # fences a lost owner's late batch
    Column("owner", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=_now),
    CheckConstraint("next_offset >= 0", name="consumer_offsets_offset"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("kind", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=_now),
)

relay_checkpoints = Table(
    "relay_checkpoints",
    metadata,
    Column("name", Text, primary_key=True),
    Column("position", BigInteger, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("name", Text, primary_key=True),  # [a-z0-9._-]: it is part of a source address
    Column("scope", Text, nullable=False),
    Column("key_hash", LargeBinary, nullable=False, unique=True),  # sha256 of the key
    Column("prefix", Text, nullable=False),  # the key's first characters, to tell keys apart
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=_now),
    Column("revoked_at", DateTime(timezone=True)),
    CheckConstraint("scope IN ('read', 'pos', 'support', 'admin')", name="api_keys_scope"),
    CheckConstraint("octet_length(key_hash) = 32", name="api_keys_hash"),
    CheckConstraint("name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'", name="api_keys_name"),
)


def migrations_dir() -> Path:
    return Path(__file__).with_name("migrations")
