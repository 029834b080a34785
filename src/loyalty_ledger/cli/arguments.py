"""What every command's arguments share: the parser whose errors are one line, the
range-checked number types, RFC 3339 instants and program files.

A bad value is refused here, before any database or broker is reached: one line on
stderr naming the fix, exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import NoReturn

from loyalty_ledger.errors import UserError


class UsageError(UserError):
    """Something the user can fix on the command line."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line naming the fix (no usage block), exit 2."""

    def error(self, message: str) -> NoReturn:
        print(f"loyalty: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


# argparse names no public type for the object add_subparsers returns.
Commands = argparse._SubParsersAction


def count(low: int, high: int) -> Callable[[str], int]:
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


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds, 0 to a year."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number of seconds") from None
    if not 0 <= value <= 366 * 86_400:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is out of range: use 0 to 31622400")
    return value


BATCH = count(1, 1_000_000)  # a batch is held in memory whole
LIMIT = count(1, 1_000_000_000)
ID = count(1, 2**63 - 1)  # bigint identities
OFFSET = count(0, 2**63 - 1)
PARTITION = count(0, 1_000_000)


def instant(text: str, flag: str) -> datetime:
    """An RFC 3339 instant with its UTC offset, or a UsageError naming `flag`."""
    example = "write it like 2026-03-01T00:00:00+01:00 or 2026-03-01T00:00Z"
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not an RFC 3339 instant: {example}") from None
    if at.utcoffset() is None:
        raise UsageError(f"{flag} {text!r} has no UTC offset: {example}")
    return at


def read_program(path: str) -> str:
    """The program TOML's text; a missing or unreadable file is the program's UserError."""
    from loyalty_ledger.program import read_program_text

    return read_program_text(Path(path))
