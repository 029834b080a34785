"""The `loyalty` command: ingest, export, rebuild, dead letters, schemas, and the embedded database.

A bad command line, program or database URL ends in one line on stderr that
names what to fix, and exit code 2; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from loyalty_ledger import embedded, log
from loyalty_ledger.kafka_settings import KafkaSettings, KafkaUnavailable
from loyalty_ledger.program import ProgramError
from loyalty_ledger.progress import Progress
from loyalty_ledger.store.db import (
    Connection,
    StoreUnavailable,
    connect,
    live_schema,
    redact,
    use_schema,
)
from loyalty_ledger.store.programs import ProgramChanged

EMBEDDED_ROOT = Path(".loyalty")


class UsageError(Exception):
    """Something the user can fix on the command line."""


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
            from loyalty_ledger.store.schema import migrate as run_migrations

            run_migrations(url)
        schema = live_schema(conn)
        if schema is not None:  # the connection came before the migrations made it
            use_schema(conn, schema)
        yield conn
    finally:
        conn.close()


# ------------------------------------------------------------------ commands


def cmd_ingest(args: argparse.Namespace) -> int:
    from loyalty_ledger.ops.ingest import ingest_file

    program_source = _read_program(args.program) if args.program else None
    if args.path != "-" and not Path(args.path).is_file():
        raise UsageError(
            f"input file {args.path!r} not found: pass a JSON Lines file or - for stdin"
        )
    if args.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    with database() as conn, _progress("ingesting") as progress:
        ingest_file(conn, args.path, program_source, args.program or "program", args.batch_size,
                    progress)  # fmt: skip
    return 0


def _read_program(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(
            f"program file {path!r} not found: pass --program PATH to a TOML file"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read program file {path!r}: {e}") from None


def cmd_export(args: argparse.Namespace) -> int:
    from loyalty_ledger import exports
    from loyalty_ledger.projectors import runner

    with database() as conn:
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
    try:
        runner.tables(names)
    except ValueError as e:
        raise UsageError(str(e)) from None
    with database() as conn, _progress("rebuilding") as progress:
        seq = runner.rebuild(conn, names, lambda _name, done, total: progress(done, total))
    log.get("rebuild").info("rebuilt", projections=list(names) or "all", seq=seq)
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    from loyalty_ledger.ops import dead_letters

    with database() as conn:
        dead_letters.print_list(conn, args.limit, sys.stdout)
    return 0


def cmd_schemas(args: argparse.Namespace) -> int:
    from loyalty_ledger.schemas import check_schemas, write_schemas

    directory = Path(args.dir)
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
        print(server.url)
    elif args.action == "stop":
        print("stopped" if embedded.stop_detached(EMBEDDED_ROOT) else "not running")
    elif args.action == "status":
        found = embedded.status(EMBEDDED_ROOT)
        print(f"running: {found.url}" if found else "not running")
        return 0 if found else 3
    else:
        url = os.environ.get("LOYALTY_DATABASE_URL")
        found = embedded.status(EMBEDDED_ROOT)
        if url:
            print(redact(url))
        elif found:
            print(found.url)
        else:
            raise UsageError(
                "the embedded database is not running: start it with `loyalty db start`"
            )
    return 0


# ------------------------------------------------------------------ kafka


def cmd_topics(args: argparse.Namespace) -> int:
    from loyalty_ledger.ops import topics

    with _kafka_errors():
        settings = KafkaSettings.from_env(args.bootstrap)
        if args.topics_command == "list":
            counts = topics.topic_partitions(settings)
            for name in sorted(n for n in counts if n.startswith(f"{settings.prefix}.")):
                print(f"{name}\t{counts[name]}")
            return 0
        if args.partitions < 1 or args.replication < 1:
            raise UsageError("--partitions and --replication must be at least 1")
        created = topics.create_topics(settings, args.partitions, args.replication)
        for name in settings.topics:
            print(f"{name}\t{args.partitions}\t{'created' if name in created else 'exists'}")
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    from loyalty_ledger.ops.produce import produce_file

    if args.path != "-" and not Path(args.path).is_file():
        raise UsageError(
            f"input file {args.path!r} not found: pass a JSON Lines file or - for stdin"
        )
    with _kafka_errors(), _progress("producing") as progress:
        produce_file(KafkaSettings.from_env(args.bootstrap), args.path, progress)
    return 0


def cmd_tick(args: argparse.Namespace) -> int:
    from datetime import datetime

    from loyalty_ledger.ops.produce import send_tick

    example = "write it like 2026-03-01T00:00:00+01:00"
    try:
        at = datetime.fromisoformat(args.at)
    except ValueError:
        raise UsageError(f"--at {args.at!r} is not an RFC 3339 instant: {example}") from None
    if at.utcoffset() is None:
        raise UsageError(f"--at {args.at!r} has no UTC offset: {example}")
    with _kafka_errors():
        send_tick(KafkaSettings.from_env(args.bootstrap), at)
    return 0


def cmd_consume(args: argparse.Namespace) -> int:
    from loyalty_ledger.ops.consume import ConsumeOptions, consume

    program_source = _read_program(args.program) if args.program else None
    if args.batch_size < 1 or args.batch_ms < 1:
        raise UsageError("--batch-size and --batch-ms must be at least 1")
    options = ConsumeOptions(args.group, args.batch_size, args.batch_ms, args.stop_when_idle)
    with _kafka_errors(), database() as conn:
        settings = KafkaSettings.from_env(args.bootstrap)
        consume(conn, settings, options, program_source, args.program or "program")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from loyalty_ledger.ops.status import print_status

    with _kafka_errors(), database() as conn:
        print_status(conn, KafkaSettings.from_env(args.bootstrap), args.group, sys.stdout)
    return 0


@contextmanager
def _kafka_errors() -> Iterator[None]:
    """Settings the user must fix and missing or misfit topics become one-line usage errors."""
    from loyalty_ledger.kafka_settings import KafkaConfigError
    from loyalty_ledger.ops.topics import TopicError

    try:
        yield
    except (KafkaConfigError, TopicError) as e:
        raise UsageError(str(e)) from None


# ------------------------------------------------------------------ progress

@contextmanager
def _progress(label: str) -> Iterator[Progress]:
    """A rich bar on a terminal; elsewhere nothing (the services log JSON lines instead)."""
    if not sys.stderr.isatty():
        yield lambda _done, _total: None
        return
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}", BarColumn(), TaskProgressColumn(),
        TimeRemainingColumn(), transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(label, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


# ------------------------------------------------------------------ parser


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="loyalty",
        description="An event-sourced customer-loyalty ledger on PostgreSQL. Without "
        "LOYALTY_DATABASE_URL every command uses an embedded PostgreSQL in ./.loyalty/.",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ingest", help="apply a JSON Lines file of input events (- for stdin)")
    p.add_argument("path", help="JSON Lines file, or - for standard input")
    p.add_argument("--program", help="program TOML (stored on first use; default: the stored one)")
    p.add_argument(
        "--batch-size", type=int, default=20_000, help="inputs per transaction (20000)"
    )
    p.set_defaults(run=cmd_ingest)

    p = sub.add_parser("export", help="print the read models as JSON")
    p.add_argument("what", choices=("customers", "summary"))
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("rebuild", help="drop the projections and rebuild them from the ledger")
    p.add_argument("--projection", action="append", help="only this one (repeatable)")
    p.set_defaults(run=cmd_rebuild)

    p = sub.add_parser("dlq", help="dead letters: inputs that could not be read")
    dlq = p.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    q = dlq.add_parser("list", help="list dead letters, oldest first")
    q.add_argument("--limit", type=int, default=100)
    q.set_defaults(run=cmd_dlq)

    p = sub.add_parser("schemas", help="check (default) or --write the input events' JSON Schemas")
    p.add_argument("--write", action="store_true", help="write the files instead of checking")
    p.add_argument("--dir", default="schemas", help="directory (default: schemas)")
    p.set_defaults(run=cmd_schemas)

    p = sub.add_parser("db", help="the embedded PostgreSQL in ./.loyalty/")
    p.add_argument("action", choices=("start", "stop", "status", "url"))
    p.set_defaults(run=cmd_db)

    bootstrap = argparse.ArgumentParser(add_help=False)
    bootstrap.add_argument(
        "--bootstrap", help="kafka bootstrap servers ($LOYALTY_KAFKA_BOOTSTRAP, 127.0.0.1:9092)"
    )
    p = sub.add_parser("topics", help="the kafka topics: inputs, internal, ledger, deadletter")
    kafka_topics = p.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    q = kafka_topics.add_parser("create", parents=[bootstrap], help="create the four topics")
    q.add_argument("--partitions", type=int, required=True, help="partitions of every topic")
    q.add_argument("--replication", type=int, default=1, help="replication factor (1)")
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
        "--batch-size", type=int, default=10_000, help="messages per transaction (10000)"
    )
    p.add_argument("--batch-ms", type=int, default=500, help="longest wait to fill a batch (500)")
    p.add_argument(
        "--stop-when-idle", type=float, metavar="S", help="exit once caught up and S seconds quiet"
    )
    p.set_defaults(run=cmd_consume)

    p = sub.add_parser("status", parents=[bootstrap], help="per partition: offset, lag, last batch")
    p.add_argument("--group", default="loyalty", help="consumer group id (loyalty)")
    p.set_defaults(run=cmd_status)

    p = sub.add_parser("tick", parents=[bootstrap], help="send one tick to every input partition")
    p.add_argument("--at", required=True, help="the instant, RFC 3339 with a UTC offset")
    p.set_defaults(run=cmd_tick)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    log.configure()
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except (
        UsageError,
        ProgramError,
        ProgramChanged,
        StoreUnavailable,
        embedded.EmbeddedError,
        KafkaUnavailable,
    ) as e:
        return _fail(str(e))
    except psycopg.OperationalError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return _fail(
            f"lost the database connection ({first}); nothing half-done was kept: run the "
            "command again (for several commands at once on the embedded database, keep it "
            "up with `loyalty db start`)"
        )
    except KeyboardInterrupt:
        return _fail("interrupted: the last batch was not committed; run the same command again")
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
        return 0


def _fail(message: str, *_: Any) -> int:
    print(f"loyalty: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
