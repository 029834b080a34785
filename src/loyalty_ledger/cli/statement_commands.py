"""`loyalty statement CUSTOMER`: one customer's entries with their causes, balance, lots and
expiries, as aligned text (every cell escaped) or one JSON object."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from loyalty_ledger.cli.arguments import Commands, Parser
from loyalty_ledger.cli.resources import database
from loyalty_ledger.ledger.entries import Kind
from loyalty_ledger.text import printable

if TYPE_CHECKING:
    from loyalty_ledger.admin.statement import Entry, Statement


def add_statement(sub: Commands[Parser]) -> None:
    """`loyalty statement CUSTOMER`: one customer's entries, balance, lots, expiries."""
    p = sub.add_parser("statement", help="one customer's entries, causes, balance, lots, expiries")
    p.add_argument("customer_id")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.add_argument("--generation", metavar="NAME", help="read this generation (default: live)")
    p.set_defaults(run=statement)


def statement(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin import statement as statements

    with database() as conn:
        done = statements.statement(conn, args.customer_id, args.generation)
    (write_json if args.json else write_text)(done, sys.stdout)
    return 0


def write_json(done: Statement, out: TextIO) -> None:
    """The statement as one JSON object on one line."""
    from loyalty_ledger.admin.statement import to_json

    out.write(json.dumps(to_json(done), ensure_ascii=False) + "\n")


# ------------------------------------------------------------------ text

_HEADINGS = ("seq", "occurred at (UTC)", "kind", "points", "balance", "cause", "input", "reason",
             "program", "details")  # fmt: skip
_RIGHT = {"seq", "points", "balance"}


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


# How the ref, amount and expires_at of version 2's entries read (ledger/entries.py):
# a pending amount's expires_at is when it matures, a membership's when it ends.
_REF_WORD = {
    Kind.transfer_out: "to", Kind.transfer_in: "from", Kind.campaign_applied: "campaign",
    Kind.membership_started: "plan", Kind.membership_renewed: "plan",
    Kind.membership_ended: "plan", Kind.pending_created: "order", Kind.pending_matured: "order",
    Kind.pending_cancelled: "order",
}  # fmt: skip
_AMOUNT_WORD = {
    Kind.campaign_applied: "points added", Kind.membership_started: "paid",
    Kind.membership_renewed: "paid",
}  # fmt: skip
_PENDING = {
    Kind.pending_created: "pending", Kind.pending_matured: "matured",
    Kind.pending_cancelled: "cancelled",
}  # fmt: skip
_EXPIRES_WORD = {
    Kind.pending_created: "matures", Kind.membership_started: "ends",
    Kind.membership_renewed: "ends", Kind.membership_ended: "ended",
}  # fmt: skip


def _details(entry: Entry) -> str:
    row = entry.row
    kind = Kind(row.kind)
    parts = []
    if row.tier_from or row.tier_to:
        parts.append(f"tier {row.tier_from or '-'} -> {row.tier_to or '-'}")
    if row.reward:
        parts.append(f"reward {row.reward}")
    if row.ref and kind != Kind.rejected:  # a rejection's ref is the input's type
        parts.append(f"{_REF_WORD.get(kind, 'ref')} {row.ref}")
    if kind in _PENDING:  # outside the balance: the points column says 0
        parts.append(f"{row.points} points {_PENDING[kind]}")
    if row.amount is not None:
        parts.append(f"{_AMOUNT_WORD.get(kind, 'amount')} {row.amount}")
    if row.expires_at is not None:
        parts.append(f"{_EXPIRES_WORD.get(kind, 'expires')} {_when(row.expires_at)}")
    return ", ".join(parts)


def _cells(entry: Entry) -> tuple[str, ...]:
    row = entry.row
    points = f"{entry.points:+d}" if entry.points else "0"
    return (
        str(row.seq), _when(row.occurred_at), row.kind, points, str(entry.balance),
        row.cause or "", f"{row.event_type or '?'} {row.event_id}", row.reason or "",
        (row.program_hash or "")[:12], _details(entry),
    )  # fmt: skip


def aligned(headings: Sequence[str], rows: Sequence[Sequence[str]], right: set[str]) -> list[str]:
    """Rows as text columns, two spaces apart; columns named in `right` align right; every
    cell escaped (ids, refs and reasons come from inputs)."""
    rows = [[printable(c) for c in r] for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headings)]

    def line(cells: Sequence[str]) -> str:
        padded = (
            c.rjust(w) if h in right else c.ljust(w)
            for c, w, h in zip(cells, widths, headings, strict=True)
        )
        return "  ".join(padded).rstrip()

    return [line(headings), *(line(r) for r in rows)]


def write_text(done: Statement, out: TextIO) -> None:
    """Heading, balance, the entries as aligned columns, the open lots, upcoming expiries."""
    out.write(f"statement of {printable(done.customer_id)} (generation {done.generation})\n")
    out.write(f"balance {done.balance}, debt {done.debt}, tier {printable(done.tier or '-')}\n\n")
    for text in aligned(_HEADINGS, [_cells(e) for e in done.entries], _RIGHT):
        out.write(text + "\n")
    out.write("\nopen lots\n")
    if not done.lots:
        out.write("  none\n")
    else:
        lots = [(str(lot.n), str(lot.remaining), _when(lot.expires_at) if lot.expires_at
                 else "never") for lot in done.lots]  # fmt: skip
        for text in aligned(("lot", "points", "expires (UTC)"), lots, {"lot", "points"}):
            out.write("  " + text + "\n")
    out.write("\nupcoming expiries\n")
    rows = [(_when(e.expires_at), str(e.points)) for e in done.expiries]
    rows.append(("total", str(done.expiring_total)))
    for text in aligned(("expires (UTC)", "points"), rows, {"points"}):
        out.write("  " + text + "\n")
