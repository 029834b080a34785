"""`loyalty consume`: the Kafka consumer group through the same pipeline as a file ingest.

Per batch: decide and write one transaction (effects + offsets, fenced), then
catch the projections up, relay what committed to Kafka, and commit the
offsets to Kafka as a courtesy. SIGINT/SIGTERM finish the batch in hand and
leave the group cleanly.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from types import FrameType

from confluent_kafka import Producer

from loyalty_ledger import log
from loyalty_ledger.generations import amendments, programs
from loyalty_ledger.kafka import relay as outbox_relay
from loyalty_ledger.kafka.producer import producer
from loyalty_ledger.kafka.settings import KafkaSettings
from loyalty_ledger.kafka.topics import TopicError, partition_count
from loyalty_ledger.pipeline import Counts, Pipeline
from loyalty_ledger.program import Program
from loyalty_ledger.projectors import runner
from loyalty_ledger.sources.kafka import KafkaSource, PartitionRouting
from loyalty_ledger.store.batch import GenerationChanged
from loyalty_ledger.store.db import Connection, live_schema, schema_of, use_schema
from loyalty_ledger.store.offsets import Fenced


@dataclass(frozen=True, slots=True)
class ConsumeOptions:
    group: str = "loyalty"
    batch_size: int = 10_000
    batch_ms: int = 500
    stop_when_idle_s: float | None = None  # None: run until stopped


@contextmanager
def _stop_signals() -> Iterator[list[bool]]:
    """A flag set by SIGINT/SIGTERM, so the loop stops between batches, not inside one."""
    stop = [False]

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop[0] = True

    if threading.current_thread() is not threading.main_thread():
        yield stop  # embedded in a program of its own (or a test): it handles signals
        return
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
    internal = partition_count(settings, settings.internal)
    if internal != partitions:
        raise TopicError(
            f"{settings.internal} has {internal} partitions and {settings.inputs} {partitions}: "
            "give them as many (see `loyalty topics create`)"
        )
    routing = PartitionRouting(partitions)
    pipeline = _pipeline(conn, program, routing)
    holder = [pipeline]  # the pipeline is replaced when another generation goes live
    source = KafkaSource(conn, settings, options.group, routing, partial(_lost, holder))
    loop = _Loop(conn, settings, source, pipeline, producer(settings))
    logger = log.get("consume").bind(group=options.group, owner=source.owner)
    total = Counts()
    idle_since = time.monotonic()
    try:
        with _stop_signals() as stop:
            while not stop[0]:
                try:
                    counts = loop.step(options)
                except GenerationChanged as e:
                    holder[0] = loop.pipeline = _switch(conn, loop.pipeline, routing)
                    logger.info("generation_changed", reason=str(e), now=schema_of(conn))
                    source.resync()  # the refused batch is read again, into the new one
                    continue
                if counts is None:
                    if not source.owner_epochs:
                        idle_since = time.monotonic()  # quiet before joining the group is no sign
                    elif options.stop_when_idle_s is not None and (
                        time.monotonic() - idle_since >= options.stop_when_idle_s
                    ):
                        break
                    continue
                idle_since = time.monotonic()
                total.add(counts)
                logger.info("batch", **_fields(counts))
            loop.settle()
            total.add(loop.late)
    finally:
        loop.pipeline.close()
        source.close()
        loop.producer.flush(10)
    logger.info("stopped", **_fields(total))
    return total


def _switch(conn: Connection, old: Pipeline, routing: PartitionRouting) -> Pipeline:
    """A pipeline on the generation that is live now, under its program; the old one's
    cached states belong to the generation it wrote."""
    with contextlib.suppress(GenerationChanged, Fenced):
        old.close()
    schema = live_schema(conn)
    assert schema is not None
    use_schema(conn, schema)
    return _pipeline(conn, programs.adopt(conn, None), routing)


def _pipeline(conn: Connection, program: Program, routing: PartitionRouting) -> Pipeline:
    """A pipeline under the generation's program history; an amendment recorded later
    refuses its next batch (ProgramAmended, a GenerationChanged): `_switch` makes a new one."""
    count, history = amendments.load_history(conn, program)
    return Pipeline(conn, history, routing, after_commit=runner.catch_up, amendments=count)


def _lost(holder: list[Pipeline], streams: list[str]) -> None:
    """Before partitions go: finish the batch in flight, then drop their customers' state."""
    pipeline = holder[0]
    with contextlib.suppress(Fenced, GenerationChanged):  # none of its work stands
        pipeline.wait()
    pipeline.forget(streams)


@dataclass(slots=True)
class _Loop:
    """One batch decided while the one before it commits (at most one in flight)."""

    conn: Connection
    settings: KafkaSettings
    source: KafkaSource
    pipeline: Pipeline
    producer: Producer
    in_flight: dict[tuple[str, int], int] | None = None  # offsets of the batch being written
    late: Counts = field(default_factory=Counts)  # corrections found by `settle` (pipeline.wait)

    def step(self, options: ConsumeOptions) -> Counts | None:
        """One batch; None when nothing came (then everything in flight is settled)."""
        fetched = self.source.fetch(options.batch_size, options.batch_ms)
        if not fetched.lines:
            self.settle()
            return None
        try:
            counts = self.pipeline.submit(fetched.lines, fetched.record_position)
        except GenerationChanged:
            self.in_flight = None
            raise
        except Fenced as e:
            self._fenced(e)
            return None
        self._committed()  # submit returned: the batch before this one is committed
        self.in_flight = fetched.next_offsets
        return counts

    def settle(self) -> None:
        """Wait for the batch in flight, then tell Kafka and relay what committed."""
        try:
            self.late.add(self.pipeline.wait())
        except GenerationChanged:
            self.in_flight = None
            raise
        except Fenced as e:
            self._fenced(e)
            return
        self._committed()

    def _committed(self) -> None:
        if self.in_flight:
            self.source.commit_courtesy(self.in_flight)
        self.in_flight = None
        outbox_relay.relay(self.conn, self.producer, self.settings)

    def _fenced(self, error: Fenced) -> None:
        log.get("consume").warning("fenced", reason=str(error))
        self.in_flight = None
        self.source.resync()


def _fields(counts: Counts) -> dict[str, int]:
    return {
        "accepted": counts.accepted,
        "rejected": counts.rejected,
        "duplicates": counts.duplicates,
        "dead_lettered": counts.dead_lettered,
        "entries": counts.entries,
        "commands": counts.commands,
    }
