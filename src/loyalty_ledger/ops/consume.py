"""`loyalty consume`: the Kafka consumer group through the same pipeline as a file ingest.

Per batch: decide and write one transaction (effects + offsets, fenced), then
catch the projections up, relay what committed to Kafka, and commit the
offsets to Kafka as a courtesy. SIGINT/SIGTERM finish the batch in hand and
leave the group cleanly.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from loyalty_ledger import log
from loyalty_ledger.engine import compile_rules
from loyalty_ledger.kafka_settings import KafkaSettings
from loyalty_ledger.ops import relay as outbox_relay
from loyalty_ledger.ops.topics import partition_count
from loyalty_ledger.pipeline import Counts, Pipeline
from loyalty_ledger.projectors import runner
from loyalty_ledger.sources.kafka import KafkaSource, PartitionRouting
from loyalty_ledger.store import programs
from loyalty_ledger.store.db import Connection
from loyalty_ledger.store.offsets import Fenced


@dataclass(frozen=True, slots=True)
class ConsumeOptions:
    group: str = "loyalty"
    batch_size: int = 2000
    batch_ms: int = 500
    stop_when_idle_s: float | None = None  # None: run until stopped


@contextmanager
def _stop_signals() -> Iterator[list[bool]]:
    """A flag set by SIGINT/SIGTERM, so the loop stops between batches, not inside one."""
    stop = [False]

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop[0] = True

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def consume(
    conn: Connection,
    settings: KafkaSettings,
    options: ConsumeOptions,
    program_source: str | None,
    program_origin: str = "program",
) -> Counts:
    """Consume until stopped (or idle long enough); returns the totals."""
    program = programs.adopt(conn, program_source, program_origin)
    partitions = partition_count(settings, settings.inputs)
    if partition_count(settings, settings.internal) != partitions:
        raise ValueError(f"{settings.internal} must have as many partitions as {settings.inputs}")
    routing = PartitionRouting(partitions)
    pipeline = Pipeline(conn, compile_rules(program), routing, after_commit=runner.catch_up)
    source = KafkaSource(conn, settings, options.group, routing, pipeline.forget)
    producer = outbox_relay.producer(settings)
    logger = log.get("consume").bind(group=options.group, owner=source.owner)
    total = Counts()
    idle_since = time.monotonic()
    try:
        with _stop_signals() as stop:
            while not stop[0]:
                counts = _one_batch(conn, source, pipeline, options)
                outbox_relay.relay(conn, producer, settings)
                if counts is None or not counts.inputs:
                    if not source.generations:
                        idle_since = time.monotonic()  # quiet before joining the group is no sign
                    elif options.stop_when_idle_s is not None and (
                        time.monotonic() - idle_since >= options.stop_when_idle_s
                    ):
                        break
                    continue
                idle_since = time.monotonic()
                total.add(counts)
                logger.info("batch", **_fields(counts))
    finally:
        pipeline.close()
        source.close()
        producer.flush(10)
    logger.info("stopped", **_fields(total))
    return total


def _one_batch(
    conn: Connection, source: KafkaSource, pipeline: Pipeline, options: ConsumeOptions
) -> Counts | None:
    fetched = source.fetch(options.batch_size, options.batch_ms)
    if not fetched.lines:
        return None
    try:
        counts = pipeline.process(fetched.lines, fetched.record_position)
    except Fenced as e:
        log.get("consume").warning("fenced", reason=str(e))
        source.resync()
        return None
    source.commit_courtesy(fetched.next_offsets)
    return counts


def _fields(counts: Counts) -> dict[str, int]:
    return {
        "accepted": counts.accepted,
        "rejected": counts.rejected,
        "duplicates": counts.duplicates,
        "dead_lettered": counts.dead_lettered,
        "entries": counts.entries,
        "commands": counts.commands,
    }
