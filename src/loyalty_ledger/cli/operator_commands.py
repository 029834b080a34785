"""An operator's one-shot commands: offsets reset, members erase, schemas."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loyalty_ledger.cli.arguments import (
    OFFSET,
    PARTITION,
    Commands,
    Parser,
    UsageError,
    instant,
)
from loyalty_ledger.cli.resources import database
from loyalty_ledger.text import printable


def add_offsets(sub: Commands[Parser]) -> None:
    """`loyalty offsets reset`: move the consumer group's offsets, kept in PostgreSQL."""
    p = sub.add_parser("offsets", help="the consumer group's offsets, kept in PostgreSQL")
    offsets_actions = p.add_subparsers(dest="offsets_command", required=True, metavar="ACTION")
    q = offsets_actions.add_parser("reset", help="re-read from an offset or a time (idempotent)")
    q.add_argument("--group", default="loyalty", help="consumer group id (loyalty)")
    q.add_argument("--to-offset", type=OFFSET, help="the next offset to read")
    q.add_argument("--to-time", help="the first input that occurred at or after this instant")
    q.add_argument("--topic", help="only this topic (default: every topic of the group)")
    q.add_argument("--partition", type=PARTITION, help="only this partition")
    q.set_defaults(run=offsets_reset)


def offsets_reset(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin import offsets

    if (args.to_offset is None) == (args.to_time is None):
        raise UsageError("give one of --to-offset N and --to-time TIME")
    at = instant(args.to_time, "--to-time") if args.to_time else None
    with database() as conn:
        resets = offsets.reset(conn, args.group, to_offset=args.to_offset, to_time=at,
                               topic=args.topic, partition=args.partition)  # fmt: skip
    for r in resets:
        print(f"{r.topic}[{r.partition}]\t{r.next_offset_was} -> {r.next_offset}")
    return 0


def add_members(sub: Commands[Parser]) -> None:
    """`loyalty members erase CUSTOMER`: remove a member's PII; the ledger stays."""
    p = sub.add_parser("members", help="members' personal data")
    members = p.add_subparsers(dest="members_command", required=True, metavar="ACTION")
    q = members.add_parser(
        "erase", help="remove a member's PII (email, name, phone, birth date) everywhere; "
        "the ledger stays",
    )  # fmt: skip
    q.add_argument("customer_id")
    q.set_defaults(run=members_erase)


def members_erase(args: argparse.Namespace) -> int:
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


def add_schemas(sub: Commands[Parser]) -> None:
    """`loyalty schemas [--write]`: check or write the input events' JSON Schemas."""
    p = sub.add_parser("schemas", help="check (default) or --write the input events' JSON Schemas")
    p.add_argument("--write", action="store_true", help="write the files instead of checking")
    p.add_argument("--dir", default="schemas", help="directory (default: schemas)")
    p.set_defaults(run=schemas)


def schemas(args: argparse.Namespace) -> int:
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
