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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from psycopg import sql

from loyalty_ledger.engine import History, Rules
from loyalty_ledger.events import EVENT_TYPES
from loyalty_ledger.generations import amendments, programs
from loyalty_ledger.generations import catalog as generations
from loyalty_ledger.generations.catalog import Generation, GenerationError
from loyalty_ledger.pipeline import RERUN, OneStream, Pipeline, Routing
from loyalty_ledger.program import Program, parse_program, program_hash
from loyalty_ledger.progress import Progress
from loyalty_ledger.projectors import runner
from loyalty_ledger.sources.address import SourceAddress, SourceKind
from loyalty_ledger.sources.kafka import PartitionRouting, stream_of_partition
from loyalty_ledger.sources.line import FILE_STREAM, Line
from loyalty_ledger.store.db import Connection, sibling, use_schema

BATCH_SIZE = 20_000  # as a file ingest: fewer, larger transactions


@dataclass(frozen=True, slots=True)
class Replayed:
    inputs: int
    arrival: int  # the parent's inbox, replayed up to here
    seconds: float


def rerun(
    conn: Connection,
    program_source: str | None,
    program_origin: str,
    name: str,
    until_at: datetime | None,
    progress: Progress | None = None,
    amend: Sequence[tuple[datetime, str, str]] = (),
) -> tuple[Generation, Replayed]:
    """Create (or resume) candidate `name` under a program history, and replay the live
    inbox into it from the first input.

    The history is the live generation's versions; `program_source` replaces its original
    and each of `amend` (effective_at, source, origin) adds or replaces the amendment from
    its instant on. A re-run may reach into the past: that is what it is for.
    """
    live = generations.live(conn)
    program_source, program, later = program_history(
        conn, live, program_source, program_origin, amend
    )
    digest = program_hash(program_source)
    found = generations.find(conn, generations.check_name(name))
    if found is None:
        with conn.transaction():
            programs.store(conn, digest, program, program_source)
            found = generations.create(conn, name, digest, live, until_at)
            amendments.record(conn, name, later, f"rerun {name}")
    else:
        _check_resumable(found, digest, until_at, live)
        _check_same_amendments(conn, found, later)
    _publish_tiers(conn, found, program)  # again on resume: a kill may have come before it
    replayed = replay(conn, found, compiled(program, later), live, progress)
    return generations.get(conn, name), replayed


def program_history(
    conn: Connection,
    live: Generation,
    program_source: str | None,
    program_origin: str,
    amend: Sequence[tuple[datetime, str, str]],
) -> tuple[str, Program, list[tuple[datetime, str]]]:
    """The original's source and program, and the amendments (effective_at, source) in
    order: the live generation's versions, `program_source` replacing its original and each
    of `amend` added or replacing the one at its instant."""
    versions = dict(amendments.sources(conn, live.name))
    if program_source is None:
        if None not in versions:  # nothing ingested yet: no program to take
            raise GenerationError(
                f"generation {live.name} has no program yet: give one (--program PATH)"
            )
        program_source, program_origin = versions[None], f"program of generation {live.name}"
    for effective_at, source, origin in amend:
        parse_program(source, origin)  # one line naming the file, before anything is made
        versions[effective_at] = source
    program = parse_program(program_source, program_origin)
    later = sorted(
        ((at, source) for at, source in versions.items() if at is not None), key=lambda v: v[0]
    )
    return program_source, program, later


def compiled(program: Program, later: list[tuple[datetime, str]]) -> History:
    """The history the engine decides under: the original, then each amendment."""
    return amendments.compile_history(
        program, [(at, parse_program(source, f"amendment from {at}")) for at, source in later]
    )


def _check_same_amendments(
    conn: Connection, found: Generation, later: list[tuple[datetime, str]]
) -> None:
    stored = [(at, program_hash(source)) for at, source in amendments.sources(conn, found.name)
              if at is not None]  # fmt: skip
    if stored != [(at, program_hash(source)) for at, source in later]:
        raise GenerationError(
            f"generation {found.name} exists with other amendments; choose a new name "
            "(or pass the same ones to resume it)"
        )


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
    rules: Rules | History,
    parent: Generation,
    progress: Progress | None = None,
) -> Replayed:
    """Feed `parent`'s inbox after `target.replayed_arrival` into `target`, in arrival order."""
    started = time.perf_counter()
    writer = sibling(conn)
    use_schema(writer, target.schema_name)
    routing, streams = replay_routing(conn, parent)
    pipeline = Pipeline(writer, rules, routing, after_commit=runner.catch_up, target=RERUN)
    after, inputs = target.replayed_arrival, 0
    upto = last_arrival(conn, parent)
    try:
        while True:
            rows = next_inputs(conn, parent, after, target.until_at)
            if not rows:
                break
            after = rows[-1][0]
            lines = [
                Line(source, position, raw.encode(), streams(source))
                for _arrival, source, position, raw, _customer in rows
            ]
            pipeline.submit(lines, partial(_record_replayed, name=target.name, arrival=after))
            inputs += len(lines)
            if progress:
                progress(after, max(upto, after))
    finally:
        pipeline.close()
        writer.close()
    return Replayed(inputs, after, time.perf_counter() - started)


# The inputs a re-run replays (with `replayed_params`): the event types (internal commands
# are left out: the re-run owns every customer, so cross-partition credits happen in the
# batch of their cause), up to an arrival (none: all) and an instant (none: all).
REPLAYED = sql.SQL(
    "event_type = ANY(%(types)s) AND (%(upto)s::bigint IS NULL OR arrival <= %(upto)s) "
    "AND (%(until)s::timestamptz IS NULL OR occurred_at <= %(until)s)"
)


def replayed_params(until_at: datetime | None, upto: int | None) -> dict[str, object]:
    return {"types": list(EVENT_TYPES), "until": until_at, "upto": upto}


def next_inputs(
    conn: Connection, parent: Generation, after: int, until_at: datetime | None,
    upto: int | None = None,
) -> list[tuple[int, str, int, str, str | None]]:
    """The next inputs to replay (REPLAYED) after arrival `after`, in arrival order:
    (arrival, source, position, raw, customer_id)."""
    query = sql.SQL(
        "SELECT arrival, source, position, raw, customer_id FROM {} "
        "WHERE arrival > %(after)s AND {} ORDER BY arrival LIMIT %(n)s"
    ).format(sql.Identifier(parent.schema_name, "inbox"), REPLAYED)
    params = {**replayed_params(until_at, upto), "after": after, "n": BATCH_SIZE}
    return conn.execute(query, params).fetchall()


def last_arrival(conn: Connection, parent: Generation) -> int:
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


def replay_routing(conn: Connection, parent: Generation) -> tuple[Routing, Callable[[str], str]]:
    """The streams the inputs arrived on, and a routing that owns every customer.

    A Kafka-fed ledger keeps its per-partition tick streams (a tick reached the
    customers of one partition); a file-fed one has the one file stream.
    """
    row = conn.execute(
        sql.SQL(
            "SELECT max(o.partition) + 1 FROM consumer_offsets o WHERE o.topic = "
            "(SELECT split_part(source, ':', 2) FROM {} WHERE source LIKE %s LIMIT 1)"
        ).format(sql.Identifier(parent.schema_name, "inbox")),
        (f"{SourceKind.kafka}:%",),  # split_part: a topic holds no ':' (Kafka forbids it)
    ).fetchone()
    partitions = int(row[0]) if row and row[0] else 0
    if not partitions:
        return OneStream(), lambda _source: FILE_STREAM
    routing = PartitionRouting(partitions, owned=set(range(partitions)))
    return routing, _kafka_stream


def _kafka_stream(source: str) -> str:
    if SourceAddress.kind_of(source) is not SourceKind.kafka:
        return FILE_STREAM  # a file ingested into a Kafka-fed ledger: its own stream
    partition = SourceAddress.parse(source).partition
    assert partition is not None
    return stream_of_partition(partition)


# ------------------------------------------------------------------ promote
