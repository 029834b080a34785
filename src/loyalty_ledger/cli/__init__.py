"""The `loyalty` command: ingest, export, rebuild, dead letters, schemas, and the embedded database.

A bad command line, program or database URL ends in one line on stderr that
names what to fix, and exit code 2; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import NoReturn

import psycopg

from loyalty_ledger import log
from loyalty_ledger.errors import Conflict, LoyaltyError, UserError
from loyalty_ledger.kafka.settings import KafkaSettings
from loyalty_ledger.progress import Progress
from loyalty_ledger.store import embedded
from loyalty_ledger.store.db import (
    Connection,
    connect,
    live_schema,
    psycopg_url,
    redact,
    use_schema,
)
from loyalty_ledger.text import printable

EMBEDDED_ROOT = Path(".loyalty")


class UsageError(UserError):
    """Something the user can fix on the command line."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line naming the fix (no usage block), exit 2."""

    def error(self, message: str) -> NoReturn:
        print(f"loyalty: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def _count(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]; anything else is a one-line error."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: use {low} to {high:,}")
        return value

    parse.__name__ = "number"  # argparse names the type in its message
    return parse


def _seconds(text: str) -> float:
    """An argparse type: a finite number of seconds, 0 to a year."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number of seconds") from None
    if not 0 <= value <= 366 * 86_400:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is out of range: use 0 to 31622400")
    return value


_BATCH = _count(1, 1_000_000)  # a batch is held in memory whole
_LIMIT = _count(1, 1_000_000_000)
_ID = _count(1, 2**63 - 1)  # bigint identities
_OFFSET = _count(0, 2**63 - 1)
_PARTITION = _count(0, 1_000_000)


# ------------------------------------------------------------------ database


@contextmanager
def database(migrate: bool = True) -> Iterator[Connection]:
    """LOYALTY_DATABASE_URL, or the embedded server in ./.loyalty/ for this command's lifetime."""
    url = os.environ.get("LOYALTY_DATABASE_URL")
    if url:
        with _open(url, migrate) as conn:
            yield conn
        return
    with embedded.running(EMBEDDED_ROOT) as server, _open(server.url, migrate) as conn:
        yield conn


@contextmanager
def _open(url: str, migrate: bool) -> Iterator[Connection]:
    conn = connect(url)  # first: an unreachable URL fails here, with its message
    try:
        if migrate:
            from loyalty_ledger.generations.migrate import migrate as run_migrations

            run_migrations(url)
        schema = live_schema(conn)
        if schema is not None:  # the connection came before the migrations made it
            use_schema(conn, schema)
        yield conn
    finally:
        conn.close()


# ------------------------------------------------------------------ commands


def cmd_ingest(args: argparse.Namespace) -> int:
    from loyalty_ledger.runtime.ingest import ingest_file

    program_source = _read_program(args.program) if args.program else None
    with database() as conn, _progress("ingesting", "lines") as progress:
        ingest_file(conn, args.path, program_source, args.program or "program", args.batch_size,
                    progress)  # fmt: skip
    return 0


def _read_program(path: str) -> str:
    from loyalty_ledger.program import read_program_text

    return read_program_text(Path(path))


def cmd_export(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin import exports
    from loyalty_ledger.projectors import runner

    with database() as conn:
        if args.generation:
            _use_generation(conn, args.generation)
        runner.catch_up(conn)
        out = sys.stdout
        if args.what == "customers":
            for customer in exports.customers(conn):
                out.write(json.dumps(customer, ensure_ascii=False) + "\n")
        else:
            out.write(json.dumps(exports.summary(conn), indent=1) + "\n")
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    from loyalty_ledger.projectors import runner

    names = tuple(args.projection or ())
    runner.tables(names)  # an unknown name fails before the database starts
    with database() as conn, _progress("rebuilding") as progress:
        seq = runner.rebuild(conn, names, lambda _name, done, total: progress(done, total))
    log.get("rebuild").info("rebuilt", projections=list(names) or "all", seq=seq)
    return 0


# ------------------------------------------------------------------ generations


def cmd_rerun(args: argparse.Namespace) -> int:
    from loyalty_ledger.generations.rerun import rerun

    source = _read_program(args.program)
    until = _instant(args.until, "--until") if args.until else None
    with database() as conn, _progress(f"re-running into {args.as_name}", "inputs") as progress:
        generation, replayed = rerun(conn, source, args.program, args.as_name, until, progress)
    log.get("rerun").info(
        "replayed", generation=generation.name, inputs=replayed.inputs,
        through_arrival=replayed.arrival, seconds=round(replayed.seconds, 3),
    )  # fmt: skip
    name = generation.name
    promote = "" if generation.until_at else f", make it live with `loyalty promote {name}`"
    print(f"generation {name}: {replayed.inputs} inputs replayed; "
          f"compare it with `loyalty compare live {name}`{promote}")  # fmt: skip
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from loyalty_ledger.generations.promote import promote

    with database() as conn, _progress(f"catching {args.name} up", "inputs") as progress:
        generation = promote(conn, args.name, progress)
    print(f"generation {generation.name} is live")
    return 0


def cmd_generations(args: argparse.Namespace) -> int:
    from loyalty_ledger.generations import catalog as generations

    with database() as conn:
        for g in generations.listing(conn):
            until = f" until {g.until_at.isoformat()}" if g.until_at else ""
            print(f"{printable(g.name)}\t{g.status}\t{(g.program_hash or '-')[:12]}\t"
                  f"from {printable(g.parent or '-')}{until}\t"
                  f"created {g.created_at.isoformat()}")  # fmt: skip
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin import compare
    from loyalty_ledger.projectors import runner

    with database() as conn:
        runner.catch_up(conn)  # the live side as of its last batch
        result = compare.compare(conn, args.a, args.b, args.limit)
    if args.json:
        print(json.dumps(compare.as_json(result), indent=1))
    else:
        compare.write_text(result, sys.stdout)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin.verify import verify
    from loyalty_ledger.projectors import runner

    with database() as conn:
        if args.generation:
            _use_generation(conn, args.generation)
        runner.catch_up(conn)
        with _progress("verifying the hash chain", "entries") as progress:
            report = verify(conn, progress, [Path(a) for a in args.anchor or ()])
    for problem in report.problems:
        print(f"broken: {printable(problem)}")
    if report.ok:
        print(f"ok: {report.entries} entries of {report.customers} customers chain, number and "
              f"conserve; {report.projections} projections equal a rebuild")  # fmt: skip
        return 0
    return 1


def cmd_ledger(args: argparse.Namespace) -> int:
    from loyalty_ledger.ledger import key as ledger_key
    from loyalty_ledger.store import chain

    key = ledger_key.current()
    with database() as conn:
        if args.generation:
            _use_generation(conn, args.generation)
        head = chain.current_head(conn, key)
    sys.stdout.write(head.line(key))
    return 0


def _use_generation(conn: Connection, name: str) -> None:
    from loyalty_ledger.generations import catalog as generations

    generations.use(conn, generations.get(conn, name))


def cmd_offsets(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin import offsets

    if (args.to_offset is None) == (args.to_time is None):
        raise UsageError("give one of --to-offset N and --to-time TIME")
    at = _instant(args.to_time, "--to-time") if args.to_time else None
    with database() as conn:
        resets = offsets.reset(conn, args.group, to_offset=args.to_offset, to_time=at,
                               topic=args.topic, partition=args.partition)  # fmt: skip
    for r in resets:
        print(f"{r.topic}[{r.partition}]\t{r.next_offset_was} -> {r.next_offset}")
    return 0


def _instant(text: str, flag: str) -> datetime:
    example = "write it like 2026-03-01T00:00:00+01:00 or 2026-03-01T00:00Z"
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not an RFC 3339 instant: {example}") from None
    if at.utcoffset() is None:
        raise UsageError(f"{flag} {text!r} has no UTC offset: {example}")
    return at


def cmd_dlq(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin import dead_letters as dlq

    action = args.dlq_command
    if action == "redrive" and not (args.ids or args.reason or args.source or args.all):
        raise UsageError("name the dead letters to redrive: IDs, --reason TEXT, --source or --all")
    with database() as conn:
        if action == "list":
            chosen = dlq.Filter(args.status, args.reason, args.source, limit=args.limit)
            dlq.print_list(conn, chosen, sys.stdout)
        elif action == "show" and args.raw:
            sys.stdout.buffer.write(dlq.get(conn, args.id).raw)
            sys.stdout.buffer.flush()
        elif action == "show":
            dlq.print_one(dlq.get(conn, args.id), sys.stdout)
        elif action == "discard":
            done = dlq.discard(conn, args.id, args.why)
            print(f"discarded dead letter {done.id} ({printable(done.source)}:{done.position})")
        else:
            chosen = dlq.Filter("open", args.reason, args.source, tuple(args.ids))
            with _progress("redriving", "letters") as progress:
                settings = KafkaSettings.from_env(args.bootstrap)
                result = dlq.redrive(conn, chosen, settings, progress)
            dlq.print_redrive(result, sys.stdout)
    return 0


def cmd_statement(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin import statement

    with database() as conn:
        done = statement.statement(conn, args.customer_id, args.generation)
    (statement.write_json if args.json else statement.write_text)(done, sys.stdout)
    return 0


def cmd_members(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin.erasure import erase

    with database() as conn:
        done = erase(conn, args.customer_id)
    again = (f"already erased at {done.erased_before.isoformat(timespec='seconds')}; "
             if done.erased_before else "")  # fmt: skip
    member = "deleted" if done.member else "absent"
    print(f"erased {printable(done.customer_id)}: {again}member row {member}"
          f", {done.inputs} inputs, {done.states} states and {done.dead_letters} dead letters "
          "scrubbed; the ledger is unchanged")  # fmt: skip
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from loyalty_ledger.event_schemas import check_schemas, write_schemas

    directory = Path(args.dir)
    if not args.write and not directory.is_dir():
        raise UsageError(f"no schemas folder {args.dir!r}: pass --dir DIR, or --write to make it")
    if args.write:
        for path in write_schemas(directory):
            print(path)
        return 0
    drifted = check_schemas(directory)
    if drifted:
        print(f"schemas drifted from the models: {', '.join(drifted)}; run loyalty schemas --write",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"schemas in {directory} match the models")
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    if args.action == "start":
        server = embedded.start_detached(EMBEDDED_ROOT)
        print(psycopg_url(server.url))
    elif args.action == "stop":
        print("stopped" if embedded.stop_detached(EMBEDDED_ROOT) else "not running")
    elif args.action == "status":
        found = embedded.status(EMBEDDED_ROOT)
        print(f"running: {psycopg_url(found.url)}" if found else "not running")
        return 0 if found else 3
    else:
        url = os.environ.get("LOYALTY_DATABASE_URL")
        found = embedded.status(EMBEDDED_ROOT)
        if url:  # a libpq URL: psql "$(loyalty db url)" works
            print(psycopg_url(redact(url)))
        elif found:
            print(psycopg_url(found.url))
        else:
            raise UsageError(
                "the embedded database is not running: start it with `loyalty db start`"
            )
    return 0


# ------------------------------------------------------------------ analysts


def cmd_grant_analyst(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin.analysts import grant_analyst

    with database() as conn:
        try:
            grant = grant_analyst(conn, args.name, args.password, args.with_pii)
        except psycopg.errors.InsufficientPrivilege as e:
            raise UsageError(
                f"not allowed to create roles here ({str(e).strip().splitlines()[0]}): "
                "run it as a role with CREATEROLE"
            ) from None
    print(f"{'created' if grant.created else 'updated'} analyst login {grant.role}: "
          f"reads the {grant.relations} relations of schema live"
          f"{' and members (PII)' if grant.with_pii else ', no PII'}")  # fmt: skip
    return 0


def cmd_analytics(args: argparse.Namespace) -> int:
    from loyalty_ledger.analytics.refresh import refresh
    from loyalty_ledger.generations.programs import adopt
    from loyalty_ledger.projectors import runner

    with database() as conn, _progress("refreshing") as progress:
        runner.catch_up(conn, progress=lambda _name, done, total: progress(done, total))
        done = refresh(conn, adopt(conn, None))
    fitted = done.fitted
    log.get("analytics").info(
        "refreshed", tiers=done.tiers, refit=done.refit,
        customers=fitted.customers if fitted else None,
        model={k: round(getattr(fitted.bgnbd, k), 6) for k in ("r", "alpha", "a", "b")}
        if fitted else None,
    )  # fmt: skip
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import time
    from decimal import Decimal

    from loyalty_ledger.analytics import report
    from loyalty_ledger.analytics.refresh import refresh
    from loyalty_ledger.generations.programs import adopt
    from loyalty_ledger.projectors import runner

    point_value = None
    if args.point_value is not None:
        if re.fullmatch(r"[0-9]{1,12}(\.[0-9]{1,6})?", args.point_value) is None:
            raise UsageError(
                f"--point-value {args.point_value[:40]!r} is not a money amount: e.g. 0.01"
            )
        point_value = Decimal(args.point_value)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise UsageError(f"cannot write {args.out!r}: folder {str(out.parent)!r} does not exist")
    started = time.monotonic()
    with database() as conn, _progress("report") as progress:
        runner.catch_up(conn)
        refresh(conn, adopt(conn, None))
        if point_value is not None:
            conn.execute("SELECT set_config('loyalty.point_value', %s, false)", (str(point_value),))
        written = report.write(conn, out, args.top, progress)
    log.get("report").info("written", path=str(out), charts=list(written.charts),
                           seconds=round(time.monotonic() - started, 2))  # fmt: skip
    return 0


# ------------------------------------------------------------------ kafka


def cmd_topics(args: argparse.Namespace) -> int:
    from loyalty_ledger.kafka import topics

    settings = KafkaSettings.from_env(args.bootstrap)
    if args.topics_command == "list":
        counts = topics.topic_partitions(settings)
        for name in sorted(n for n in counts if n.startswith(f"{settings.prefix}.")):
            print(f"{name}\t{counts[name]}")
        return 0
    created = topics.create_topics(settings, args.partitions, args.replication)
    for name in settings.topics:
        print(f"{name}\t{args.partitions}\t{'created' if name in created else 'exists'}")
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    from loyalty_ledger.runtime.produce import produce_file

    with _progress("producing") as progress:
        produce_file(KafkaSettings.from_env(args.bootstrap), args.path, progress)
    return 0


def cmd_tick(args: argparse.Namespace) -> int:
    from loyalty_ledger.runtime.produce import send_tick

    at = _instant(args.at, "--at")
    send_tick(KafkaSettings.from_env(args.bootstrap), at)
    return 0


def cmd_consume(args: argparse.Namespace) -> int:
    from loyalty_ledger.runtime.consume import ConsumeOptions, consume

    program_source = _read_program(args.program) if args.program else None
    options = ConsumeOptions(args.group, args.batch_size, args.batch_ms, args.stop_when_idle)
    with database() as conn:
        settings = KafkaSettings.from_env(args.bootstrap)
        consume(conn, settings, options, program_source, args.program or "program")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin.status import print_status

    with database() as conn:
        print_status(conn, KafkaSettings.from_env(args.bootstrap), args.group, sys.stdout)
    return 0


# ------------------------------------------------------------------ progress


@contextmanager
def _progress(label: str, unit: str = "") -> Iterator[Progress]:
    from loyalty_ledger.progress import reporting

    with reporting(label, unit, sys.stderr.isatty()) as update:
        yield update


# ------------------------------------------------------------------ parser


# argparse names no public type for the object add_subparsers returns.
_Commands = argparse._SubParsersAction


def parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="loyalty",
        description="An event-sourced customer-loyalty ledger on PostgreSQL. Without "
        "LOYALTY_DATABASE_URL every command uses an embedded PostgreSQL in ./.loyalty/.",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for add in (_ledger_commands, _operator_commands, _database_commands, _kafka_commands):
        add(sub)
    return top


def _ledger_commands(sub: _Commands[_Parser]) -> None:
    """The parsers of ingest, export, rebuild, generations, verify and the chain."""
    p = sub.add_parser("ingest", help="apply a JSON Lines file of input events (- for stdin)")
    p.add_argument("path", help="JSON Lines file, or - for standard input")
    p.add_argument("--program", help="program TOML (stored on first use; default: the stored one)")
    p.add_argument(
        "--batch-size", type=_BATCH, default=20_000, help="inputs per transaction (20000)"
    )
    p.set_defaults(run=cmd_ingest)

    p = sub.add_parser("export", help="print the read models as JSON")
    p.add_argument("what", choices=("customers", "summary"))
    p.add_argument("--generation", help="another generation than the live one (a re-run's)")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("rebuild", help="drop the projections and rebuild them from the ledger")
    p.add_argument("--projection", action="append", help="only this one (repeatable)")
    p.set_defaults(run=cmd_rebuild)

    p = sub.add_parser("rerun", help="replay every input into a new generation under a program")
    p.add_argument("--program", required=True, help="the program TOML to re-run under")
    p.add_argument("--as", dest="as_name", required=True, metavar="NAME",
                   help="the new generation's name (lowercase, digits, _)")  # fmt: skip
    p.add_argument("--until", help="only inputs that occurred up to this instant (a what-if)")
    p.set_defaults(run=cmd_rerun)

    p = sub.add_parser("promote", help="make a re-run generation live, atomically")
    p.add_argument("name")
    p.set_defaults(run=cmd_promote)

    p = sub.add_parser("generations", help="list the generations and which is live")
    p.set_defaults(run=cmd_generations)

    p = sub.add_parser("compare", help="two generations side by side ('live' names the live one)")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--json", action="store_true", help="one JSON object, for tools")
    p.add_argument("--limit", type=_LIMIT, default=20, help="customers listed that differ (20)")
    p.set_defaults(run=cmd_compare)

    p = sub.add_parser("verify", help="check hash chain, versions, conservation, projections")
    p.add_argument("--generation", help="another generation than the live one")
    p.add_argument("--anchor", action="append", metavar="FILE",
                   help="also check the anchors in FILE (lines of `loyalty ledger anchor`; "
                   "repeatable); the anchor file is always checked")  # fmt: skip
    p.set_defaults(run=cmd_verify)

    p = sub.add_parser("ledger", help="the ledger's hash chain")
    ledger = p.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    q = ledger.add_parser(
        "anchor", help="print the chain's head, signed with the ledger key, to file elsewhere",
        description="Print one JSON line: the generation's last seq, its entry count and hash, "
        "MACed with the ledger key. Keep it away from the database; `loyalty verify --anchor "
        "FILE` then fails if the ledger no longer holds that head (a deleted tail, a rewrite).",
    )  # fmt: skip
    q.add_argument("--generation", help="another generation than the live one")
    q.set_defaults(run=cmd_ledger)


def _operator_commands(sub: _Commands[_Parser]) -> None:
    """The parsers of offsets, dead letters, statements, erasure, schemas."""
    p = sub.add_parser("offsets", help="the consumer group's offsets, kept in PostgreSQL")
    offsets_actions = p.add_subparsers(dest="offsets_command", required=True, metavar="ACTION")
    q = offsets_actions.add_parser("reset", help="re-read from an offset or a time (idempotent)")
    q.add_argument("--group", default="loyalty", help="consumer group id (loyalty)")
    q.add_argument("--to-offset", type=_OFFSET, help="the next offset to read")
    q.add_argument("--to-time", help="the first input that occurred at or after this instant")
    q.add_argument("--topic", help="only this topic (default: every topic of the group)")
    q.add_argument("--partition", type=_PARTITION, help="only this partition")
    q.set_defaults(run=cmd_offsets)

    p = sub.add_parser("dlq", help="dead letters: inputs that could not be read")
    dlq = p.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    q = dlq.add_parser("list", help="list dead letters, oldest first")
    q.add_argument("--status", choices=("open", "redriven", "discarded", "all"), default="open",
                   help="which ones (open)")  # fmt: skip
    q.add_argument("--reason", help="only those whose reason contains TEXT (any case)")
    q.add_argument("--source", help="only those whose source starts with TEXT")
    q.add_argument("--limit", type=_LIMIT, default=100, help="at most N (100)")
    q.set_defaults(run=cmd_dlq)
    q = dlq.add_parser("show", help="one dead letter: raw line (escaped), reason, source, status")
    q.add_argument("id", type=_ID)
    q.add_argument("--raw", action="store_true",
                   help="write only the raw input to stdout, byte for byte")  # fmt: skip
    q.set_defaults(run=cmd_dlq)
    q = dlq.add_parser(
        "redrive",
        help="re-validate open dead letters; the now-valid ones enter the ledger",
        description="Re-validate open dead letters. A now-valid input from a file enters the "
        "live pipeline at its original source and position; one from Kafka is republished to "
        "its topic (header loyalty-redrive-of). Still-invalid ones stay open. Idempotent.",
    )
    q.add_argument("ids", type=_ID, nargs="*", metavar="ID", help="these dead letters")
    q.add_argument("--reason", help="those whose reason contains TEXT (any case)")
    q.add_argument("--source", help="those whose source starts with TEXT")
    q.add_argument("--all", action="store_true", help="every open dead letter")
    q.add_argument(
        "--bootstrap", help="kafka bootstrap servers, for Kafka's dead letters "
        "($LOYALTY_KAFKA_BOOTSTRAP, 127.0.0.1:9092)",
    )  # fmt: skip
    q.set_defaults(run=cmd_dlq)
    q = dlq.add_parser("discard", help="give up on an open dead letter; it stays, for audit")
    q.add_argument("id", type=_ID)
    q.add_argument("--why", required=True, help="the reason, kept with it")
    q.set_defaults(run=cmd_dlq)

    p = sub.add_parser("statement", help="one customer's entries, causes, balance, lots, expiries")
    p.add_argument("customer_id")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.add_argument("--generation", metavar="NAME", help="read this generation (default: live)")
    p.set_defaults(run=cmd_statement)

    p = sub.add_parser("members", help="members' personal data")
    members = p.add_subparsers(dest="members_command", required=True, metavar="ACTION")
    q = members.add_parser(
        "erase", help="remove a member's PII (email, name, phone, birth date) everywhere; "
        "the ledger stays",
    )  # fmt: skip
    q.add_argument("customer_id")
    q.set_defaults(run=cmd_members)

    p = sub.add_parser("schemas", help="check (default) or --write the input events' JSON Schemas")
    p.add_argument("--write", action="store_true", help="write the files instead of checking")
    p.add_argument("--dir", default="schemas", help="directory (default: schemas)")
    p.set_defaults(run=cmd_schemas)


def _database_commands(sub: _Commands[_Parser]) -> None:
    """The parsers of the embedded database, analysts, the report."""
    p = sub.add_parser("db", help="the embedded PostgreSQL in ./.loyalty/, and analyst logins")
    db = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (
        ("start", "start it and keep it running"), ("stop", "stop it"),
        ("status", "is it running (exit 3 if not)"), ("url", "print the database URL"),
    ):  # fmt: skip
        db.add_parser(action, help=text).set_defaults(run=cmd_db)
    q = db.add_parser(
        "grant-analyst",
        help="create a read-only login for the analyst views (schema live), without PII",
    )
    q.add_argument("name", help="the role to create (or update)")
    q.add_argument("--password", help="its password (default: none; set one for TCP logins)")
    q.add_argument("--with-pii", action="store_true", help="also let it read members (PII)")
    q.set_defaults(run=cmd_grant_analyst)

    p = sub.add_parser("report", help="write the managers' HTML report (charts, self-contained)")
    p.add_argument("--out", default="report.html", help="the HTML file (report.html)")
    p.add_argument("--top", type=_LIMIT, default=20, help="most valuable customers listed (20)")
    p.add_argument("--point-value", help="money value of one point (default 0.01)")
    p.set_defaults(run=cmd_report)

    p = sub.add_parser("analytics", help="the analyst views' tier levels and CLV model")
    analytics = p.add_subparsers(dest="analytics_command", required=True, metavar="ACTION")
    q = analytics.add_parser(
        "refresh", help="publish the program's tier levels and refit the CLV model if stale"
    )
    q.set_defaults(run=cmd_analytics)


def _kafka_commands(sub: _Commands[_Parser]) -> None:
    """The parsers of topics, produce, consume, status, tick."""
    bootstrap = _Parser(add_help=False)
    bootstrap.add_argument(
        "--bootstrap", help="kafka bootstrap servers ($LOYALTY_KAFKA_BOOTSTRAP, 127.0.0.1:9092)"
    )
    p = sub.add_parser("topics", help="the kafka topics: inputs, internal, ledger, deadletter")
    kafka_topics = p.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    q = kafka_topics.add_parser("create", parents=[bootstrap], help="create the four topics")
    q.add_argument(
        "--partitions", type=_count(1, 10_000), required=True, help="partitions of every topic"
    )
    q.add_argument("--replication", type=_count(1, 100), default=1, help="replication factor (1)")
    q.set_defaults(run=cmd_topics)
    q = kafka_topics.add_parser("list", parents=[bootstrap], help="the topics and partitions")
    q.set_defaults(run=cmd_topics)

    p = sub.add_parser("produce", parents=[bootstrap], help="publish JSON Lines to kafka")
    p.add_argument("path", help="JSON Lines file, or - for standard input")
    p.set_defaults(run=cmd_produce)

    p = sub.add_parser(
        "consume",
        parents=[bootstrap],
        help="apply the inputs topic as a consumer group member (Ctrl-C stops cleanly)",
        description="Consume loyalty.inputs (and loyalty.internal) as one member of a consumer "
        "group, exactly once into PostgreSQL. Settings: LOYALTY_DATABASE_URL, "
        "LOYALTY_KAFKA_BOOTSTRAP, LOYALTY_KAFKA_TOPIC_PREFIX (loyalty), LOYALTY_KAFKA_CONFIG "
        "(extra librdkafka settings, key=value,...).",
    )
    p.add_argument("--group", default="loyalty", help="consumer group id (loyalty)")
    p.add_argument("--program", help="program TOML (stored on first use; default: the stored one)")
    p.add_argument(
        "--batch-size", type=_BATCH, default=10_000, help="messages per transaction (10000)"
    )
    p.add_argument(
        "--batch-ms",
        type=_count(1, 3_600_000),
        default=500,
        help="longest wait to fill a batch (500)",
    )
    p.add_argument(
        "--stop-when-idle",
        type=_seconds,
        metavar="S",
        help="exit once caught up and S seconds quiet",
    )
    p.set_defaults(run=cmd_consume)

    p = sub.add_parser("status", parents=[bootstrap], help="per partition: offset, lag, last batch")
    p.add_argument("--group", default="loyalty", help="consumer group id (loyalty)")
    p.set_defaults(run=cmd_status)

    p = sub.add_parser("tick", parents=[bootstrap], help="send one tick to every input partition")
    p.add_argument("--at", required=True, help="the instant, RFC 3339 with a UTC offset")
    p.set_defaults(run=cmd_tick)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    log.configure()
    try:
        return _run(args)
    except KeyboardInterrupt:
        return _fail("interrupted: the last batch was not committed; run the same command again")
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
        return 0
    except Exception as e:  # a bug: one line here, the traceback in the log
        log.get("cli").exception("internal error")
        return _fail(f"internal error ({type(e).__name__}: {_first_line(e)}); this is a bug, "
                     "please report it with the log line above", code=1)  # fmt: skip


def _run(args: argparse.Namespace) -> int:
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except Conflict as e:
        return _fail(f"{e}: it changed meanwhile (a promotion, a fence); run the command again")
    except LoyaltyError as e:  # UserError, Unavailable: the message names what to do
        return _fail(str(e))
    except psycopg.OperationalError as e:
        return _fail(
            f"lost the database connection ({_first_line(e)}); nothing half-done was kept: run "
            "the command again (for several commands at once on the embedded database, keep it "
            "up with `loyalty db start`)"
        )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _fail(message: str, *, code: int = 2) -> int:
    print(f"loyalty: {printable(message)}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
