"""A generation's hash chain record: which key chains it, from which seq, and its head.

`public.generations` keeps per generation the id of the key its chain is MACed with
(`chain_key_id`, set by the first keyed write), the seq its keyed chain starts at
(`chain_keyed_from`: entries before it, written before migration 0005, keep the legacy
sha256 chain) and how many entries it holds (`chain_entries`), so each batch's anchor
names its head without counting the table.
"""

from __future__ import annotations

from dataclasses import dataclass

from loyalty_ledger.ledger.anchors import Anchor, now
from loyalty_ledger.ledger.chain import GENESIS, chain_start
from loyalty_ledger.ledger.key import LedgerKey, LedgerKeyError
from loyalty_ledger.store.db import Connection


@dataclass(frozen=True, slots=True)
class Record:
    generation: str
    chain_id: str
    key_id: str | None  # None: no keyed entry written yet
    keyed_from: int
    entries: int


def record(conn: Connection) -> Record:
    """The chain record of the connection's generation."""
    row = conn.execute(
        "SELECT name, chain_id, chain_key_id, chain_keyed_from, chain_entries "
        "FROM public.generations "
        "WHERE schema_name = current_schema()"
    ).fetchone()
    assert row is not None, "a connection's search_path names no generation"
    return Record(*row)


def another_key(found: Record, key: LedgerKey) -> str | None:
    """Why `key` cannot chain or check this generation, if it cannot."""
    if found.key_id is None or found.key_id == key.key_id:
        return None
    return (
        f"is chained with another key (id {found.key_id}), not the one in {key.origin} "
        f"(id {key.key_id}): set LOYALTY_LEDGER_KEY or LOYALTY_LEDGER_KEY_FILE to its key"
    )


def head_hash(conn: Connection, key: LedgerKey) -> bytes:
    """The hash the next entry chains on; under the append lock. Refuses another key: one
    chain, one key."""
    found = record(conn)
    why = another_key(found, key)
    if why is not None:
        raise LedgerKeyError(f"generation {found.generation} {why}")
    row = conn.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
    if row is None or row[0] < found.keyed_from:  # the keyed chain starts with this batch
        return chain_start(key.secret, GENESIS if row is None else bytes(row[1]), found.chain_id)
    return bytes(row[1])


def advance(conn: Connection, added: int, key: LedgerKey) -> Anchor:
    """Count the entries just written and return the new head, to anchor after commit."""
    head = conn.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
    assert head is not None, "advance follows a write of entries"
    row = conn.execute(
        "UPDATE public.generations SET chain_entries = chain_entries + %s, chain_key_id = %s "
        "WHERE schema_name = current_schema() "
        "RETURNING name, chain_id, chain_entries, chain_keyed_from",
        (added, key.key_id),
    ).fetchone()
    assert row is not None
    name, chain_id, entries, keyed_from = row
    return Anchor(name, chain_id, head[0], entries, bytes(head[1]).hex(), keyed_from, key.key_id,
                  now())  # fmt: skip


def current_head(conn: Connection, key: LedgerKey) -> Anchor:
    """The head as the ledger holds it now, counted: for `loyalty ledger anchor`."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # head and count agree
        found = record(conn)
        why = another_key(found, key)
        if why is not None:
            raise LedgerKeyError(f"generation {found.generation} {why}")
        head = conn.execute("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1").fetchone()
        count = conn.execute("SELECT count(*) FROM ledger").fetchone()
    assert count is not None
    seq, digest = head if head is not None else (0, GENESIS)
    return Anchor(found.generation, found.chain_id, seq, count[0], bytes(digest).hex(),
                  found.keyed_from, key.key_id, now())  # fmt: skip


def head_at(conn: Connection, seq: int, key: LedgerKey) -> Anchor:
    """The chain's head as of entry `seq` (the relay's last published one), counted from the
    record without scanning: the entries after it are few."""
    row = conn.execute(
        "SELECT g.name, g.chain_id, g.chain_keyed_from, l.hash, "
        "g.chain_entries - (SELECT count(*) FROM ledger WHERE seq > %(seq)s) "
        "FROM public.generations g, ledger l "
        "WHERE g.schema_name = current_schema() AND l.seq = %(seq)s",
        {"seq": seq},
    ).fetchone()
    assert row is not None, "an anchored seq is one the ledger holds"
    name, chain_id, keyed_from, digest, entries = row
    return Anchor(name, chain_id, seq, entries, bytes(digest).hex(), keyed_from, key.key_id,
                  now())  # fmt: skip
