"""Dead letters, inputs that could not be read: dlq list, show, redrive, discard."""

from __future__ import annotations

import argparse
import sys

from loyalty_ledger.cli.arguments import ID, LIMIT, Commands, Parser, UsageError
from loyalty_ledger.cli.resources import database, progress
from loyalty_ledger.kafka.settings import KafkaSettings
from loyalty_ledger.text import printable


def add_dlq(sub: Commands[Parser]) -> None:
    """`loyalty dlq ACTION`: the four actions on dead letters."""
    p = sub.add_parser("dlq", help="dead letters: inputs that could not be read")
    actions = p.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    for add in (_add_list, _add_show, _add_redrive, _add_discard):
        add(actions)


def _add_list(actions: Commands[Parser]) -> None:
    q = actions.add_parser("list", help="list dead letters, oldest first")
    q.add_argument("--status", choices=("open", "redriven", "discarded", "all"), default="open",
                   help="which ones (open)")  # fmt: skip
    q.add_argument("--reason", help="only those whose reason contains TEXT (any case)")
    q.add_argument("--source", help="only those whose source starts with TEXT")
    q.add_argument("--limit", type=LIMIT, default=100, help="at most N (100)")
    q.set_defaults(run=dlq_list)


def dlq_list(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin import dead_letters as dlq

    with database() as conn:
        chosen = dlq.Filter(args.status, args.reason, args.source, limit=args.limit)
        dlq.print_list(conn, chosen, sys.stdout)
    return 0


def _add_show(actions: Commands[Parser]) -> None:
    q = actions.add_parser(
        "show", help="one dead letter: raw line (escaped), reason, source, status"
    )
    q.add_argument("id", type=ID)
    q.add_argument("--raw", action="store_true",
                   help="write only the raw input to stdout, byte for byte")  # fmt: skip
    q.set_defaults(run=dlq_show)


def dlq_show(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin import dead_letters as dlq

    with database() as conn:
        letter = dlq.get(conn, args.id)
    if args.raw:
        sys.stdout.buffer.write(letter.raw)
        sys.stdout.buffer.flush()
    else:
        dlq.print_one(letter, sys.stdout)
    return 0


def _add_redrive(actions: Commands[Parser]) -> None:
    q = actions.add_parser(
        "redrive",
        help="re-validate open dead letters; the now-valid ones enter the ledger",
        description="Re-validate open dead letters. A now-valid input from a file enters the "
        "live pipeline at its original source and position; one from Kafka is republished to "
        "its topic (header loyalty-redrive-of). Still-invalid ones stay open. Idempotent.",
    )
    q.add_argument("ids", type=ID, nargs="*", metavar="ID", help="these dead letters")
    q.add_argument("--reason", help="those whose reason contains TEXT (any case)")
    q.add_argument("--source", help="those whose source starts with TEXT")
    q.add_argument("--all", action="store_true", help="every open dead letter")
    q.add_argument(
        "--bootstrap", help="kafka bootstrap servers, for Kafka's dead letters "
        "($LOYALTY_KAFKA_BOOTSTRAP, 127.0.0.1:9092)",
    )  # fmt: skip
    q.set_defaults(run=dlq_redrive)


def dlq_redrive(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin import dead_letters as dlq

    if not (args.ids or args.reason or args.source or args.all):
        raise UsageError("name the dead letters to redrive: IDs, --reason TEXT, --source or --all")
    with database() as conn:
        chosen = dlq.Filter("open", args.reason, args.source, tuple(args.ids))
        with progress("redriving", "letters") as update:
            settings = KafkaSettings.from_env(args.bootstrap)
            result = dlq.redrive(conn, chosen, settings, update)
        dlq.print_redrive(result, sys.stdout)
    return 0


def _add_discard(actions: Commands[Parser]) -> None:
    q = actions.add_parser("discard", help="give up on an open dead letter; it stays, for audit")
    q.add_argument("id", type=ID)
    q.add_argument("--why", required=True, help="the reason, kept with it")
    q.set_defaults(run=dlq_discard)


def dlq_discard(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin import dead_letters as dlq

    with database() as conn:
        done = dlq.discard(conn, args.id, args.why)
    print(f"discarded dead letter {done.id} ({printable(done.source)}:{done.position})")
    return 0
