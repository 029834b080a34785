"""Generations of the ledger under other programs: rerun, promote, generations, compare."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, TextIO

from loyalty_ledger import log
from loyalty_ledger.cli.arguments import (
    LIMIT,
    Commands,
    Parser,
    UsageError,
    count,
    instant,
    read_program,
)
from loyalty_ledger.cli.resources import database, progress
from loyalty_ledger.text import printable

if TYPE_CHECKING:
    from loyalty_ledger.admin.compare import Comparison


def add_rerun(sub: Commands[Parser]) -> None:
    """`loyalty rerun --as NAME [--program P] [--amend FILE@INSTANT]`: replay every input
    into a new generation under a program history (the live one's, changed as given)."""
    p = sub.add_parser("rerun", help="replay every input into a new generation under a program")
    p.add_argument("--program", help="the original program to re-run under "
                   "(default: the live generation's)")  # fmt: skip
    p.add_argument("--amend", action="append", default=[], metavar="FILE@INSTANT",
                   help="an amendment from INSTANT on (repeatable); adds to the live "
                   "generation's amendments or replaces the one at that instant")  # fmt: skip
    # One of the two, checked in `rerun` (a required group reads badly in argparse's usage).
    p.add_argument("--as", dest="as_name", metavar="NAME",
                   help="the new generation's name (lowercase, digits, _)")  # fmt: skip
    p.add_argument("--preview", action="store_true",
                   help="instead of --as: decide in memory and print the comparison with "
                   "live; writes nothing (a quick what-if: nothing to promote)")  # fmt: skip
    p.add_argument("--until", help="only inputs that occurred up to this instant (a what-if)")
    p.add_argument("--json", action="store_true", help="with --preview: one JSON object")
    p.add_argument("--limit", type=LIMIT,
                   help="with --preview: customers listed that differ (20)")  # fmt: skip
    p.add_argument("--processes", type=count(1, 64), metavar="N",
                   help="with --preview: processes deciding customers apart (default: the "
                   "machine's cores, at most 4)")  # fmt: skip
    p.set_defaults(run=rerun)


def rerun(args: argparse.Namespace) -> int:
    from loyalty_ledger.generations.rerun import rerun as rerun_into

    if args.preview:
        if args.as_name is not None:
            raise UsageError("--preview makes no generation: leave out --as NAME")
        return _preview(args)
    if args.as_name is None:
        raise UsageError("give --as NAME (the new generation), or --preview (nothing written)")
    if args.json or args.limit or args.processes:
        raise UsageError("--json, --limit and --processes go with --preview")
    source = read_program(args.program) if args.program else None
    until = instant(args.until, "--until") if args.until else None
    amend = [_amendment(text) for text in args.amend]
    with database() as conn, progress(f"re-running into {args.as_name}", "inputs") as update:
        generation, replayed = rerun_into(conn, source, args.program or "program",
                                          args.as_name, until, update, amend)  # fmt: skip
    log.get("rerun").info(
        "replayed", generation=generation.name, inputs=replayed.inputs,
        through_arrival=replayed.arrival, seconds=round(replayed.seconds, 3),
    )  # fmt: skip
    name = generation.name
    promote_hint = "" if generation.until_at else f", make it live with `loyalty promote {name}`"
    print(f"generation {name}: {replayed.inputs} inputs replayed; "
          f"compare it with `loyalty compare live {name}`{promote_hint}")  # fmt: skip
    return 0


def _preview(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin import compare as comparing
    from loyalty_ledger.generations.preview import preview, processes_default
    from loyalty_ledger.projectors import runner

    source = read_program(args.program) if args.program else None
    until = instant(args.until, "--until") if args.until else None
    amend = [_amendment(text) for text in args.amend]
    with database() as conn:
        with progress("previewing a re-run", "inputs") as update:
            found = preview(conn, source, args.program or "program", until, update, amend,
                            args.processes or processes_default())  # fmt: skip
        runner.catch_up(conn)  # the live side as of its last batch
        result = comparing.against_preview(conn, found.parent, found, args.limit or 20)
    log.get("rerun").info(
        "previewed", inputs=found.tally.inputs, through_arrival=found.arrival,
        seconds=round(found.seconds, 3),
    )  # fmt: skip
    if args.json:
        print(json.dumps(comparing.as_json(result), indent=1))
        return 0
    until_text = f" up to {found.until_at.isoformat()}" if found.until_at else ""
    print(f"preview: {found.tally.inputs:,} inputs of {found.parent}{until_text} decided in "
          f"{found.seconds:.1f} s ({_processes(found.processes)}), nothing written; "
          "`loyalty rerun --as NAME` with the same options makes it a generation "
          "to promote\n")  # fmt: skip
    write_comparison(result, sys.stdout)
    return 0


def _processes(n: int) -> str:
    return "1 process" if n == 1 else f"{n} processes"


def _amendment(text: str) -> tuple[datetime, str, str]:
    """FILE@INSTANT: the amendment's (effective_at, source, path)."""
    path, at, when = text.rpartition("@")
    if not at or not path:
        raise UsageError(
            f"--amend {text!r}: write it FILE@INSTANT, like new.toml@2027-01-01T00:00:00+01:00"
        )
    return instant(when, "--amend"), read_program(path), path


def add_promote(sub: Commands[Parser]) -> None:
    """`loyalty promote NAME`: make a re-run generation live."""
    p = sub.add_parser("promote", help="make a re-run generation live, atomically")
    p.add_argument("name")
    p.set_defaults(run=promote)


def promote(args: argparse.Namespace) -> int:
    from loyalty_ledger.generations.promote import promote as promote_generation

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
        write_comparison(result, sys.stdout)
    return 0


# ------------------------------------------------------------------ text


def write_comparison(comparison: Comparison, out: TextIO) -> None:
    """Two generations' totals side by side with the change, then the customers that differ."""
    a, b = comparison.a, comparison.b
    rows: list[tuple[str, str, str, str]] = [
        ("", a.generation, b.generation, "change"),
        ("program", (a.program_hash or "-")[:12], (b.program_hash or "-")[:12], ""),
        ("status", a.status, b.status, ""),
    ]
    for label in ("customers", "earned", "redeemed", "reversed", "expired", "outstanding",
                  "rewards_issued", "adjusted", "transferred_in", "transferred_out", "pending",
                  "membership_fees"):  # fmt: skip
        rows.append(_number_row(label.replace("_", " "), getattr(a, label), getattr(b, label)))
    rows += _section("customers per tier", a.tiers, b.tiers)
    rows += _section("rewards issued, by reward", a.rewards, b.rewards)
    rows += _section("rejected inputs", a.rejected, b.rejected)
    rows += _versions(a.versions, b.versions)
    _table(rows, out)
    out.write(
        f"\n{comparison.customers_different:,} customers differ in balance or tier"
        + (", the largest differences:\n" if comparison.largest_differences else "\n")
    )
    if comparison.largest_differences:
        diff_rows = [("customer", f"balance {a.generation}", f"balance {b.generation}", "tier")]
        for d in comparison.largest_differences:
            tier_a, tier_b = d.tier_a or "-", d.tier_b or "-"
            tier = tier_a if tier_a == tier_b else f"{tier_a} -> {tier_b}"
            diff_rows.append((d.customer_id, _n(d.balance_a), _n(d.balance_b), tier))
        _table(diff_rows, out)


def _versions(a: dict[str, str], b: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """The program versions of each side, by effective_at: the hash of each, or '-'."""
    rows = [("program versions", "", "", "")]
    for label in sorted(a.keys() | b.keys(), key=lambda k: "" if k == "original" else k):
        x, y = a.get(label, "-")[:12], b.get(label, "-")[:12]
        rows.append((f"  {label}", x, y, "" if x == y else "differs"))
    return rows


def _number_row(label: str, x: int | Decimal, y: int | Decimal) -> tuple[str, str, str, str]:
    return (label, f"{x:,}", f"{y:,}", _change(x, y))


def _section(title: str, xs: dict[str, int], ys: dict[str, int]) -> list[tuple[str, str, str, str]]:
    keys = sorted(set(xs) | set(ys))
    rows = [(title, "", "", "")]
    rows += [_number_row(f"  {k}", xs.get(k, 0), ys.get(k, 0)) for k in keys]
    return rows


def _change(x: int | Decimal, y: int | Decimal) -> str:
    if x == y:
        return ""
    delta = f"{y - x:+,}"
    return f"{delta} ({(y - x) / x:+.1%})" if x else delta


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _table(rows: list[tuple[str, str, str, str]], out: TextIO) -> None:
    rows = [(printable(w), printable(x), printable(y), printable(z)) for w, x, y, z in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        out.write(
            f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip() + "\n"
        )
