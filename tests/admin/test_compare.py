"""`loyalty compare` on a version 2 program: adjusted, transferred, pending points and
membership fees side by side, each side against figures computed without its read models
(the case's expected read model, or the generation's own ledger)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from psycopg import sql

from loyalty_ledger.admin.compare import Side, compare
from loyalty_ledger.generations.rerun import rerun
from loyalty_ledger.store.db import connect
from support import V2_CASES, expected, ingest, run

CASE = next(c for c in V2_CASES if c.name == "case-11")  # pending, a plan, transfers
PROGRAM = (CASE / "program.toml").read_text(encoding="utf-8")
LONGER = PROGRAM.replace("[pending]\ndays = 14", "[pending]\ndays = 30")  # points wait longer
assert LONGER != PROGRAM

# The version 2 totals summed straight off a generation's ledger, by entry kind.
LEDGER_TOTALS = sql.SQL(
    "SELECT coalesce(sum(points) FILTER (WHERE kind = 'adjustment_credit'), 0)"
    " - coalesce(sum(points) FILTER (WHERE kind = 'adjustment_debit'), 0),"
    " coalesce(sum(points) FILTER (WHERE kind = 'transfer_in'), 0),"
    " coalesce(sum(points) FILTER (WHERE kind = 'transfer_out'), 0),"
    " coalesce(sum(points) FILTER (WHERE kind = 'pending_created'), 0)"
    " - coalesce(sum(points) FILTER (WHERE kind IN ('pending_matured', 'pending_cancelled')), 0),"
    " coalesce(sum(amount) FILTER (WHERE kind IN ('membership_started', 'membership_renewed')),"
    " 0) FROM {}"
)


def version2(side: Side) -> tuple[Any, ...]:
    return (side.adjusted, side.transferred_in, side.transferred_out, side.pending,
            side.membership_fees)  # fmt: skip


def cells(text: str, label: str) -> list[str]:
    """The values printed on the row `label` of compare's table."""
    (found,) = [line for line in text.splitlines() if line.startswith(f"{label}  ")]
    return found[len(label) :].split()


def test_compare_shows_the_version_2_totals(cli_env: dict[str, str]) -> None:
    url = cli_env["LOYALTY_DATABASE_URL"]
    ingest(url, CASE / "events.jsonl", CASE / "program.toml")
    with connect(url) as conn:
        rerun(conn, LONGER, "longer pending", "longer", None)
        result = compare(conn, "live", "longer")
        row = conn.execute(LEDGER_TOTALS.format(sql.Identifier("gen_longer", "ledger"))).fetchone()
    rows, _ = expected(CASE)
    want = tuple(sum(int(r[k]) for r in rows)
                 for k in ("adjusted", "transferred_in", "transferred_out", "pending"))  # fmt: skip
    fees = sum(Decimal(r["membership_fees"]) for r in rows)
    assert version2(result.a) == (*want, fees)
    assert all(want) and fees > 0, "the case must use every version 2 total"
    assert row is not None and version2(result.b) == tuple(row)
    assert result.b.pending != result.a.pending
    text = run(["compare", "live", "longer"], cli_env)
    assert text.returncode == 0, text.stderr
    assert cells(text.stdout, "pending")[:2] == [f"{result.a.pending:,}", f"{result.b.pending:,}"]
    fees_b = result.b.membership_fees
    assert cells(text.stdout, "membership fees")[:2] == [f"{fees:,}", f"{fees_b:,}"]
    assert cells(text.stdout, "transferred out")[0] == f"{want[2]:,}"
    report = json.loads(run(["compare", "live", "longer", "--json"], cli_env).stdout)
    assert report["a"]["membership_fees"] == str(fees)  # money as a decimal string
    assert report["a"]["adjusted"] == want[0] and report["b"]["pending"] == result.b.pending
