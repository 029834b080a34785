"""`loyalty status`: per partition, the offset stored in PostgreSQL, the lag, and the last batch."""

from __future__ import annotations

from typing import TextIO

from confluent_kafka import Consumer, TopicPartition

from loyalty_ledger.kafka.settings import ClientValue, KafkaSettings
from loyalty_ledger.kafka.topics import partition_count
from loyalty_ledger.store import offsets
from loyalty_ledger.store.db import Connection
from loyalty_ledger.text import printable

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


def print_status(conn: Connection, settings: KafkaSettings, group: str, out: TextIO) -> None:
    rows = offsets.listing(conn, group)
    topics = sorted({settings.inputs, settings.internal} | {r.topic for r in rows})
    out.write("topic\tpartition\tstored_offset\tlag\tlast_batch\towner\n")
    for topic in topics:
        partitions = partition_count(settings, topic)
        ends = end_offsets(settings, topic, partitions)
        stored = {r.partition: r for r in rows if r.topic == topic}
        for partition in range(partitions):
            row = stored.get(partition)
            offset = row.next_offset if row else 0
            end = ends.get(partition)
            lag = "?" if end is None else str(max(0, end - offset))
            last = row.updated_at.isoformat(timespec="seconds") if row else "-"
            owner = row.owner if row else "-"
            out.write(f"{printable(topic)}\t{partition}\t{offset}\t{lag}\t{last}\t"
                      f"{printable(owner)}\n")  # fmt: skip
