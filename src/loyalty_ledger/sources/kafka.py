"""Kafka as a source: a consumer group on the inputs and internal topics, positioned by PostgreSQL.

On assignment each partition is claimed in PostgreSQL (a new owner epoch)
and the consumer seeks to the offset stored there, not Kafka's committed one.
A batch's offsets are written in the batch's own transaction, fenced by that
epoch, so a consumer that lost a partition cannot commit stale work.
Inputs and internal topics have the same partition count and are assigned
with the range assignor, so partition p of both has one owner: the owner of
the customers whose key hashes to p.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from loyalty_ledger import log
from loyalty_ledger.kafka.partitioner import partition_for
from loyalty_ledger.kafka.settings import ClientValue, KafkaSettings
from loyalty_ledger.sources.address import SourceAddress
from loyalty_ledger.sources.line import Line
from loyalty_ledger.store import offsets
from loyalty_ledger.store.batch import RecordPosition
from loyalty_ledger.store.db import Connection

SESSION_TIMEOUT_MS = 6000  # what the test broker (Tansu) handles well; fine for Kafka too


def stream_of_partition(partition: int) -> str:
    return f"p{partition}"


@dataclass(slots=True)
class PartitionRouting:
    """Customers belong to the partition their id hashes to (Kafka's murmur2 partitioner)."""

    partitions: int
    owned: set[int] = field(default_factory=set)
    _known: dict[str, int] = field(default_factory=dict)  # murmur2 in Python is not free

    def partition_of(self, customer_id: str) -> int:
        partition = self._known.get(customer_id)
        if partition is None:
            partition = self._known[customer_id] = partition_for(customer_id, self.partitions)
        return partition

    def stream_of(self, customer_id: str) -> str:
        return stream_of_partition(self.partition_of(customer_id))

    def owns(self, customer_id: str) -> bool:
        return self.partition_of(customer_id) in self.owned


@dataclass(frozen=True, slots=True)
class Fetched:
    lines: list[Line]
    record_position: RecordPosition
    next_offsets: dict[tuple[str, int], int]


def consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


FETCH_WAIT_MS = 10


class KafkaSource:
    """The consumer and its partition ownership; `fetch` returns one batch of lines."""

    def __init__(
        self,
        conn: Connection,
        settings: KafkaSettings,
        group: str,
        routing: PartitionRouting,
        on_lost: Callable[[list[str]], None],
    ) -> None:
        self.conn = conn
        self.settings = settings
        self.group = group
        self.routing = routing
        self.on_lost = on_lost  # streams whose cached state must be dropped
        self.owner = consumer_name()
        self.owner_epochs: dict[tuple[str, int], int] = {}
        self.addresses: dict[tuple[str, int], str] = {}
        self.logger = log.get("consume").bind(group=group, owner=self.owner)
        config: dict[str, ClientValue] = {
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "range",  # co-partitions inputs and internal
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": SESSION_TIMEOUT_MS // 3,
            "max.poll.interval.ms": 300_000,
            # A quiet partition's fetch returns after this, not librdkafka's 500 ms: a till
            # waiting on `loyalty serve` (Kafka mode) waits for it. A busy one never waits.
            "fetch.wait.max.ms": FETCH_WAIT_MS,
        }
        self.consumer = Consumer(settings.client(**config))
        self.consumer.subscribe(
            [settings.inputs, settings.internal], on_assign=self._assigned, on_revoke=self._revoked
        )

    # ------------------------------------------------------------ ownership

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Whatever was known of these partitions' customers may have changed under another owner.
        self.on_lost(sorted({stream_of_partition(p.partition) for p in partitions}))
        claims = offsets.claim(
            self.conn, self.group, self.owner, [(p.topic, p.partition) for p in partitions]
        )
        for p in partitions:
            claim = claims[(p.topic, p.partition)]
            self.owner_epochs[(p.topic, p.partition)] = claim.owner_epoch
            p.offset = claim.next_offset if claim.next_offset else OFFSET_BEGINNING
            if p.topic == self.settings.inputs:
                self.routing.owned.add(p.partition)
        consumer.assign(partitions)
        self.logger.info("assigned", partitions=_names(partitions))

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            self.owner_epochs.pop((p.topic, p.partition), None)
            if p.topic == self.settings.inputs:
                self.routing.owned.discard(p.partition)
        self.on_lost(sorted({stream_of_partition(p.partition) for p in partitions}))
        consumer.unassign()
        self.logger.info("revoked", partitions=_names(partitions))

    def resync(self) -> None:
        """After a fenced batch: forget everything and resume every partition from PostgreSQL."""
        self.on_lost([stream_of_partition(p) for p in range(self.routing.partitions)])
        assigned = self.consumer.assignment()
        if assigned:
            self._assigned(self.consumer, assigned)

    # --------------------------------------------------------------- batches

    def fetch(self, batch_size: int, batch_ms: int) -> Fetched:
        messages = self.consumer.consume(num_messages=batch_size, timeout=batch_ms / 1000)
        lines: list[Line] = []
        next_offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            if not self._usable(message):
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            assert topic is not None and partition is not None and offset is not None
            lines.append(Line(
                self._address(topic, partition), offset, message.value() or b"",
                stream_of_partition(partition), command=topic == self.settings.internal,
            ))  # fmt: skip
            next_offsets[(topic, partition)] = offset + 1
        owner_epochs = dict(self.owner_epochs)
        record = partial(
            offsets.record, group=self.group, positions=next_offsets, owner_epochs=owner_epochs
        )
        return Fetched(lines, record, next_offsets)

    def _address(self, topic: str, partition: int) -> str:
        """The partition's SourceAddress, formatted once (this runs for every message)."""
        address = self.addresses.get((topic, partition))
        if address is None:
            address = self.addresses[(topic, partition)] = SourceAddress.kafka(
                topic, partition
            ).format()
        return address

    def _usable(self, message: Message) -> bool:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                self.logger.warning("consume_error", error=str(error))
            return False
        # A message of a partition we no longer own (fetched before a revoke) is left alone.
        return (message.topic(), message.partition()) in self.owner_epochs

    def commit_courtesy(self, next_offsets: dict[tuple[str, int], int]) -> None:
        """Tell Kafka too, for lag tools; PostgreSQL's offsets are the ones that count."""
        if not next_offsets:
            return
        tps = [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]
        try:
            self.consumer.commit(offsets=tps, asynchronous=True)
        except Exception as e:  # a courtesy: never worth stopping for
            self.logger.warning("kafka_commit_failed", error=str(e))

    def close(self) -> None:
        self.consumer.close()


def _names(partitions: list[TopicPartition]) -> list[str]:
    return [f"{p.topic}[{p.partition}]" for p in partitions]
