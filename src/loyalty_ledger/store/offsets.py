"""Consumer offsets in PostgreSQL, with an owner epoch per partition that fences lost owners.

Kafka's committed offsets are a courtesy for lag tools; these are the truth:
they commit in the same transaction as the effects of the messages before them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from psycopg.rows import class_row

from loyalty_ledger.errors import Conflict
from loyalty_ledger.store.db import Connection

TopicPartition = tuple[str, int]


class Fenced(Conflict):
    """This consumer no longer owns a partition it tried to write: the batch rolls back."""


@dataclass(frozen=True, slots=True)
class Claim:
    next_offset: int
    owner_epoch: int


@dataclass(frozen=True, slots=True)
class OffsetRow:
    group_id: str
    topic: str
    partition: int
    next_offset: int
    owner_epoch: int
    owner: str
    updated_at: datetime


def claim(
    conn: Connection, group: str, owner: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, Claim]:
    """Take ownership: a new owner epoch per partition, and the offset to resume from."""
    claims: dict[TopicPartition, Claim] = {}
    with conn.transaction():
        for topic, partition in sorted(partitions):  # one lock order for every claimer
            row = conn.execute(
                "INSERT INTO consumer_offsets AS o "
                "(group_id, topic, partition, next_offset, owner_epoch, owner) "
                "VALUES (%s, %s, %s, 0, 1, %s) ON CONFLICT (group_id, topic, partition) "
                "DO UPDATE SET owner_epoch = o.owner_epoch + 1, owner = excluded.owner, "
                "updated_at = now() RETURNING next_offset, owner_epoch",
                (group, topic, partition, owner),
            ).fetchone()
            assert row is not None
            claims[(topic, partition)] = Claim(int(row[0]), int(row[1]))
    return claims


OFFSETS_CHANNEL = "loyalty_offsets"


def record(
    conn: Connection,
    *,
    group: str,
    positions: Mapping[TopicPartition, int],
    owner_epochs: Mapping[TopicPartition, int],
) -> None:
    """Store the next offsets, inside the batch's transaction; `Fenced` if another owner claimed."""
    for (topic, partition), next_offset in sorted(positions.items()):
        cursor = conn.execute(
            "UPDATE consumer_offsets SET next_offset = %s, updated_at = now() "
            "WHERE group_id = %s AND topic = %s AND partition = %s AND owner_epoch = %s",
            (next_offset, group, topic, partition, owner_epochs[(topic, partition)]),
        )
        if cursor.rowcount != 1:
            raise Fenced(f"partition {topic}[{partition}] was claimed by another consumer")
    # Delivered at commit, to `loyalty serve` in Kafka mode, which answers its requests then.
    conn.execute("SELECT pg_notify(%s, %s)", (OFFSETS_CHANNEL, group))


def stored(conn: Connection, group: str, topic: str) -> dict[int, int]:
    """partition -> next offset, for the partitions this group has consumed."""
    rows = conn.execute(
        "SELECT partition, next_offset FROM consumer_offsets WHERE group_id = %s AND topic = %s",
        (group, topic),
    ).fetchall()
    return {int(p): int(o) for p, o in rows}


def listing(conn: Connection, group: str | None = None) -> list[OffsetRow]:
    with conn.cursor(row_factory=class_row(OffsetRow)) as cur:
        cur.execute(
            "SELECT group_id, topic, partition, next_offset, owner_epoch, owner, updated_at "
            "FROM consumer_offsets WHERE %(group)s::text IS NULL OR group_id = %(group)s "
            "ORDER BY group_id, topic, partition",
            {"group": group},
        )
        return cur.fetchall()
