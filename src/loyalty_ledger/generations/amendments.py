"""Amendments (PROGRAM.md "Amendments"): a generation's program changed from an instant on.

A generation runs under a program *history*: its original program, then each amendment
in force from its `effective_at`. An amendment may only reach forward: its instant must
be after every instant already applied (the latest `occurred_at` in the inbox), since
changing the past is a re-run. Recording one takes the generation's row lock, which every
batch holds (shared) while it commits (store.batch), so no batch decided under the old
history commits after it: such a batch is refused with `ProgramAmended` and decided
again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg import sql

from loyalty_ledger.engine.rules import History, compile_rules
from loyalty_ledger.errors import UserError
from loyalty_ledger.generations.programs import store
from loyalty_ledger.program import Program, parse_program, program_hash
from loyalty_ledger.store.db import Connection


class AmendmentRefused(UserError):
    """An amendment that cannot be recorded; the message names why and what to do."""


@dataclass(frozen=True, slots=True)
class Version:
    """One version of a generation's program: the original (effective_at None) or an
    amendment."""

    effective_at: datetime | None
    program_hash: str
    name: str
    recorded_at: datetime
    recorded_by: str | None  # None: the original, adopted by the first ingest

    @property
    def label(self) -> str:
        return "original" if self.effective_at is None else self.effective_at.isoformat()


# A generation's versions: the original (effective_at NULL), then its amendments. The
# generation is the one named, or without a name the connection's (its search_path).
_VERSIONS = """
SELECT NULL::timestamptz AS effective_at, g.program_hash, p.name, g.created_at, NULL::text,
       p.source
FROM public.generations g JOIN public.programs p ON p.hash = g.program_hash
WHERE g.name = coalesce(%(name)s, (SELECT name FROM public.generations
                                   WHERE schema_name = current_schema()))
UNION ALL
SELECT a.effective_at, a.program_hash, p.name, a.recorded_at, a.recorded_by, p.source
FROM public.program_amendments a JOIN public.programs p ON p.hash = a.program_hash
WHERE a.generation = coalesce(%(name)s, (SELECT name FROM public.generations
                                         WHERE schema_name = current_schema()))
ORDER BY effective_at NULLS FIRST
"""


def versions(conn: Connection, generation: str | None = None) -> list[Version]:
    """The program versions of `generation` (default: the connection's), the original first."""
    rows = conn.execute(_VERSIONS, {"name": generation})
    return [Version(*row[:5]) for row in rows]


def sources(conn: Connection, generation: str | None = None) -> list[tuple[datetime | None, str]]:
    """(effective_at, TOML source) of every version, the original first (None)."""
    rows = conn.execute(_VERSIONS, {"name": generation})
    return [(row[0], str(row[5])) for row in rows]


def amendments_count(conn: Connection, generation: str | None = None) -> int:
    """How many amendments the generation has: what a batch was decided under."""
    row = conn.execute(
        "SELECT amendments FROM public.generations WHERE name = coalesce(%s, "
        "(SELECT name FROM public.generations WHERE schema_name = current_schema()))",
        (generation,),
    ).fetchone()
    assert row is not None, "no such generation"
    return int(row[0])


def compile_history(original: Program, amendments: list[tuple[datetime, Program]]) -> History:
    return History(
        compile_rules(original),
        tuple((at, compile_rules(program)) for at, program in sorted(amendments, key=_first)),
    )


def _first(pair: tuple[datetime, Program]) -> datetime:
    return pair[0]


def load_history(
    conn: Connection, original: Program, generation: str | None = None
) -> tuple[int, History]:
    """The generation's history (with `original` as its first version) and its count."""
    count = amendments_count(conn, generation)
    return count, compile_history(original, stored_amendments(conn, generation))


def stored_amendments(
    conn: Connection, generation: str | None = None
) -> list[tuple[datetime, Program]]:
    return [
        (at, parse_program(source, f"amendment from {at.isoformat()}"))
        for at, source in sources(conn, generation)
        if at is not None
    ]


def record(
    conn: Connection, generation: str, amendments: list[tuple[datetime, str]], recorded_by: str
) -> None:
    """Store a new generation's amendments (a re-run's), in the caller's transaction."""
    for effective_at, source in amendments:
        program = parse_program(source, f"amendment from {effective_at.isoformat()}")
        digest = program_hash(source)
        store(conn, digest, program, source)
        conn.execute(
            "INSERT INTO public.program_amendments "
            "(generation, effective_at, program_hash, recorded_by) VALUES (%s, %s, %s, %s)",
            (generation, effective_at, digest, recorded_by),
        )
    conn.execute(
        "UPDATE public.generations SET amendments = %s WHERE name = %s",
        (len(amendments), generation),
    )


@dataclass(frozen=True, slots=True)
class Amended:
    version: Version
    new: bool  # False: the same program from the same instant was already recorded


def amend(
    conn: Connection, source: str, origin: str, effective_at: datetime, recorded_by: str
) -> Amended:
    """Record `source` as the program from `effective_at` on (idempotent)."""
    program = parse_program(source, origin)
    digest = program_hash(source)
    with conn.transaction():
        name, original_hash = _lock_generation(conn)
        if original_hash is None:
            raise AmendmentRefused(
                "no program to amend yet: the first ingest stores one (--program PATH)"
            )
        same = _recorded(conn, name, effective_at)
        if same is not None:
            if same != digest:
                raise AmendmentRefused(
                    f"an amendment from {effective_at.isoformat()} is already recorded "
                    f"({same[:12]}); choose another instant"
                )
            return Amended(_version(conn, effective_at), new=False)
        _check_forward(conn, effective_at)
        original = _check_unchanged(conn, original_hash, program, origin)
        _, before = load_history(conn, original)
        store(conn, digest, program, source)
        conn.execute(
            "INSERT INTO public.program_amendments "
            "(generation, effective_at, program_hash, recorded_by) VALUES (%s, %s, %s, %s)",
            (name, effective_at, digest, recorded_by),
        )
        conn.execute(
            "UPDATE public.generations SET amendments = amendments + 1 WHERE name = %s", (name,)
        )
        # Due at the new version's instant at the latest: a tick from then on decides
        # every customer again (a threshold, a window or a birthday bonus may differ).
        conn.execute(
            "UPDATE customer_state SET next_due_at = %s "
            "WHERE next_due_at IS NULL OR next_due_at > %s",
            (effective_at, effective_at),
        )
        _keep_spend_for(conn, before, program)
    return Amended(_version(conn, effective_at), new=True)


def _lock_generation(conn: Connection) -> tuple[str, str | None]:
    # FOR UPDATE waits for the batches committing now (each holds FOR SHARE on this row).
    row = conn.execute(
        "SELECT name, program_hash FROM public.generations "
        "WHERE schema_name = current_schema() FOR UPDATE"
    ).fetchone()
    assert row is not None, "the connection's search_path names no generation"
    return str(row[0]), row[1]


def _recorded(conn: Connection, generation: str, effective_at: datetime) -> str | None:
    row = conn.execute(
        "SELECT program_hash FROM public.program_amendments "
        "WHERE generation = %s AND effective_at = %s",
        (generation, effective_at),
    ).fetchone()
    return None if row is None else str(row[0])


def _version(conn: Connection, effective_at: datetime) -> Version:
    return next(v for v in versions(conn) if v.effective_at == effective_at)


def _check_forward(conn: Connection, effective_at: datetime) -> None:
    row = conn.execute("SELECT max(occurred_at) FROM inbox").fetchone()
    latest = row[0] if row else None
    if latest is not None and effective_at <= latest:
        raise AmendmentRefused(
            f"--effective-at {effective_at.isoformat()} is not after {latest.isoformat()}, "
            "the latest instant already applied: an amendment only changes the future "
            "(to change the past, re-run: loyalty rerun --as NAME --amend PATH@INSTANT)"
        )


def _check_unchanged(
    conn: Connection, original_hash: str, program: Program, origin: str
) -> Program:
    """The original program, when `program` keeps what an amendment may not change."""
    row = conn.execute("SELECT source FROM programs WHERE hash = %s", (original_hash,)).fetchone()
    assert row is not None
    original = parse_program(str(row[0]), "stored program")
    for key, before, after in (
        ("[program] currency", original.program.currency, program.program.currency),
        ("[program] timezone", original.program.timezone, program.program.timezone),
        ("[tiers]", original.tiers is not None, program.tiers is not None),
    ):
        if before != after:
            what = "whether it has " + key if key == "[tiers]" else key
            raise AmendmentRefused(
                f"{origin}: an amendment may not change {what}; "
                "that is a new program: re-run under it (loyalty rerun --as NAME --program PATH)"
            )
    return original


# Spend as snapshots hold it ([microseconds since the epoch, amount]), from the ledger's
# orders and refunds younger than the longest window of any version, in the engine's order.
_KEEP_SPEND = """
UPDATE customer_state AS c
SET state = c.state || jsonb_build_object(
    'spend', coalesce(s.spend, '[]'::jsonb),
    'spend_total', coalesce(c.state ->> 'spend_total', (
        SELECT coalesce(sum((e ->> 1)::numeric), 0)::text
        FROM jsonb_array_elements(c.state -> 'spend') AS e)))
FROM customer_state AS c2
LEFT JOIN LATERAL (
    SELECT jsonb_agg(jsonb_build_array(
               (extract(epoch FROM l.occurred_at) * 1000000)::bigint,
               (CASE WHEN l.kind = 'order_placed' THEN l.amount ELSE -l.amount END)::text)
           ORDER BY l.occurred_at, CASE WHEN l.kind = 'order_placed' THEN l.amount
                                        ELSE -l.amount END) AS spend
    FROM ledger AS l
    WHERE l.customer_id = c2.customer_id AND l.kind IN ('order_placed', 'refund_applied')
      AND l.occurred_at > to_timestamp((c2.state ->> 'clock')::numeric / 1000000)
                          - make_interval(days => %(days)s)
) AS s ON true
WHERE c2.customer_id = c.customer_id AND c.state ->> 'clock' IS NOT NULL
"""


def _keep_spend_for(conn: Connection, before: History, program: Program) -> None:
    """When the new version's tier window is longer than every window before it, give
    every customer's state back the spend it forgot that may count again (the engine
    keeps spend as long as the longest window; engine.decide._lapse_amended)."""
    window = compile_rules(program).window
    if not before.original.levels or window <= before.longest_window:
        return
    conn.execute(sql.SQL(_KEEP_SPEND), {"days": window.days})
