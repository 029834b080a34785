"""`loyalty rerun --preview`: a re-run decided in memory and tallied, nothing written.

A what-if asks how the books would stand under another program; the analyst
waits for the answer. A re-run answers it by writing a whole generation (inbox,
ledger, hash chain, snapshots, projections), which is what `promote` needs and
what costs most. A preview feeds the same inputs, in the same order, through the
same decision path (pipeline/preview.py) and folds the rows a re-run would
write into the figures `compare` shows (tally.py). It creates nothing, so there
is nothing to resume, verify or promote: run the re-run for that.

Nothing is written, so the stream's order binds only inputs that share a
customer: customers linked by a referral or a transfer (admit.LINKING_TYPES)
are kept together, and such groups are decided in separate processes, one per
core, each reading every input and deciding its own customers' and every tick.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from multiprocessing import get_context

from psycopg import sql

from loyalty_ledger import events as ev
from loyalty_ledger.generations import amendments
from loyalty_ledger.generations import catalog as generations
from loyalty_ledger.generations.catalog import Generation, GenerationError
from loyalty_ledger.generations.rerun import (
    REPLAYED,
    compiled,
    last_arrival,
    next_inputs,
    program_history,
    replay_routing,
    replayed_params,
)
from loyalty_ledger.generations.tally import Tally
from loyalty_ledger.pipeline import collector
from loyalty_ledger.pipeline.admit import LINKING_TYPES, named_in
from loyalty_ledger.pipeline.preview import Preview
from loyalty_ledger.program import parse_program, program_hash
from loyalty_ledger.progress import Progress
from loyalty_ledger.sources.line import Line
from loyalty_ledger.store.batch import Batch
from loyalty_ledger.store.db import Connection, Database

PROCESSES_MAX = 4  # each reads every input: past a few, the reading outweighs the deciding
# A process's start (about a second: imports) pays off only past this many inputs for it.
INPUTS_PER_PROCESS_MIN = 20_000
# A preview holds every state in memory (no snapshot to evict to): about 10 KB a customer
# (the ingest's state cache: ~1 GB for 100,000), so past this a re-run is the way.
CUSTOMERS_MAX = 200_000


class PreviewTooLarge(GenerationError):
    """More customers than a preview keeps in memory; the message names the way instead."""


@dataclass(frozen=True, slots=True)
class Previewed:
    """What a preview found: the tally, and the program versions it decided under."""

    tally: Tally
    parent: str  # the generation whose inbox was replayed
    program_hash: str
    versions: dict[str, str]  # "original" or the effective_at -> the program's hash
    until_at: datetime | None
    arrival: int  # the parent's inbox, replayed up to here
    seconds: float
    processes: int


@dataclass(frozen=True, slots=True)
class _Shard:
    """One process's part: the customers `shard_of` puts in `index`, and every tick."""

    database: Database
    parent: str
    source: str  # the original program
    later: tuple[tuple[datetime, str], ...]  # the amendments
    until_at: datetime | None
    upto: int  # the last arrival to read: every shard reads the same inputs, whatever
    # arrives meanwhile (the live generation keeps consuming)
    shard_of: dict[str, int]
    index: int


def processes_default() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, PROCESSES_MAX))


def preview(
    conn: Connection,
    program_source: str | None,
    program_origin: str,
    until_at: datetime | None,
    progress: Progress | None = None,
    amend: Sequence[tuple[datetime, str, str]] = (),
    processes: int = 1,
) -> Previewed:
    """Decide the live inbox (up to `until_at`) under a program history, as `rerun` would,
    and tally it, in up to `processes` processes; `program_source` and `amend` as for
    `rerun`."""
    started = time.perf_counter()
    live = generations.live(conn)
    _check_size(conn, live)
    source, _program, later = program_history(conn, live, program_source, program_origin, amend)
    upto = last_arrival(conn, live)
    shard_of = _shards(conn, live, until_at, upto, processes) if processes > 1 else {}
    count = max(shard_of.values(), default=0) + 1
    shards = [_Shard(Database.of(conn), live.name, source, tuple(later), until_at, upto,
                     shard_of, i) for i in range(count)]  # fmt: skip
    if count == 1:
        tally = _decide(conn, shards[0], progress)
    else:
        with ProcessPoolExecutor(count - 1, mp_context=get_context("spawn")) as pool:
            others = [pool.submit(_decide_apart, shard) for shard in shards[1:]]
            tally = _decide(conn, shards[0], progress)  # this process takes the first
            for other in others:
                tally.merge(other.result())
    return Previewed(
        tally, live.name, program_hash(source), _versions(conn, live.name, source, later),
        until_at, tally.arrival, time.perf_counter() - started, count,
    )  # fmt: skip


def _check_size(conn: Connection, live: Generation) -> None:
    states = sql.Identifier(live.schema_name, "customer_state")
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(states)).fetchone()
    customers = int(row[0]) if row else 0
    if customers > CUSTOMERS_MAX:
        raise PreviewTooLarge(
            f"generation {live.name} has {customers:,} customers; a preview keeps them all in "
            f"memory and takes at most {CUSTOMERS_MAX:,}: re-run into a generation instead "
            "(loyalty rerun --as NAME, with the same options)"
        )


def _decide_apart(shard: _Shard) -> Tally:
    """A shard in a process of its own, on a connection of its own."""
    with shard.database.connect() as conn:
        return _decide(conn, shard, None)


def _decide(conn: Connection, shard: _Shard, progress: Progress | None) -> Tally:
    """Every input of the shard's customers, and every tick, in arrival order."""
    live = generations.get(conn, shard.parent)
    program = parse_program(shard.source, f"program of the preview of {live.name}")
    routing, streams = replay_routing(conn, live)
    tally = Tally()
    sink = tally.add if len(shard.shard_of) == 0 else _checked(tally, shard)
    pipeline = Preview(compiled(program, list(shard.later)), routing, sink)
    after, upto, mine, index = 0, shard.upto, shard.shard_of.get, shard.index
    with collector.off():
        while rows := next_inputs(conn, live, after, shard.until_at, upto):
            after = tally.arrival = rows[-1][0]
            tally.inputs += len(rows)  # every shard reads every input
            pipeline.submit([
                Line(source, position, raw.encode(), streams(source))
                for _arrival, source, position, raw, customer in rows
                if customer is None or mine(customer, 0) == index
            ])  # fmt: skip
            if progress:
                progress(after, upto)
    return tally


def _checked(tally: Tally, shard: _Shard) -> Callable[[Batch], None]:
    """`tally.add`, after checking that the batch decided only the shard's own customers:
    what makes deciding them apart the same as together (admit.LINKING_TYPES)."""

    def add(batch: Batch) -> None:
        mine, index = shard.shard_of.get, shard.index
        strays = {e.customer_id for e in batch.entries if mine(e.customer_id, 0) != index}
        assert not strays, f"shard {index} decided customers of another: {sorted(strays)[:5]}"
        tally.add(batch, ticks=index == 0)

    return add


def _shards(
    conn: Connection, live: Generation, until_at: datetime | None, upto: int, processes: int
) -> dict[str, int]:
    """customer -> shard: linked customers together, the shards' inputs about even."""
    inbox = sql.Identifier(live.schema_name, "inbox")
    params = replayed_params(until_at, upto)  # the inputs the shards will read
    counts: dict[str, int] = dict(conn.execute(
        sql.SQL("SELECT customer_id, count(*) FROM {} WHERE customer_id IS NOT NULL AND {} "
                "GROUP BY 1").format(inbox, REPLAYED), params,
    ).fetchall())  # fmt: skip
    links = (named_in(ev.decode(raw.encode())) for (raw,) in conn.execute(
        sql.SQL("SELECT raw FROM {} WHERE event_type = ANY(%(linking)s) AND {}").format(
            inbox, REPLAYED), {**params, "linking": list(LINKING_TYPES)},
    ))  # fmt: skip
    useful = max(1, sum(counts.values()) // INPUTS_PER_PROCESS_MIN)
    return shard_customers(counts, links, min(processes, useful))


def shard_customers(
    counts: dict[str, int], links: Iterable[Sequence[str]], processes: int
) -> dict[str, int]:
    """customer -> shard in [0, processes): the customers named together in one of `links`
    (transitively) in one shard; `counts` (inputs per customer) about even across shards."""
    root: dict[str, str] = {}

    def find(customer: str) -> str:
        """The group's representative, halving the path on the way."""
        while (parent := root.setdefault(customer, customer)) != customer:
            grandparent = root[parent]
            root[customer] = grandparent
            customer = grandparent
        return customer

    for named in links:  # empty for an input the decoder now refuses: it links nothing
        for other in named:
            root[find(other)] = find(named[0])
    return _balanced(counts, counts.keys() | root.keys(), find, processes)


def _balanced(
    counts: dict[str, int], customers: set[str], find: Callable[[str], str], processes: int
) -> dict[str, int]:
    """Whole groups to the least loaded shard, the largest groups first."""
    groups: dict[str, list[str]] = {}
    for customer in customers:
        groups.setdefault(find(customer), []).append(customer)
    load = [0] * processes
    shard_of: dict[str, int] = {}
    for members in sorted(groups.values(), key=lambda m: (-sum(counts.get(c, 0) for c in m),
                                                         min(m))):  # fmt: skip
        index = load.index(min(load))
        load[index] += sum(counts.get(c, 0) for c in members)
        shard_of.update(dict.fromkeys(members, index))
    return shard_of


def _versions(
    conn: Connection, live: str, source: str, later: list[tuple[datetime, str]]
) -> dict[str, str]:
    """The preview's versions, labelled as `compare` labels a generation's: by the instant
    as the server gives it back (in its session's time zone, whatever zone it was given in)."""
    labels = {v.effective_at: v.label for v in amendments.versions(conn, live)}
    found = {"original": program_hash(source)}
    for at, text in later:
        label = labels.get(at)
        if label is None:
            row = conn.execute("SELECT %s::timestamptz", (at,)).fetchone()
            label = (row[0] if row else at).isoformat()
        found[label] = program_hash(text)
    return found
