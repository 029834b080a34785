"""Issue 10's crashes ("What crashed", items 1-3), each now a dead letter or a refusal.

Each line that once crashed `loyalty ingest` is ingested with examples/program.toml
after one valid signup: the valid line is accepted, the bad one dead-lettered with a
reason naming the field, and `export` still works. Programs that crashed the loader or
the engine are refused with one line.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from loyalty_ledger.store.db import connect
from support import cli_in_process, example_program_v1, export, ingest

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = ROOT / "examples" / "program.toml"
AT = "2026-03-01T12:00:00Z"
SIGNUP = {
    "type": "signup",
    "event_id": "s1",
    "occurred_at": AT,
    "customer_id": "c1",
    "email": "c1@example.org",
}
MONEY_DIGITS = "must have at most 12 digits before the point and 6 after"
INSTANTS = "must be from 1970-01-01T00:00:00Z to 2999-12-31T23:59:59Z"


def purchase(**fields: Any) -> dict[str, Any]:
    return {
        "type": "purchase",
        "event_id": "p1",
        "occurred_at": AT,
        "customer_id": "c1",
        "order_id": "o1",
        "currency": "EUR",
        "total": "10.00",
        **fields,
    }


def ingest_lines(url: str, tmp_path: Path, lines: list[str], program: Path = PROGRAM) -> Any:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return ingest(url, path, program)


def dead_letter_reasons(url: str) -> list[str]:
    with connect(url) as conn:
        return [reason for (reason,) in conn.execute("SELECT reason FROM dead_letters ORDER BY id")]


# --- 1. lines that crashed ingest: now dead letters --------------------------------------

CRASHING_LINES: list[tuple[str, str, str]] = [
    # (case, the line, the dead letter's reason)
    (
        "nul escape in customer_id",
        json.dumps(purchase(customer_id="c\u0000")),
        "purchase.customer_id: must not contain U+0000",
    ),
    (
        "nul escape in event_id",
        json.dumps(purchase(event_id="p\u0000")),
        "purchase.event_id: must not contain U+0000",
    ),
    (
        "nul escape in email",
        json.dumps({**SIGNUP, "event_id": "s2", "customer_id": "c2", "email": "a\u0000@b"}),
        "signup.email: must not contain U+0000",
    ),
    (
        "total beyond int64",
        json.dumps(purchase(total="9999999999999999999")),
        f"purchase.total: {MONEY_DIGITS}",
    ),
    (
        "quantity of 1e30",
        json.dumps(
            purchase(items=[{"sku": "s", "category": "c", "quantity": 10**30, "unit_price": "1"}])
        ),
        "purchase.items[0].quantity: must be <= 1000000",
    ),
    (
        "total with 20000 decimals",
        json.dumps(purchase(total="1." + "1" * 20_000)),
        f"purchase.total: {MONEY_DIGITS}",
    ),
    (
        "total of 140000 digits",
        json.dumps(purchase(total="9" * 140_000)),
        f"purchase.total: {MONEY_DIGITS}",
    ),
    (
        "purchase in year 9999",
        json.dumps(purchase(occurred_at="9999-06-01T00:00:00Z")),
        f"purchase.occurred_at: {INSTANTS}",
    ),
    (
        "signup in year 9999",
        json.dumps({**SIGNUP, "event_id": "s2", "occurred_at": "9999-12-31T00:00:00Z"}),
        f"signup.occurred_at: {INSTANTS}",
    ),
    (
        "signup in year 0001",
        json.dumps({**SIGNUP, "event_id": "s2", "occurred_at": "0001-01-01T00:00:00Z"}),
        f"signup.occurred_at: {INSTANTS}",
    ),
    (
        "tick in year 9999",
        json.dumps({"type": "tick", "event_id": "t1", "occurred_at": "9999-12-31T00:00:00Z"}),
        f"tick.occurred_at: {INSTANTS}",
    ),
    (
        "tick in year 0001",
        json.dumps({"type": "tick", "event_id": "t1", "occurred_at": "0001-01-01T00:00:00Z"}),
        f"tick.occurred_at: {INSTANTS}",
    ),
    (
        "deeply nested json",
        '{"type": "purchase", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "not json: recursion limit exceeded",
    ),
]


@pytest.mark.parametrize(
    ("line", "reason"), [row[1:] for row in CRASHING_LINES], ids=[row[0] for row in CRASHING_LINES]
)
def test_a_line_that_crashed_ingest_is_a_dead_letter(
    database_url: str, tmp_path: Path, line: str, reason: str
) -> None:
    counts = ingest_lines(database_url, tmp_path, [json.dumps(SIGNUP), line])
    assert (counts.accepted, counts.rejected, counts.dead_lettered) == (1, 0, 1)
    (found,) = dead_letter_reasons(database_url)
    assert found.startswith(reason)
    customers, summary = export(database_url)
    assert [c["customer_id"] for c in customers] == ["c1"]
    assert (summary["accepted"], summary["dead_lettered"]) == ({"signup": 1}, 1)
    # and again: the re-run resumes after the line instead of crashing on it
    again = ingest_lines(database_url, tmp_path, [json.dumps(SIGNUP), line])
    assert (again.accepted, again.dead_lettered) == (0, 0)


def test_a_bom_before_a_line_is_no_dead_letter(database_url: str, tmp_path: Path) -> None:
    counts = ingest_lines(database_url, tmp_path, ["\ufeff" + json.dumps(SIGNUP)])
    assert (counts.accepted, counts.dead_lettered) == (1, 0)


# --- 2. purchases that broke the read models ------------------------------------------------


def test_two_purchases_of_5e18_are_dead_letters(database_url: str, tmp_path: Path) -> None:
    lines = [
        json.dumps(SIGNUP),
        json.dumps(purchase(total="5000000000000000000")),
        json.dumps(purchase(event_id="p2", order_id="o2", total="5000000000000000000")),
    ]
    counts = ingest_lines(database_url, tmp_path, lines)
    assert (counts.accepted, counts.dead_lettered) == (1, 2)
    customers, _ = export(database_url)
    assert customers[0]["balance"] == 100  # the signup bonus


def test_the_largest_purchases_stop_at_the_points_limit(database_url: str, tmp_path: Path) -> None:
    """1000 points per unit: the largest total earns 999999999999999 points (1.5 times that in
    the app), so the second purchase of each customer would pass 10^15: rejected points_limit."""
    program = tmp_path / "program.toml"
    program.write_text(
        example_program_v1().replace('points_per_unit = "1"', 'points_per_unit = "1000"'),
        encoding="utf-8",
    )
    top = "999999999999.999999"
    lines = [
        json.dumps(purchase(event_id="p1", order_id="o1", total=top, channel="pos")),
        json.dumps(purchase(event_id="p2", order_id="o2", total=top, channel="pos")),
        json.dumps(purchase(event_id="p3", customer_id="c2", total=top, channel="app")),
    ]
    counts = ingest_lines(database_url, tmp_path, lines, program)
    assert (counts.accepted, counts.rejected, counts.dead_lettered) == (1, 2, 0)
    customers, summary = export(database_url)
    assert [(c["customer_id"], c["earned"]) for c in customers] == [("c1", 999999999999999)]
    assert summary["rejected"]["points_limit"] == 2
    with connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM ledger WHERE points > 10^15").fetchone() == (0,)


def test_sums_over_customers_beyond_bigint_are_numeric(database_url: str, tmp_path: Path) -> None:
    """9300 customers of 999999999999999 points each: 9.3 * 10^18 points, beyond bigint."""
    program = tmp_path / "program.toml"
    program.write_text(
        example_program_v1().replace('points_per_unit = "1"', 'points_per_unit = "1000"'),
        encoding="utf-8",
    )
    customers = 9300
    lines = [
        json.dumps(
            purchase(
                event_id=f"p{n}",
                customer_id=f"c{n}",
                total="999999999999.999999",
                channel="pos",
            )
        )
        for n in range(customers)
    ]
    counts = ingest_lines(database_url, tmp_path, lines, program)
    assert counts.accepted == customers
    earned = customers * 999999999999999
    assert earned > 2**63
    rows, _ = export(database_url)
    assert len(rows) == customers
    with connect(database_url) as conn:
        total = conn.execute(
            "SELECT points_earned, outstanding_points FROM points_liability_total"
        ).fetchone()
        assert total == (Decimal(earned), Decimal(earned))
        months = conn.execute(
            "SELECT sum(points_earned), sum(points_expiring) FROM points_liability"
        ).fetchone()
        assert months == (Decimal(earned), Decimal(earned))  # earned in March, expiring later


# --- 3. programs that crashed later, or crashed the loader: refused with one line ---------

REFUSED: list[tuple[str, str, str, str]] = [
    # (case, text in the example program, its replacement, the message's key and limit)
    (
        "bonus of 2^63 - 1",
        "bonus = 100 ",
        "bonus = 9223372036854775807 ",
        "[signup].bonus: must be 1000000000 or less",
    ),
    (
        "bonus beyond 2^63",
        "bonus = 250 ",
        f"bonus = {2**64} ",
        "[birthday].bonus: must be 1000000000 or less",
    ),
    (
        "huge points_per_unit",
        'points_per_unit = "1"',
        'points_per_unit = "1' + "0" * 40 + '"',
        "[earn].points_per_unit: must be 1000 or less",
    ),
    (
        "expiry of 200000 months",
        "months = 24",
        "months = 200000",
        "[expiry].months: must be 1200 or less",
    ),
    (
        "window of 3000000 days",
        "window_days = 365",
        "window_days = 3000000",
        "[tiers].window_days: must be 3660 or less",
    ),
    (
        "deeply nested arrays",
        'categories = ["coffee"]',
        "categories = " + "[" * 100_000 + "]" * 100_000,
        "not valid toml: arrays or inline tables nested too deeply",
    ),
    (
        "deeply nested inline tables",
        "[redemption]\n",
        "[redemption]\nx = " + "{a=" * 10_000 + "1" + "}" * 10_000 + "\n",
        "not valid toml: arrays or inline tables nested too deeply",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "message"), [row[1:] for row in REFUSED], ids=[row[0] for row in REFUSED]
)
def test_a_program_that_crashed_is_refused_with_one_line(
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    old: str,
    new: str,
    message: str,
) -> None:
    text = PROGRAM.read_text(encoding="utf-8")
    assert old in text
    program = tmp_path / "program.toml"
    program.write_text(text.replace(old, new, 1), encoding="utf-8")
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps(SIGNUP) + "\n", encoding="utf-8")
    monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)
    code, _, err = cli_in_process(["ingest", str(events), "--program", str(program)], capsys)
    assert code == 2, err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.endswith(f"{program}: {message}"), line
    with connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM ledger").fetchone() == (0,)
