"""The outbox relay: ledger entries, dead letters and internal commands to Kafka, after commit.

Each stream is followed by position (ledger seq, dead letter id, outbox id),
which commit in order (see store.batch's append lock). A checkpoint moves only
after the broker acknowledged every message up to it, so a crash between
commit and publish republishes, never loses; each message carries a stable
`id` header for downstream dedupe. Ledger entries are keyed by customer, so
they stay in order per customer; each pass over the ledger ends with an anchor (header
`loyalty-anchor`, key `anchor:<generation>`): the chain's head up to the last entry sent,
MACed with the ledger key, a copy of the anchor file's kind that the database's owner
cannot reach. A dead letter's message is its input's bytes as they arrived (cut at
RAW_BYTES_MAX), with what is known of it in headers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from psycopg import sql

from loyalty_ledger.kafka.settings import KafkaSettings, KafkaUnavailable
from loyalty_ledger.ledger import key as ledger_key
from loyalty_ledger.ledger.entries import COLUMNS
from loyalty_ledger.store import chain
from loyalty_ledger.store.db import Connection

# Of a dead letter's raw bytes in its message; the table keeps them whole. A 1 MiB line would
# pass the broker's default message limit and block the stream for good.
RAW_BYTES_MAX = 65_536
RELAY_ROWS_MAX = 20_000  # per stream and call: bounds memory and the checkpoint's lock time
FLUSH_TIMEOUT_S = 30.0
ANCHOR_HEADER = "loyalty-anchor"  # marks the ledger topic's anchors among its entries

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Stream:
    name: str  # relay_checkpoints.name
    query: sql.Composed | sql.SQL  # rows after a position, in position order
    topic: Callable[[KafkaSettings], str]
    message: Callable[[Row], Outgoing]


Headers = list[tuple[str, str | bytes | None]]
Outgoing = tuple[int, str | None, bytes, Headers]  # position, key, value, headers (`id` first)


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _utf8(text: str) -> bytes:
    # A lone surrogate (an id's JSON escape, quoted in a reason) must not stop the stream.
    return text.encode("utf-8", errors="backslashreplace")


def _id(value: str) -> Headers:
    return [("id", _utf8(value))]


def _ledger_message(row: Row) -> Outgoing:
    seq, *values = row
    body = {"seq": seq, **{c: _json(v) for c, v in zip(COLUMNS, values, strict=True)}}
    customer_id, version = body["customer_id"], body["version"]
    return seq, customer_id, json.dumps(body).encode(), _id(f"{customer_id}:{version}")


def _dead_letter_message(row: Row) -> Outgoing:
    """The input's own bytes, any bytes: a JSON body could not carry them as they are."""
    dead_id, source, position, reason, raw, size = row
    headers = [*_id(f"deadletter:{dead_id}"), ("source", _utf8(source)),
               ("position", str(position).encode()), ("reason", _utf8(reason)),
               ("raw-bytes", str(size).encode())]  # fmt: skip
    return dead_id, source, bytes(raw), headers


def _outbox_message(row: Row) -> Outgoing:
    outbox_id, key, payload = row
    return outbox_id, key, payload.encode(), _id(f"outbox:{outbox_id}")


STREAMS = (
    Stream(
        "internal",  # first: other consumers wait for these
        sql.SQL("SELECT id, key, payload FROM outbox WHERE id > %s ORDER BY id LIMIT %s"),
        lambda s: s.internal,
        _outbox_message,
    ),
    Stream(
        "ledger",
        sql.SQL("SELECT seq, {} FROM ledger WHERE seq > %s ORDER BY seq LIMIT %s").format(
            sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
        ),
        lambda s: s.ledger,
        _ledger_message,
    ),
    Stream(
        "deadletter",
        sql.SQL(
            "SELECT id, source, position, reason, substring(raw FROM 1 FOR %s), length(raw) "
            "FROM dead_letters "
            "WHERE id > %s ORDER BY id LIMIT %s"
        ),
        lambda s: s.deadletter,
        _dead_letter_message,
    ),
)


def _anchor(
    conn: Connection,
    producer: Producer,
    topic: str,
    last: int,
    delivered: Callable[[KafkaError | None, Message], None],
) -> None:
    key = ledger_key.current()
    head = chain.head_at(conn, last, key)
    producer.produce(
        topic, value=head.line(key).encode(), key=f"anchor:{head.generation}",
        headers=[("id", f"anchor:{head.generation}:{last}".encode()), (ANCHOR_HEADER, b"1")],
        on_delivery=delivered,
    )  # fmt: skip


def relay(conn: Connection, producer: Producer, settings: KafkaSettings) -> int:
    """Publish what committed since the checkpoints; returns messages sent."""
    return sum(_relay_stream(conn, producer, settings, stream) for stream in STREAMS)


def _relay_stream(
    conn: Connection, producer: Producer, settings: KafkaSettings, stream: Stream
) -> int:
    failures: list[str] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    with conn.transaction():
        # SKIP LOCKED: one relay per stream at a time; the others go on with their batches.
        found = conn.execute(
            "SELECT position FROM relay_checkpoints WHERE name = %s FOR UPDATE SKIP LOCKED",
            (stream.name,),
        ).fetchone()
        if found is None:
            return 0
        params: tuple[int, ...] = (found[0], RELAY_ROWS_MAX)
        if stream.name == "deadletter":
            params = (RAW_BYTES_MAX, *params)
        rows = conn.execute(stream.query, params).fetchall()
        if not rows:
            return 0
        topic = stream.topic(settings)
        last = found[0]
        for row in rows:
            last, key, value, headers = stream.message(row)
            producer.produce(topic, value=value, key=key, headers=headers, on_delivery=delivered)
            producer.poll(0)
        if stream.name == "ledger":
            _anchor(conn, producer, topic, last, delivered)
        if producer.flush(FLUSH_TIMEOUT_S) or failures:
            why = failures[0] if failures else "timed out"
            raise KafkaUnavailable(f"cannot publish to {topic} at {settings.bootstrap}: {why}")
        conn.execute(
            "UPDATE relay_checkpoints SET position = %s WHERE name = %s", (last, stream.name)
        )
    return len(rows)


def continue_in(conn: Connection, new_schema: str, *, after: str) -> None:
    """Point generation `new_schema`'s relay past what it should not publish again: run in
    the promotion's transaction, `after` being the generation it replaces."""
    old_schema = after
    # The relay goes on from here: the new ledger's history is not published again
    # (its entries before now describe the same inputs), dead letters go on where they were.
    conn.execute(
        sql.SQL(
            "UPDATE {new} SET position = CASE name "
            "WHEN 'ledger' THEN (SELECT coalesce(max(seq), 0) FROM {ledger}) "
            "WHEN 'internal' THEN (SELECT coalesce(max(id), 0) FROM {outbox}) "
            "ELSE (SELECT position FROM {old} o WHERE o.name = 'deadletter') END"
        ).format(
            new=sql.Identifier(new_schema, "relay_checkpoints"),
            ledger=sql.Identifier(new_schema, "ledger"),
            outbox=sql.Identifier(new_schema, "outbox"),
            old=sql.Identifier(old_schema, "relay_checkpoints"),
        )
    )
