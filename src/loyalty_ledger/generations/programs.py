"""The program a generation runs under: stored once with its hash, never silently replaced."""

from __future__ import annotations

from loyalty_ledger.errors import UserError
from loyalty_ledger.program import Program, ProgramError, parse_program, program_hash
from loyalty_ledger.store.db import Connection


class ProgramChanged(UserError):
    """A different program was given for a ledger that already runs under one."""


def live_program(conn: Connection) -> tuple[str, str] | None:
    """(hash, TOML source) of the program the connection's generation runs under, if any."""
    found = conn.execute(
        "SELECT p.hash, p.source FROM public.generations g JOIN programs p "
        "ON p.hash = g.program_hash WHERE g.schema_name = current_schema()"
    ).fetchone()
    return (found[0], found[1]) if found else None


def adopt(conn: Connection, source: str | None, origin: str = "program") -> Program:
    """The program to run: `source` if given (stored on first use), else the stored one."""
    live = live_program(conn)
    if source is None:
        if live is None:
            raise ProgramError("no program stored yet: pass --program PATH on the first ingest")
        return parse_program(live[1], "stored program")
    program = parse_program(source, origin)
    digest = program_hash(source)
    if live is not None:
        if live[0] != digest and digest not in _amendment_hashes(conn):
            raise ProgramChanged(
                f"{origin} differs from the program this ledger runs under ({live[0][:12]}); "
                "omit --program to go on under it, or change it: from an instant on with "
                "`loyalty program amend PATH --effective-at INSTANT`, or from the first event "
                "with `loyalty rerun --as NAME --program PATH`"
            )
        return parse_program(live[1], "stored program")
    with conn.transaction():
        store(conn, digest, program, source)
        conn.execute(
            "UPDATE public.generations SET program_hash = %s "
            "WHERE schema_name = current_schema() AND program_hash IS NULL",
            (digest,),
        )
        publish_tiers(conn, program)
    return program


def _amendment_hashes(conn: Connection) -> set[str]:
    rows = conn.execute(
        "SELECT a.program_hash FROM public.program_amendments a "
        "JOIN public.generations g ON g.name = a.generation "
        "WHERE g.schema_name = current_schema()"
    )
    return {str(h) for (h,) in rows}


def store(conn: Connection, digest: str, program: Program, source: str) -> None:
    """Keep `source` under its hash (once: a program is never replaced)."""
    conn.execute(
        "INSERT INTO programs (hash, name, source) VALUES (%s, %s, %s) "
        "ON CONFLICT (hash) DO NOTHING",
        (digest, program.program.name, source),
    )


def stored(conn: Connection, digest: str, origin: str) -> Program:
    """The program kept under `digest`."""
    row = conn.execute("SELECT source FROM programs WHERE hash = %s", (digest,)).fetchone()
    assert row is not None, f"no program {digest[:12]} stored"
    return parse_program(str(row[0]), origin)


def publish_tiers(conn: Connection, program: Program) -> None:
    """The analyst views read the program's tier levels (thresholds live only in the TOML)."""
    from loyalty_ledger.analytics.tier_levels import publish_tiers  # analysts' layer

    publish_tiers(conn, program)
