"""`loyalty program show | diff | amend | history`: the live generation's program versions.

An amendment changes the program from an instant on (PROGRAM.md "Amendments"); a re-run
(`loyalty rerun`) changes it from the first event. See README "Changing your program".
"""

from __future__ import annotations

import argparse
import getpass
import os
from typing import Any

from loyalty_ledger.cli.arguments import Commands, Parser, instant, read_program
from loyalty_ledger.cli.resources import database
from loyalty_ledger.text import printable


def add_program(sub: Commands[Parser]) -> None:
    """`loyalty program ...`: show, diff, amend, history."""
    p = sub.add_parser("program", help="the program's versions: show, diff, amend, history")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="the versions in force: effective_at, hash, name")
    show.set_defaults(run=run_show)
    diff = actions.add_parser("diff", help="what a program file would change, section by section")
    diff.add_argument("path", help="the program TOML")
    diff.set_defaults(run=run_diff)
    amend = actions.add_parser("amend", help="change the program from an instant on")
    amend.add_argument("path", help="the whole new program TOML (not a patch)")
    amend.add_argument("--effective-at", required=True, metavar="INSTANT",
                       help="RFC 3339 with offset; after every input already applied")  # fmt: skip
    amend.set_defaults(run=run_amend)
    history = actions.add_parser("history", help="every version, who recorded it and when")
    history.set_defaults(run=run_history)


def _who() -> str:
    # Who recorded an amendment: the operator's login (no PII beyond what the OS names).
    try:
        return os.environ.get("LOYALTY_OPERATOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def run_show(args: argparse.Namespace) -> int:
    from loyalty_ledger.generations import amendments

    with database() as conn:
        versions = amendments.versions(conn)
    if not versions:
        print("no program yet: the first `loyalty ingest --program PATH` stores one")
        return 0
    for v in versions:
        print(f"{v.label}\t{v.program_hash[:12]}\t{printable(v.name)}")
    return 0


def run_history(args: argparse.Namespace) -> int:
    from loyalty_ledger.generations import amendments

    with database() as conn:
        versions = amendments.versions(conn)
    for v in versions:
        who = "adopted by the first ingest" if v.recorded_by is None else printable(v.recorded_by)
        print(f"{v.label}\t{v.program_hash[:12]}\t{printable(v.name)}\t"
              f"recorded {v.recorded_at.isoformat()}\t{who}")  # fmt: skip
    return 0


def run_amend(args: argparse.Namespace) -> int:
    from loyalty_ledger.generations import amendments

    source = read_program(args.path)
    effective_at = instant(args.effective_at, "--effective-at")
    with database() as conn:
        done = amendments.amend(conn, source, args.path, effective_at, _who())
    v = done.version
    if done.new:
        print(f"amended: {printable(v.name)} ({v.program_hash[:12]}) in force from {v.label}")
    else:
        print(f"unchanged: {printable(v.name)} ({v.program_hash[:12]}) is already in force "
              f"from {v.label}")  # fmt: skip
    return 0


def run_diff(args: argparse.Namespace) -> int:
    from loyalty_ledger.generations import amendments
    from loyalty_ledger.program import parse_program

    new = parse_program(read_program(args.path), args.path)
    with database() as conn:
        sources = amendments.sources(conn)
    if not sources:
        print("no program yet: everything is new")
        return 0
    at, current_source = sources[-1]
    current = parse_program(current_source, "stored program")
    label = "the original" if at is None else f"the version from {at.isoformat()}"
    changes = differences(current.model_dump(mode="json"), new.model_dump(mode="json"))
    if not changes:
        print(f"no change from {label}")
        return 0
    print(f"changes from {label}:")
    for line in changes:
        print(f"  {printable(line)}")
    return 0


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Lines naming each value that differs, by its TOML-like path (sections first)."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines: list[str] = []
        for key in sorted(set(old) | set(new)):
            where = f"{path}.{key}" if path else f"[{key}]"
            if key not in old:
                lines.append(f"{where}: added {_show(new[key])}")
            elif key not in new:
                lines.append(f"{where}: removed")
            else:
                lines += differences(old[key], new[key], where)
        return lines
    if isinstance(old, list) and isinstance(new, list) and _keyed(old) and _keyed(new):
        return differences(_by_id(old), _by_id(new), path)
    if old != new:
        return [f"{path}: {_show(old)} -> {_show(new)}"]
    return []


def _keyed(items: list[Any]) -> bool:
    # [[campaigns]], [[rewards]], [[tiers.levels]]...: compared by id (or name), not position
    return all(isinstance(i, dict) and ("id" in i or "name" in i) for i in items)


def _by_id(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {str(i.get("id", i.get("name"))): i for i in items}


def _show(value: Any) -> str:
    if value is None or value == [] or value == {}:
        return "(none)"
    return str(value)
