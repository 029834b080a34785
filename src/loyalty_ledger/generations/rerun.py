"""`loyalty rerun` and `loyalty promote`: the live inbox replayed into a new generation, then live.

A re-run feeds every input of the live generation's inbox, in arrival order,
through the same pipeline into a candidate generation, under another
program; the live generation keeps consuming meanwhile and is never written.
Its progress (the last arrival replayed) commits with each batch, so a killed
re-run resumes. Promotion replays the rest while holding the live
generation's append lock (no live batch can commit past it), then flips the
statuses and the `live` views in one transaction: a kill at any instant
leaves exactly one valid live generation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from psycopg import sql

from loyalty_ledger import log
from loyalty_ledger.engine import Rules, compile_rules
from loyalty_ledger.events import EVENT_TYPES
from loyalty_ledger.generations import catalog as generations
from loyalty_ledger.generations import programs
from loyalty_ledger.generations.catalog import Generation, GenerationError
from loyalty_ledger.pipeline import RERUN, OneStream, Pipeline, Routing
from loyalty_ledger.program import Program, parse_program, program_hash
from loyalty_ledger.progress import Progress
from loyalty_ledger.projectors import runner
from loyalty_ledger.sources.kafka import PartitionRouting, stream_of_partition
from loyalty_ledger.sources.line import FILE_STREAM, Line
from loyalty_ledger.store import locks
from loyalty_ledger.store.db import Connection, sibling, use_schema

BATCH_SIZE = 20_000  # as a file ingest: fewer, larger transactions


@dataclass(frozen=True, slots=True)
class Replayed:
    inputs: int
    arrival: int  # the parent's inbox, replayed up to here
    seconds: float


def rerun(
    conn: Connection,
    program_source: str,
    program_origin: str,
    name: str,
    until_at: datetime | None,
    progress: Progress | None = None,
) -> tuple[Generation, Replayed]:
    """Create (or resume) candidate `name` under the program, and replay the live inbox into it."""
    live = generations.live(conn)
    program = parse_program(program_source, program_origin)
    digest = program_hash(program_source)
    found = generations.find(conn, generations.check_name(name))
    if found is None:
        programs.store(conn, digest, program, program_source)
        found = generations.create(conn, name, digest, live, until_at)
    else:
        _check_resumable(found, digest, until_at, live)
    _publish_tiers(conn, found, program)  # again on resume: a kill may have come before it
    replayed = replay(conn, found, compile_rules(program), live, progress)
    return generations.get(conn, name), replayed


def _publish_tiers(conn: Connection, target: Generation, program: Program) -> None:
    with sibling(conn) as there:
        use_schema(there, target.schema_name)
        programs.publish_tiers(there, program)


def _check_resumable(
    found: Generation, digest: str, until_at: datetime | None, live: Generation
) -> None:
    if found.status != "candidate":
        raise GenerationError(f"generation {found.name} is {found.status}; choose a new name")
    if found.program_hash != digest or found.until_at != until_at:
        raise GenerationError(
            f"generation {found.name} exists under another program or --until; "
            "choose a new name (or pass the same ones to resume it)"
        )
    if found.parent != live.name:
        raise GenerationError(
            f"generation {found.name} replays {found.parent}, but {live.name} is live now; "
            "re-run under a new name"
        )


def replay(
    conn: Connection,
    target: Generation,
    rules: Rules,
    parent: Generation,
    progress: Progress | None = None,
) -> Replayed:
    """Feed `parent`'s inbox after `target.replayed_arrival` into `target`, in arrival order."""
    started = time.perf_counter()
    writer = sibling(conn)
    use_schema(writer, target.schema_name)
    routing, streams = _routing(conn, parent)
    pipeline = Pipeline(writer, rules, routing, after_commit=runner.catch_up, target=RERUN)
    after, inputs = target.replayed_arrival, 0
    upto = _last_arrival(conn, parent)
    try:
        while True:
            rows = _inputs(conn, parent, after, target.until_at)
            if not rows:
                break
            after = rows[-1][0]
            lines = [
                Line(source, position, raw.encode(), streams(source))
                for _arrival, source, position, raw in rows
            ]
            pipeline.submit(lines, partial(_record_replayed, name=target.name, arrival=after))
            inputs += len(lines)
            if progress:
                progress(after, max(upto, after))
    finally:
        pipeline.close()
        writer.close()
    return Replayed(inputs, after, time.perf_counter() - started)


def _inputs(
    conn: Connection, parent: Generation, after: int, until_at: datetime | None
) -> list[tuple[int, str, int, str]]:
    """The next inputs to replay. Internal commands are left out: the re-run owns every
    customer, so cross-partition credits happen in the batch of their cause."""
    query = sql.SQL(
        "SELECT arrival, source, position, raw FROM {} WHERE arrival > %(after)s "
        "AND event_type = ANY(%(types)s) "
        "AND (%(until)s::timestamptz IS NULL OR occurred_at <= %(until)s) "
        "ORDER BY arrival LIMIT %(n)s"
    ).format(sql.Identifier(parent.schema_name, "inbox"))
    params = {"after": after, "types": list(EVENT_TYPES), "until": until_at, "n": BATCH_SIZE}
    return conn.execute(query, params).fetchall()


def _last_arrival(conn: Connection, parent: Generation) -> int:
    row = conn.execute(
        sql.SQL("SELECT coalesce(max(arrival), 0) FROM {}").format(
            sql.Identifier(parent.schema_name, "inbox")
        )
    ).fetchone()
    return int(row[0]) if row else 0


def _record_replayed(conn: Connection, *, name: str, arrival: int) -> None:
    conn.execute(
        "UPDATE public.generations SET replayed_arrival = %s WHERE name = %s", (arrival, name)
    )


def _routing(conn: Connection, parent: Generation) -> tuple[Routing, Callable[[str], str]]:
    """The streams the inputs arrived on, and a routing that owns every customer.

    A Kafka-fed ledger keeps its per-partition tick streams (a tick reached the
    customers of one partition); a file-fed one has the one file stream.
    """
    row = conn.execute(
        sql.SQL(
            "SELECT max(o.partition) + 1 FROM consumer_offsets o WHERE o.topic = "
            "(SELECT split_part(source, ':', 2) FROM {} WHERE source LIKE 'kafka:%%' LIMIT 1)"
        ).format(sql.Identifier(parent.schema_name, "inbox"))
    ).fetchone()
    partitions = int(row[0]) if row and row[0] else 0
    if not partitions:
        return OneStream(), lambda _source: FILE_STREAM
    routing = PartitionRouting(partitions, owned=set(range(partitions)))
    return routing, _kafka_stream


def _kafka_stream(source: str) -> str:
    if not source.startswith("kafka:"):
        return FILE_STREAM  # a file ingested into a Kafka-fed ledger: its own stream
    return stream_of_partition(int(source.rsplit(":", 1)[1]))


# ------------------------------------------------------------------ promote


def promote(conn: Connection, name: str, progress: Progress | None = None) -> Generation:
    """Catch `name` up with the live inbox and make it live, atomically."""
    target = generations.get(conn, name)
    live = generations.live(conn)
    _check_promotable(target, live)
    assert target.program_hash is not None, "a candidate generation always has its program"
    rules = compile_rules(
        programs.stored(conn, target.program_hash, f"program of generation {target.name}")
    )
    replay(conn, target, rules, live, progress)  # most of the way, while live goes on
    logger = log.get("promote").bind(generation=name, replacing=live.name)
    with sibling(conn) as lock:
        logger.info("stopping live writers")
        locks.hold_appends(lock, live.schema_name)
        # No live batch can commit now: what this replays is the whole live inbox.
        rest = replay(conn, generations.get(conn, name), rules, live, progress)
        with conn.transaction():
            _flip(conn, target, live)
        logger.info("promoted", last_inputs=rest.inputs)
    return generations.get(conn, name)


def _check_promotable(target: Generation, live: Generation) -> None:
    if target.status == "live":
        raise GenerationError(f"generation {target.name} is live already")
    if target.status == "retired":
        raise GenerationError(
            f"generation {target.name} is retired and missed what came after; "
            "re-run under its program with a new name"
        )
    if target.until_at is not None:
        raise GenerationError(
            f"generation {target.name} is a what-if limited by --until and lacks later inputs; "
            "re-run without --until to promote"
        )
    if target.parent != live.name:
        raise GenerationError(
            f"generation {target.name} replays {target.parent}, but {live.name} is live now; "
            "re-run under a new name"
        )


def _flip(conn: Connection, target: Generation, live: Generation) -> None:
    conn.execute(
        "UPDATE public.generations SET status = 'retired' WHERE name = %s AND status = 'live'",
        (live.name,),
    )
    done = conn.execute(
        "UPDATE public.generations SET status = 'live', promoted_at = now() "
        "WHERE name = %s AND status = 'candidate'",
        (target.name,),
    )
    if done.rowcount != 1:
        raise GenerationError(f"generation {target.name} changed meanwhile; nothing was promoted")
    generations.expose(conn, target.schema_name)
    # The relay goes on from here: the new ledger's history is not published again
    # (its entries before now describe the same inputs), dead letters go on where they were.
    conn.execute(
        sql.SQL(
            "UPDATE {new} SET position = CASE name "
            "WHEN 'ledger' THEN (SELECT coalesce(max(seq), 0) FROM {ledger}) "
            "WHEN 'internal' THEN (SELECT coalesce(max(id), 0) FROM {outbox}) "
            "ELSE (SELECT position FROM {old} o WHERE o.name = 'deadletter') END"
        ).format(
            new=sql.Identifier(target.schema_name, "relay_checkpoints"),
            ledger=sql.Identifier(target.schema_name, "ledger"),
            outbox=sql.Identifier(target.schema_name, "outbox"),
            old=sql.Identifier(live.schema_name, "relay_checkpoints"),
        )
    )
