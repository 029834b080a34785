"""`loyalty offsets reset`: re-read a group's partitions from an offset or a time, from PostgreSQL.

The inbox records every input's partition, offset and instant, so the offset
for a time comes from there, not from the broker's time index. Re-reading is
harmless: every input's event id is used once, and a message read again is
known by its position. Bumping the owner epoch fences a running owner,
whose next batch then resumes from the new offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from loyalty_ledger.errors import UserError
from loyalty_ledger.sources.address import SourceAddress
from loyalty_ledger.store.db import Connection


class ResetError(UserError):
    """Nothing to reset, as asked; the message says what exists."""


@dataclass(frozen=True, slots=True)
class Reset:
    topic: str
    partition: int
    next_offset_was: int
    next_offset: int


def reset(
    conn: Connection,
    group: str,
    *,
    to_offset: int | None = None,
    to_time: datetime | None = None,
    topic: str | None = None,
    partition: int | None = None,
) -> list[Reset]:
    """Move the group's stored offsets (one partition or all) back to `to_offset` or `to_time`."""
    assert (to_offset is None) != (to_time is None), "exactly one of to_offset and to_time"
    resets: list[Reset] = []
    with conn.transaction():
        rows = conn.execute(
            "SELECT topic, partition, next_offset FROM consumer_offsets WHERE group_id = %s "
            "AND (%s::text IS NULL OR topic = %s) AND (%s::int IS NULL OR partition = %s) "
            "ORDER BY topic, partition FOR UPDATE",
            (group, topic, topic, partition, partition),
        ).fetchall()
        if not rows:
            raise ResetError(_nothing(conn, group))
        for row_topic, row_partition, was in rows:
            target = (
                to_offset
                if to_time is None
                else _offset_at(conn, row_topic, row_partition, to_time)
            )
            new = was if target is None else min(target, was)  # never skips unread inputs
            _store(conn, group, row_topic, row_partition, new)
            resets.append(Reset(row_topic, row_partition, was, new))
    return resets


def _offset_at(conn: Connection, topic: str, partition: int, at: datetime) -> int | None:
    """The first offset of the partition holding an input that occurred at or after `at`."""
    row = conn.execute(
        "SELECT min(position) FROM inbox WHERE source = %s AND occurred_at >= %s",
        (SourceAddress.kafka(topic, partition).format(), at),
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _store(conn: Connection, group: str, topic: str, partition: int, offset: int) -> None:
    conn.execute(
        "UPDATE consumer_offsets SET next_offset = %s, owner_epoch = owner_epoch + 1, "
        "owner = 'offsets reset', updated_at = now() "
        "WHERE group_id = %s AND topic = %s AND partition = %s",
        (offset, group, topic, partition),
    )


def _nothing(conn: Connection, group: str) -> str:
    groups = [g for (g,) in conn.execute("SELECT DISTINCT group_id FROM consumer_offsets")]
    known = ", ".join(sorted(groups)) or "none yet"
    return f"group {group!r} has no stored offsets for that topic/partition; groups: {known}"
