"""The ledger and its read models: ingest, export, rebuild, verify, ledger anchor."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from loyalty_ledger import log
from loyalty_ledger.cli.arguments import BATCH, Commands, Parser, read_program
from loyalty_ledger.cli.resources import database, progress, use_generation
from loyalty_ledger.text import printable


def add_ingest(sub: Commands[Parser]) -> None:
    """`loyalty ingest PATH`: apply a JSON Lines file of input events."""
    p = sub.add_parser("ingest", help="apply a JSON Lines file of input events (- for stdin)")
    p.add_argument("path", help="JSON Lines file, or - for standard input")
    p.add_argument("--program", help="program TOML (stored on first use; default: the stored one)")
    p.add_argument(
        "--batch-size", type=BATCH, default=20_000, help="inputs per transaction (20000)"
    )
    p.set_defaults(run=ingest)


def ingest(args: argparse.Namespace) -> int:
    from loyalty_ledger.runtime.ingest import ingest_file

    program_source = read_program(args.program) if args.program else None
    with database() as conn, progress("ingesting", "lines") as update:
        ingest_file(conn, args.path, program_source, args.program or "program", args.batch_size,
                    update)  # fmt: skip
    return 0


def add_export(sub: Commands[Parser]) -> None:
    """`loyalty export customers|summary`: the read models as JSON."""
    p = sub.add_parser("export", help="print the read models as JSON")
    p.add_argument("what", choices=("customers", "summary"))
    p.add_argument("--generation", help="another generation than the live one (a re-run's)")
    p.set_defaults(run=export)


def export(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin import exports
    from loyalty_ledger.projectors import runner

    with database() as conn:
        if args.generation:
            use_generation(conn, args.generation)
        runner.catch_up(conn)
        out = sys.stdout
        if args.what == "customers":
            for customer in exports.customers(conn):
                out.write(json.dumps(customer, ensure_ascii=False) + "\n")
        else:
            out.write(json.dumps(exports.summary(conn), indent=1) + "\n")
    return 0


def add_rebuild(sub: Commands[Parser]) -> None:
    """`loyalty rebuild`: drop the projections and rebuild them from the ledger."""
    p = sub.add_parser("rebuild", help="drop the projections and rebuild them from the ledger")
    p.add_argument("--projection", action="append", help="only this one (repeatable)")
    p.set_defaults(run=rebuild)


def rebuild(args: argparse.Namespace) -> int:
    from loyalty_ledger.projectors import runner

    names = tuple(args.projection or ())
    runner.tables(names)  # an unknown name fails before the database starts
    with database() as conn, progress("rebuilding") as update:
        seq = runner.rebuild(conn, names, lambda _name, done, total: update(done, total))
    log.get("rebuild").info("rebuilt", projections=list(names) or "all", seq=seq)
    return 0


def add_verify(sub: Commands[Parser]) -> None:
    """`loyalty verify`: the hash chain, versions, conservation, projections; exit 1 if broken."""
    p = sub.add_parser("verify", help="check hash chain, versions, conservation, projections")
    p.add_argument("--generation", help="another generation than the live one")
    p.add_argument("--anchor", action="append", metavar="FILE",
                   help="also check the anchors in FILE (lines of `loyalty ledger anchor`; "
                   "repeatable); the anchor file is always checked")  # fmt: skip
    p.set_defaults(run=verify)


def verify(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin.verify import verify as verify_ledger
    from loyalty_ledger.projectors import runner

    with database() as conn:
        if args.generation:
            use_generation(conn, args.generation)
        runner.catch_up(conn)
        with progress("verifying the hash chain", "entries") as update:
            report = verify_ledger(conn, update, [Path(a) for a in args.anchor or ()])
    for problem in report.problems:
        print(f"broken: {printable(problem)}")
    if report.ok:
        print(f"ok: {report.entries} entries of {report.customers} customers chain, number and "
              f"conserve; {report.projections} projections equal a rebuild")  # fmt: skip
        return 0
    return 1


def add_ledger(sub: Commands[Parser]) -> None:
    """`loyalty ledger anchor`: the chain's head, MACed with the ledger key."""
    p = sub.add_parser("ledger", help="the ledger's hash chain")
    ledger = p.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    q = ledger.add_parser(
        "anchor", help="print the chain's head, signed with the ledger key, to file elsewhere",
        description="Print one JSON line: the generation's last seq, its entry count and hash, "
        "MACed with the ledger key. Keep it away from the database; `loyalty verify --anchor "
        "FILE` then fails if the ledger no longer holds that head (a deleted tail, a rewrite).",
    )  # fmt: skip
    q.add_argument("--generation", help="another generation than the live one")
    q.set_defaults(run=ledger_anchor)


def ledger_anchor(args: argparse.Namespace) -> int:
    from loyalty_ledger.ledger import key as ledger_key
    from loyalty_ledger.store import chain

    key = ledger_key.current()
    with database() as conn:
        if args.generation:
            use_generation(conn, args.generation)
        head = chain.current_head(conn, key)
    sys.stdout.write(head.line(key))
    return 0
