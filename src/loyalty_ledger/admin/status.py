"""`loyalty status`: per partition, the offset stored in PostgreSQL, the lag, and the last batch."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import Consumer, TopicPartition

from loyalty_ledger.kafka.settings import ClientValue, KafkaSettings
from loyalty_ledger.kafka.topics import partition_count
from loyalty_ledger.store import offsets
from loyalty_ledger.store.db import Connection

WATERMARK_TIMEOUT_S = 5.0


def end_offsets(settings: KafkaSettings, topic: str, partitions: int) -> dict[int, int | None]:
    """High watermarks per partition (None where the broker does not say)."""
    config: dict[str, ClientValue] = {"group.id": "loyalty-status", "enable.auto.commit": False}
    consumer = Consumer(settings.client(**config))
    try:
        ends: dict[int, int | None] = {}
        for partition in range(partitions):
            try:
                _low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=WATERMARK_TIMEOUT_S
                )
                ends[partition] = int(high)
            except Exception:  # lag is informative only: show what is known
                ends[partition] = None
        return ends
    finally:
        consumer.close()


@dataclass(frozen=True, slots=True)
class PartitionStatus:
    """One partition's line of `loyalty status`: lag is None where the broker does not say."""

    topic: str
    partition: int
    stored_offset: int
    lag: int | None
    last_batch: datetime | None
    owner: str | None


def partition_status(
    conn: Connection, settings: KafkaSettings, group: str
) -> Iterator[PartitionStatus]:
    """Per partition of the inputs, internal and stored topics: offset, lag and last batch.

    A generator, so a caller shows each topic's partitions as the broker answers for them."""
    rows = offsets.listing(conn, group)
    topics = sorted({settings.inputs, settings.internal} | {r.topic for r in rows})
    for topic in topics:
        partitions = partition_count(settings, topic)
        ends = end_offsets(settings, topic, partitions)
        stored = {r.partition: r for r in rows if r.topic == topic}
        for partition in range(partitions):
            row = stored.get(partition)
            offset = row.next_offset if row else 0
            end = ends.get(partition)
            lag = None if end is None else max(0, end - offset)
            yield PartitionStatus(topic, partition, offset, lag, row.updated_at if row else None,
                                  row.owner if row else None)  # fmt: skip
