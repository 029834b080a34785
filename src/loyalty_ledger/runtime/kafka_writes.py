"""`loyalty serve` in Kafka mode: a request's events published to the inputs topic (key =
customer), answered once the consumer group has committed them.

The consumers are the writers; the server only publishes and waits. Every
consumer batch notifies channel `loyalty_offsets` in its own transaction (so the
notification arrives at commit); a listener thread re-reads the group's stored
offsets then, and once every message of a request is below its partition's
next offset, the request's outcomes are read back by event id and source
position (inbox, duplicates, dead letters), the projections are caught up
(read-your-writes: a GET after the answer shows the write), and it is
answered. The HTTP layer waits `answer_wait_s` at most, then answers 202; the
events are applied exactly once either way, and `GET /v1/events/{id}` answers
later. The stored offsets are polled every second too, so a notification lost
to a reconnect delays an answer, never loses it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message
from psycopg import sql

from loyalty_ledger import log
from loyalty_ledger.admin import customer_card
from loyalty_ledger.errors import LoyaltyError, Unavailable
from loyalty_ledger.kafka.producer import producer as kafka_producer
from loyalty_ledger.kafka.settings import ClientErrors, KafkaSettings
from loyalty_ledger.kafka.topics import partition_count
from loyalty_ledger.pipeline import Outcome
from loyalty_ledger.projectors import runner
from loyalty_ledger.runtime.group_commit import Answer, Answers
from loyalty_ledger.runtime.produce import messages_for
from loyalty_ledger.sources.address import SourceAddress
from loyalty_ledger.store import offsets
from loyalty_ledger.store.db import Connection

ANSWER_WAIT_S = 5.0
POLL_S = 1.0  # the stored offsets are read this often without a notification
FORGET_AFTER_S = 600.0  # a request nobody can wait for any more is dropped (it still applies)


class PublishFailed(Unavailable):
    """The broker did not take a request's events; send the request again."""


@dataclass(slots=True, eq=False)  # a request is itself: compared by identity
class _Request:
    items: list[list[tuple[bytes, str | None]]]  # per item: its messages' (value, event id)
    future: Future[Answers] = field(default_factory=Future)
    places: dict[tuple[int, int], None] = field(default_factory=dict)  # (partition, offset)
    item_places: list[list[tuple[int, int]]] = field(default_factory=list)
    unsent: int = 0
    since: float = field(default_factory=time.monotonic)


class KafkaWrites:
    """Publishes requests and answers them after the consumer group commits them."""

    mode = "kafka"
    fatal: LoyaltyError | None = None  # the consumers write: nothing here stops for good

    def __init__(
        self, conn: Connection, settings: KafkaSettings, group: str,
        answer_wait_s: float = ANSWER_WAIT_S,
    ) -> None:  # fmt: skip
        self.conn = conn  # the listener's own
        self.settings = settings
        self.group = group
        self.answer_wait_s: float | None = answer_wait_s
        self.errors = ClientErrors()
        self.partitions = partition_count(settings, settings.inputs)
        self.producer = kafka_producer(settings, inputs=True, errors=self.errors)
        self._lock = threading.Lock()
        self._waiting: list[_Request] = []
        self._stop = threading.Event()
        self._logger = log.get("serve")
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(offsets.OFFSETS_CHANNEL)))
        self._threads = [
            threading.Thread(target=self._deliver, name="kafka-deliveries", daemon=True),
            threading.Thread(target=self._listen, name="offset-listener", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, raws: Sequence[bytes], key_name: str) -> Future[Answers]:
        """Publish the inputs, keyed by customer (a tick: one copy per partition)."""
        request = _Request([])
        request.future.set_running_or_notify_cancel()  # published: it applies, waited for or not
        outgoing = [messages_for(raw, self.partitions) for raw in raws]
        request.items = [[(m.value, _event_id(m.value)) for m in ms] for ms in outgoing]
        request.item_places = [[] for _ in raws]
        request.unsent = sum(len(ms) for ms in outgoing)
        # The key's name travels with each event (the consumer's inbox row names the partition).
        headers: list[tuple[str, str | bytes | None]] = [("loyalty-api-key", key_name)]
        try:
            for index, messages in enumerate(outgoing):
                for message in messages:
                    self.producer.produce(
                        self.settings.inputs, message.value, message.key,
                        -1 if message.partition is None else message.partition,
                        on_delivery=partial(self._delivered, request, index), headers=headers,
                    )  # fmt: skip
        except (BufferError, KafkaException) as e:
            request.future.set_exception(PublishFailed(f"the broker did not take the events: {e}"))
        return request.future

    def not_ready(self) -> str | None:
        if self._stop.is_set():
            return "shutting down"
        try:
            self.producer.list_topics(self.settings.inputs, timeout=2)
        except KafkaException:
            return f"broker {self.settings.bootstrap} unreachable"
        return None

    def close(self) -> None:
        """Deliver what is queued, then stop listening (waiting requests get their 202)."""
        self.producer.flush(10)
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self.conn.close()

    # ------------------------------------------------------------------ threads

    def _deliver(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.1)

    def _delivered(self, request: _Request, index: int, error: KafkaError | None,
                   message: Message) -> None:  # fmt: skip
        if request.future.done():
            return
        if error is not None:
            request.future.set_exception(PublishFailed(f"the broker refused an event: {error}"))
            return
        partition, offset = message.partition(), message.offset()
        assert partition is not None and offset is not None  # a delivered message has both
        place = (partition, offset)
        request.item_places[index].append(place)
        request.places[place] = None
        request.unsent -= 1
        if request.unsent == 0:
            with self._lock:
                self._waiting.append(request)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                for _ in self.conn.notifies(timeout=POLL_S, stop_after=1):
                    pass
                self._answer_committed()
            except Exception as e:  # the listener must outlive a database hiccup
                self._logger.warning("offset_listener_failed", error=type(e).__name__)
                time.sleep(POLL_S)

    def _answer_committed(self) -> None:
        with self._lock:
            waiting = list(self._waiting)
        if not waiting:
            return
        next_offsets = offsets.stored(self.conn, self.group, self.settings.inputs)
        done = [r for r in waiting if all(next_offsets.get(p, 0) > o for p, o in r.places)]
        now = time.monotonic()
        stale = [r for r in waiting if r not in done and now - r.since > FORGET_AFTER_S]
        with self._lock:
            self._waiting = [r for r in self._waiting if r not in done and r not in stale]
        if done:
            runner.catch_up(self.conn)  # read-your-writes: the answer follows the projections
            self._answer(done)

    def _answer(self, done: Sequence[_Request]) -> None:
        """What became of each item's first message, by its event id and its source position,
        read for every request at once; balance and tier are the customer's as projected now
        (the consumer's batch may hold later events of the customer: this mode cannot say
        "just after it")."""
        firsts = [(places[0], messages[0][1]) for request in done for places, messages
                  in zip(request.item_places, request.items, strict=True)]  # fmt: skip
        found = _outcomes(self.conn, self.settings.inputs, firsts)
        named = sorted({a.outcome.customer_id for a in found if a.outcome.customer_id})
        customers = customer_card.read_models(self.conn, named)
        at = 0
        for request in done:
            answers = []
            for answer in found[at : at + len(request.items)]:
                now = customers.get(answer.outcome.customer_id or "")
                if now is not None:
                    outcome = answer.outcome._replace(balance=now["balance"], tier=now["tier"])
                    answer = Answer(outcome, answer.first_status, answer.first_reason)
                answers.append(answer)
            at += len(request.items)
            mine = {a.outcome.customer_id for a in answers if a.outcome.customer_id}
            request.future.set_result(
                Answers(tuple(answers), {c: customers[c] for c in sorted(mine) if c in customers})
            )


def _outcomes(
    conn: Connection, topic: str, firsts: Sequence[tuple[tuple[int, int], str | None]]
) -> list[Answer]:
    """The outcome of the message at each (partition, offset), with that event id: the inbox
    row it made, or the first one of its event id (a duplicate), or its dead letter."""
    ids = [event_id for _, event_id in firsts if event_id is not None]
    inbox = {
        row[0]: row[1:] for row in conn.execute(
            "SELECT event_id, outcome, reason, customer_id, source, position FROM inbox "
            "WHERE event_id = ANY(%s)", (ids,),
        )
    }  # fmt: skip
    sources = [SourceAddress.kafka(topic, p).format() for (p, _), _ in firsts]
    letters = {
        (row[0], row[1]): row[2] for row in conn.execute(
            "SELECT source, position, reason FROM dead_letters "
            "WHERE (source, position) IN (SELECT * FROM unnest(%s::text[], %s::bigint[]))",
            (sources, [o for (_, o), _ in firsts]),
        )
    }  # fmt: skip
    found = []
    for source, ((_, offset), event_id) in zip(sources, firsts, strict=True):
        row = inbox.get(event_id) if event_id is not None else None
        if row is None:
            reason = letters.get((source, offset), "not applied: see the dead letters")
            found.append(Answer(Outcome("invalid", reason, event_id, None)))
            continue
        status, reason, customer_id, first_source, first_position = row
        if (first_source, first_position) == (source, offset):
            found.append(Answer(Outcome(status, reason, event_id, customer_id)))
        else:
            found.append(Answer(Outcome("duplicate", None, event_id, customer_id), status, reason))
    return found


def _event_id(value: bytes) -> str | None:
    try:
        parsed: Any = json.loads(value)
    except (ValueError, RecursionError):
        return None
    found = parsed.get("event_id") if isinstance(parsed, dict) else None
    return found if isinstance(found, str) else None
