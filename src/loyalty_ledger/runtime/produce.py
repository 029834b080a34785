"""Publish inputs to Kafka: JSON Lines keyed by customer_id, and ticks copied to every partition."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from loyalty_ledger import log
from loyalty_ledger.kafka.producer import producer as kafka_producer
from loyalty_ledger.kafka.settings import (
    ClientErrors,
    KafkaSettings,
    KafkaUnavailable,
)
from loyalty_ledger.kafka.topics import partition_count
from loyalty_ledger.progress import Progress
from loyalty_ledger.sources import file as file_source

FLUSH_TIMEOUT_S = 60.0
PROGRESS_EVERY = 1000  # lines


@dataclass(frozen=True)
class Outgoing:
    """One message to send: the value as-is, its key, or an explicit partition."""

    value: bytes
    key: bytes | None = None
    partition: int | None = None


def messages_for(line: bytes, partitions: int) -> list[Outgoing]:
    """What one input line becomes: itself, keyed by customer_id when one can be read,
    or, for a tick, one copy per partition whose event_id ends in `@p<N>`."""
    event = _json_object(line)
    if event is None:
        return [Outgoing(line)]  # malformed: published as-is, the consumer dead-letters it
    if event.get("type") == "tick" and isinstance(event.get("event_id"), str):
        return [
            Outgoing(_dumps({**event, "event_id": f"{event['event_id']}@p{p}"}), partition=p)
            for p in range(partitions)
        ]
    customer_id = event.get("customer_id")
    # surrogatepass: a lone surrogate in the id must not stop the producer; the consumer
    # dead-letters such an input wherever it lands.
    key = customer_id.encode("utf-8", "surrogatepass") if isinstance(customer_id, str) else None
    return [Outgoing(line, key)]


def tick_message(at: datetime, partition: int) -> Outgoing:
    """The tick `loyalty tick --at` sends to `partition`; its event_id is stable per instant."""
    iso = at.isoformat()
    body = {"event_id": f"tick-{iso}@p{partition}", "type": "tick", "occurred_at": iso}
    return Outgoing(_dumps(body), partition=partition)


def produce_file(settings: KafkaSettings, path: str, progress: Progress | None = None) -> int:
    """Publish every non-blank line of `path` (`-`: stdin) to the inputs topic, as-is.

    Returns the number of messages delivered (a tick line counts once per partition).
    """
    partitions = partition_count(settings, settings.inputs)
    logger = log.get("produce").bind(source=path, topic=settings.inputs)
    started = time.perf_counter()
    lines = 0
    with file_source.open_source(path) as source, _Sender(settings) as sender:
        read, size = 0, source.size_bytes
        for raw, raw_size in file_source.read_lines(source):
            read += raw_size
            body = raw.rstrip(b"\r\n")
            if not body.strip():
                continue  # blank lines are not inputs
            lines += 1
            for message in messages_for(body, partitions):
                sender.send(message, f"line {lines}")
            if progress and lines % PROGRESS_EVERY == 0:
                progress(read, size)
        if progress:
            progress(read, size)
    elapsed_s = time.perf_counter() - started
    logger.info("produced", lines=lines, messages=sender.delivered, partitions=partitions,
                seconds=round(elapsed_s, 3))  # fmt: skip
    return sender.delivered


def send_tick(settings: KafkaSettings, at: datetime) -> int:
    """One tick at `at` (which must carry a UTC offset) to every partition of the inputs topic."""
    if at.utcoffset() is None:
        raise ValueError(
            f"tick instant {at.isoformat()} has no UTC offset: "
            "write it like 2026-03-01T00:00:00+01:00"
        )
    partitions = partition_count(settings, settings.inputs)
    with _Sender(settings) as sender:
        for partition in range(partitions):
            sender.send(tick_message(at, partition), f"tick to partition {partition}")
    log.get("tick").info("ticked", at=at.isoformat(), topic=settings.inputs, partitions=partitions)
    return partitions


class _Sender:
    """A producer whose delivery reports are checked: the first failure raises, in one line."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.topic = settings.inputs
        self.errors = ClientErrors()
        self.delivered = 0
        self.failure: str | None = None
        # lz4 where this librdkafka build has it, else no compression
        self.producer = kafka_producer(settings, inputs=True, compression="lz4", errors=self.errors)

    def __enter__(self) -> _Sender:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None:
            self.finish()
        else:  # failing anyway: drop what is queued rather than wait for it
            self.producer.purge()
            self.producer.flush(0)

    def send(self, message: Outgoing, what: str) -> None:
        partition = -1 if message.partition is None else message.partition  # -1: partitioner
        while True:
            try:
                self.producer.produce(self.topic, message.value, message.key, partition,
                                      on_delivery=self._report)  # fmt: skip
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                self._serve(0.1)
            except KafkaException as e:
                self.producer.poll(0)
                raise self.errors.unavailable(self.settings, f"producing {what}", e) from None
        self._serve(0)

    def finish(self) -> None:
        remaining = self.producer.flush(FLUSH_TIMEOUT_S)
        self._check()
        if remaining:
            raise KafkaUnavailable(
                f"kafka at {self.settings.bootstrap}: {remaining} messages to {self.topic} "
                f"were not delivered within {FLUSH_TIMEOUT_S:.0f} s"
            )

    def _serve(self, timeout_s: float) -> None:
        self.producer.poll(timeout_s)
        self._check()

    def _check(self) -> None:
        if self.failure is not None:
            raise KafkaUnavailable(
                f"kafka at {self.settings.bootstrap}: delivery to {self.topic} failed: "
                f"{self.failure}"
            )

    def _report(self, error: KafkaError | None, _message: Message) -> None:
        if error is None:
            self.delivered += 1
        elif self.failure is None:
            self.failure = str(error.str())


def _json_object(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return value if isinstance(value, dict) else None


def _dumps(value: dict[str, Any]) -> bytes:
    # ASCII with escapes: the same JSON, and a lone surrogate in any field stays encodable.
    return json.dumps(value).encode("ascii")
