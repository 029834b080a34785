"""Dead letters, inputs that could not be read: dlq list, show, redrive, discard, and
their text (every byte that came from an input escaped)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from loyalty_ledger.cli.arguments import ID, LIMIT, Commands, Parser, UsageError
from loyalty_ledger.cli.resources import database, progress
from loyalty_ledger.kafka.settings import KafkaSettings
from loyalty_ledger.text import printable

if TYPE_CHECKING:
    from loyalty_ledger.admin.dead_letters import DeadLetter, DeadLetterRow, RedriveResult


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
        write_list(dlq.listing(conn, chosen), chosen.status, sys.stdout)
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
        write_one(letter, sys.stdout)
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
        write_redrive(result, sys.stdout)
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


# ------------------------------------------------------------------ text


def write_list(rows: list[DeadLetterRow], status: str, out: TextIO) -> None:
    """One line per dead letter: id, source:position, status, reason, the raw line's start."""
    from loyalty_ledger.admin.dead_letters import RAW_PREFIX_CHARS

    if not rows:
        out.write("no dead letters\n" if status == "all" else f"no {status} dead letters\n")
        return
    for row in rows:
        # Cut before escaping, so a cut never splits an escape; invalid bytes show as \xNN.
        text = row.raw.decode("utf-8", errors="backslashreplace")
        raw = printable(text[:RAW_PREFIX_CHARS]) + ("…" if len(text) > RAW_PREFIX_CHARS else "")
        out.write(f"{row.id}\t{printable(row.source)}:{row.position}\t{printable(row.status)}\t"
                  f"{printable(row.reason)}\t{raw}\n")  # fmt: skip


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value is not None else "-"


def write_one(letter: DeadLetter, out: TextIO) -> None:
    """A dead letter's fields, one per line, and its raw input escaped."""
    fields = (
        ("id", str(letter.id)),
        ("source", f"{letter.source}:{letter.position}"),
        ("status", letter.status),
        ("reason", letter.reason),
        ("received", _when(letter.received_at)),
        ("resolved", _when(letter.resolved_at)),
        ("resolution", letter.resolution or "-"),
    )
    for name, value in fields:
        out.write(f"{name:<11}{printable(value)}\n")
    out.write(f"{'raw':<11}{escaped_raw(letter.raw)}\n")


def escaped_raw(raw: bytes) -> str:
    """Every byte visible, in ASCII: a JSON string literal of UTF-8, else a Python bytes literal
    (`loyalty dlq show ID --raw` writes the bytes themselves)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return f"({len(raw)} bytes, not utf-8, escaped) {raw!r}"
    return f"({len(raw)} bytes, escaped) {json.dumps(text, ensure_ascii=True)}"


def write_redrive(result: RedriveResult, out: TextIO) -> None:
    """What a redrive did: counts, then each letter left open and why."""
    counts = result.counts
    out.write(
        f"redriven into the inbox: {result.redriven} ({counts.accepted} accepted, "
        f"{counts.rejected} rejected, {counts.duplicates} duplicates)\n"
    )
    if result.republished:
        out.write(f"republished to kafka: {result.republished}\n")
    out.write(f"still invalid, left open: {len(result.still_invalid)}\n")
    for letter in result.still_invalid:
        out.write(f"  {letter.id}\t{printable(letter.source)}:{letter.position}\t"
                  f"{printable(letter.reason)}\n")  # fmt: skip
    for letter_id, status in result.not_open:
        out.write(f"  {letter_id}\t{status} already: left as it is\n")
