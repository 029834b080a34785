"""Promotion: a re-run generation caught up with the live inbox and made live, atomically."""

from __future__ import annotations

from loyalty_ledger import log
from loyalty_ledger.generations import amendments, programs
from loyalty_ledger.generations import catalog as generations
from loyalty_ledger.generations.catalog import Generation, GenerationError
from loyalty_ledger.generations.rerun import replay
from loyalty_ledger.kafka import relay
from loyalty_ledger.progress import Progress
from loyalty_ledger.projectors import install
from loyalty_ledger.store import locks
from loyalty_ledger.store.db import Connection, sibling


def promote(conn: Connection, name: str, progress: Progress | None = None) -> Generation:
    """Catch `name` up with the live inbox and make it live, atomically."""
    target = generations.get(conn, name)
    live = generations.live(conn)
    _check_promotable(target, live)
    assert target.program_hash is not None, "a candidate generation always has its program"
    original = programs.stored(conn, target.program_hash, f"program of generation {target.name}")
    _, rules = amendments.load_history(conn, original, target.name)
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
    install.expose(conn, target.schema_name)
    relay.continue_in(conn, target.schema_name, after=live.schema_name)
