"""Generations of the ledger under other programs: rerun, promote, generations, compare."""

from __future__ import annotations

import argparse
import json
import sys

from loyalty_ledger import log
from loyalty_ledger.cli.arguments import LIMIT, Commands, Parser, instant, read_program
from loyalty_ledger.cli.resources import database, progress
from loyalty_ledger.text import printable


def add_rerun(sub: Commands[Parser]) -> None:
    """`loyalty rerun --program P --as NAME`: replay every input into a new generation."""
    p = sub.add_parser("rerun", help="replay every input into a new generation under a program")
    p.add_argument("--program", required=True, help="the program TOML to re-run under")
    p.add_argument("--as", dest="as_name", required=True, metavar="NAME",
                   help="the new generation's name (lowercase, digits, _)")  # fmt: skip
    p.add_argument("--until", help="only inputs that occurred up to this instant (a what-if)")
    p.set_defaults(run=rerun)


def rerun(args: argparse.Namespace) -> int:
    from loyalty_ledger.generations.rerun import rerun as rerun_into

    source = read_program(args.program)
    until = instant(args.until, "--until") if args.until else None
    with database() as conn, progress(f"re-running into {args.as_name}", "inputs") as update:
        generation, replayed = rerun_into(conn, source, args.program, args.as_name, until,
                                          update)  # fmt: skip
    log.get("rerun").info(
        "replayed", generation=generation.name, inputs=replayed.inputs,
        through_arrival=replayed.arrival, seconds=round(replayed.seconds, 3),
    )  # fmt: skip
    name = generation.name
    promote_hint = "" if generation.until_at else f", make it live with `loyalty promote {name}`"
    print(f"generation {name}: {replayed.inputs} inputs replayed; "
          f"compare it with `loyalty compare live {name}`{promote_hint}")  # fmt: skip
    return 0


def add_promote(sub: Commands[Parser]) -> None:
    """`loyalty promote NAME`: make a re-run generation live."""
    p = sub.add_parser("promote", help="make a re-run generation live, atomically")
    p.add_argument("name")
    p.set_defaults(run=promote)


def promote(args: argparse.Namespace) -> int:
    from loyalty_ledger.generations.rerun import promote as promote_generation

    with database() as conn, progress(f"catching {args.name} up", "inputs") as update:
        generation = promote_generation(conn, args.name, update)
    print(f"generation {generation.name} is live")
    return 0


def add_generations(sub: Commands[Parser]) -> None:
    """`loyalty generations`: list them and which is live."""
    p = sub.add_parser("generations", help="list the generations and which is live")
    p.set_defaults(run=generations)


def generations(args: argparse.Namespace) -> int:
    from loyalty_ledger.generations import catalog

    with database() as conn:
        for g in catalog.listing(conn):
            until = f" until {g.until_at.isoformat()}" if g.until_at else ""
            print(f"{printable(g.name)}\t{g.status}\t{(g.program_hash or '-')[:12]}\t"
                  f"from {printable(g.parent or '-')}{until}\t"
                  f"created {g.created_at.isoformat()}")  # fmt: skip
    return 0


def add_compare(sub: Commands[Parser]) -> None:
    """`loyalty compare A B`: two generations side by side."""
    p = sub.add_parser("compare", help="two generations side by side ('live' names the live one)")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--json", action="store_true", help="one JSON object, for tools")
    p.add_argument("--limit", type=LIMIT, default=20, help="customers listed that differ (20)")
    p.set_defaults(run=compare)


def compare(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin import compare as comparing
    from loyalty_ledger.projectors import runner

    with database() as conn:
        runner.catch_up(conn)  # the live side as of its last batch
        result = comparing.compare(conn, args.a, args.b, args.limit)
    if args.json:
        print(json.dumps(comparing.as_json(result), indent=1))
    else:
        comparing.write_text(result, sys.stdout)
    return 0
