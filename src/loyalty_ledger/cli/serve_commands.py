"""The HTTP API: serve, and api-keys create|list|revoke."""

from __future__ import annotations

import argparse
import os
import sys

from loyalty_ledger.cli.arguments import Commands, Parser, count, read_program, seconds
from loyalty_ledger.cli.resources import database
from loyalty_ledger.text import printable

PORT = count(0, 65_535)


def _env(name: str, default: str) -> str:
    """A flag's default from LOYALTY_<NAME> (argparse checks it as it checks the flag)."""
    return os.environ.get(name, default)


def add_serve(sub: Commands[Parser]) -> None:
    """`loyalty serve`: the HTTP API and the support console."""
    p = sub.add_parser(
        "serve", help="the HTTP API for tills and web shops, and the support console",
        description="The HTTP API (OpenAPI at /docs) and the support console (/console). "
        "Without LOYALTY_KAFKA_BOOTSTRAP the server is the ledger's one writer (embedded "
        "mode); with it, it publishes to the inputs topic and answers when `loyalty consume` "
        "has committed (Kafka mode).",
    )  # fmt: skip
    p.add_argument("--host", default=_env("LOYALTY_HTTP_HOST", "127.0.0.1"),
                   help="address to listen on ($LOYALTY_HTTP_HOST, 127.0.0.1)")  # fmt: skip
    p.add_argument("--port", type=PORT, default=_env("LOYALTY_HTTP_PORT", "8080"),
                   help="port ($LOYALTY_HTTP_PORT, 8080; 0: a free one, named in the "
                   "log's \"serving\" line)")  # fmt: skip
    p.add_argument("--program", help="program TOML (stored on first use; default: the stored one)")
    p.add_argument("--group-events", type=count(1, 100_000),
                   default=_env("LOYALTY_GROUP_EVENTS", "1000"),
                   help="most events per group commit ($LOYALTY_GROUP_EVENTS, 1000)")  # fmt: skip
    p.add_argument("--group-linger-ms", type=seconds,
                   default=_env("LOYALTY_GROUP_LINGER_MS", "2"),
                   help="how long a group waits for more requests, in ms "
                   "($LOYALTY_GROUP_LINGER_MS, 2)")  # fmt: skip
    p.add_argument("--read-connections", type=count(1, 1000),
                   default=_env("LOYALTY_READ_CONNECTIONS", "8"),
                   help="connections for reads ($LOYALTY_READ_CONNECTIONS, 8)")  # fmt: skip
    p.add_argument("--group", default=_env("LOYALTY_KAFKA_GROUP", "loyalty"),
                   help="Kafka mode: the consumer group whose commits answer "
                   "($LOYALTY_KAFKA_GROUP, loyalty)")  # fmt: skip
    p.add_argument("--answer-wait", type=seconds, default=_env("LOYALTY_ANSWER_WAIT_S", "5"),
                   help="Kafka mode: seconds to wait for the consumers before answering 202 "
                   "($LOYALTY_ANSWER_WAIT_S, 5)")  # fmt: skip
    p.set_defaults(run=serve)


def serve(args: argparse.Namespace) -> int:
    from loyalty_ledger.http.serve import ServeSettings, listening
    from loyalty_ledger.http.serve import serve as run_server
    from loyalty_ledger.kafka.settings import ENV_BOOTSTRAP, KafkaSettings

    # Kafka mode exactly when a broker is configured, as `docker-compose.yml` does.
    kafka = KafkaSettings.from_env() if os.environ.get(ENV_BOOTSTRAP) else None
    settings = ServeSettings(
        host=args.host, port=args.port, group_events_max=args.group_events,
        group_linger_ms=args.group_linger_ms, read_connections=args.read_connections,
        kafka=kafka, group=args.group, answer_wait_s=args.answer_wait,
    )  # fmt: skip
    program_source = read_program(args.program) if args.program else None
    with listening(args.host, args.port) as sock, database() as conn:
        run_server(conn, sock, settings, program_source, args.program or "program")
    return 0


def add_api_keys(sub: Commands[Parser]) -> None:
    """`loyalty api-keys create|list|revoke`: who may use the HTTP API."""
    from loyalty_ledger.admin.api_keys import Scope

    p = sub.add_parser("api-keys", help="API keys of the HTTP API: create, list, revoke")
    actions = p.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    q = actions.add_parser("create", help="a new key, printed once (stored as a hash)")
    q.add_argument("name", help="the key's name, e.g. till-berlin (a-z, 0-9, '.', '_', '-')")
    q.add_argument("--scope", required=True, choices=[s.value for s in Scope],
                   help="read: reads; pos: also post events; support: also the console and "
                   "corrections; admin: also ticks")  # fmt: skip
    q.set_defaults(run=keys_create)
    q = actions.add_parser("list", help="every key: name, scope, prefix, created, revoked")
    q.set_defaults(run=keys_list)
    q = actions.add_parser("revoke", help="revoke a key at once")
    q.add_argument("name")
    q.set_defaults(run=keys_revoke)


def keys_create(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin import api_keys

    with database() as conn:
        created, key = api_keys.create(conn, args.name, api_keys.Scope(args.scope))
    print(key)
    print(f"key {created.name!r} ({created.scope.value}) created: it is shown only this once",
          file=sys.stderr)  # fmt: skip
    return 0


def keys_list(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin import api_keys

    with database() as conn:
        keys = api_keys.listed(conn)
    for key in keys:
        revoked = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
        print(f"{printable(key.name):<24} {key.scope.value:<8} {key.prefix}…  "
              f"created {key.created_at:%Y-%m-%d}  {revoked}")  # fmt: skip
    return 0


def keys_revoke(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin import api_keys

    with database() as conn:
        key = api_keys.revoke(conn, args.name)
    print(f"key {key.name!r} revoked", file=sys.stderr)
    return 0
