"""`loyalty statement`: every entry with its cause and running balance, lots, expiries; no PII."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from loyalty_ledger.admin import statement as st
from loyalty_ledger.cli.statement_commands import write_text
from loyalty_ledger.ledger.entries import BALANCE_SIGN, Kind
from loyalty_ledger.store.db import connect
from support import CASES, V2_CASES, cli_in_process, export, ingest

LOYALTY = str(Path(sys.executable).with_name("loyalty"))
CASE = CASES[0]  # signups with PII, redemptions, returns, expiries, birthdays
CUSTOMER = "c0004"  # a return, expiries, a birthday credit, a rejection
# pending points, campaigns, adjustments, transfers and memberships, no amendments
V2_CASE = next(c for c in V2_CASES if c.name == "case-11")


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LOYALTY, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def ingested(database_url: str) -> str:
    ingest(database_url, CASE / "events.jsonl", CASE / "program.toml")
    return database_url


@pytest.mark.parametrize("case", [CASE, V2_CASE], ids=lambda c: c.name)
def test_every_entry_in_order_with_its_cause_and_running_balance(
    database_url: str, case: Path
) -> None:
    ingest(database_url, case / "events.jsonl", case / "program.toml")
    ingested = database_url
    rows, _ = export(ingested)
    balances = {r["customer_id"]: int(r["balance"]) for r in rows}
    with connect(ingested) as conn:
        for customer_id, balance in balances.items():
            done = st.statement(conn, customer_id)
            stored = conn.execute(
                "SELECT seq, kind, points FROM ledger WHERE customer_id = %s ORDER BY seq",
                (customer_id,),
            ).fetchall()
            assert [e.row.seq for e in done.entries] == [seq for seq, _, _ in stored]
            running = 0
            for entry, (_, kind, points) in zip(done.entries, stored, strict=True):
                running += BALANCE_SIGN.get(Kind(kind), 0) * points
                assert entry.points == BALANCE_SIGN.get(Kind(kind), 0) * points
                assert entry.balance == running
                assert entry.row.event_type is not None  # every cause is in the inbox
            assert done.balance == balance, customer_id
            # The engine's lots and debt agree with the ledger's conservation.
            assert sum(lot.remaining for lot in done.lots) - done.debt == balance, customer_id
            expiring = [e.expires_at for e in done.expiries]
            assert expiring == sorted(expiring)
            assert done.expiring_total == sum(
                lot.remaining for lot in done.lots if lot.expires_at is not None
            )


def test_version_2_entries_say_what_moved(database_url: str) -> None:
    ingest(database_url, V2_CASE / "events.jsonl", V2_CASE / "program.toml")
    with connect(database_url) as conn:
        kinds = {k for (k,) in conn.execute("SELECT DISTINCT kind FROM ledger")}
        for kind, words in (("pending_created", "matures "), ("transfer_out", "to "),
                            ("transfer_in", "from "), ("campaign_applied", "points added "),
                            ("membership_started", "ends ")):  # fmt: skip
            assert kind in kinds, kind
            row = conn.execute(
                "SELECT customer_id FROM ledger WHERE kind = %s LIMIT 1", (kind,)
            ).fetchone()
            assert row is not None
            out = io.StringIO()
            write_text(st.statement(conn, row[0]), out)
            line = next(x for x in out.getvalue().splitlines() if f"  {kind}  " in x)
            assert words in line, line


def test_rejections_show_their_reason_and_input(ingested: str) -> None:
    with connect(ingested) as conn:
        done = st.statement(conn, CUSTOMER)
    rejected = [e.row for e in done.entries if e.row.kind == "rejected"]
    assert rejected and all(r.reason and r.event_type == r.ref for r in rejected)
    kinds = {e.row.kind for e in done.entries}
    assert {"credit", "reversal", "expiry", "rejected"} <= kinds
    assert next(e for e in done.entries if e.row.kind == "reversal").points < 0


def test_json_and_text_hold_no_pii(ingested: str, cli_env: dict[str, str]) -> None:
    with connect(ingested) as conn:
        member = conn.execute(
            "SELECT email, name, phone, birth_date FROM members WHERE customer_id = %s",
            (CUSTOMER,),
        ).fetchone()
    assert member is not None
    pii = [v if isinstance(v, str) else v.isoformat() for v in member if v is not None]
    as_json = _run(["statement", CUSTOMER, "--json"], cli_env)
    as_text = _run(["statement", CUSTOMER], cli_env)
    assert as_json.returncode == as_text.returncode == 0, as_json.stderr + as_text.stderr
    body = json.loads(as_json.stdout)
    assert body["customer_id"] == CUSTOMER and body["generation"] == "main"
    assert body["balance"] == body["entries"][-1]["balance"]
    assert body["upcoming_expiries"]["total"] == sum(
        e["points"] for e in body["upcoming_expiries"]["expiries"]
    )
    amounts = [e["amount"] for e in body["entries"] if e["amount"] is not None]
    assert amounts and all(isinstance(a, str) for a in amounts)  # money as decimal strings
    assert all(e["occurred_at"].endswith("+00:00") for e in body["entries"])
    assert as_text.stdout.startswith(f"statement of {CUSTOMER} (generation main)\n")
    assert "upcoming expiries" in as_text.stdout
    for value in pii:
        assert value not in as_json.stdout and value not in as_text.stdout


def test_text_columns_are_aligned(ingested: str) -> None:
    with connect(ingested) as conn:
        done = st.statement(conn, CUSTOMER, "main")
    out = io.StringIO()
    write_text(done, out)
    lines = out.getvalue().splitlines()
    table = lines[lines.index("") + 1 : lines.index("open lots") - 1]
    assert len(table) == len(done.entries) + 1
    start = table[0].index("kind")
    assert all(line[start - 2 : start] == "  " for line in table)  # a column edge on every row


def test_unknown_customer_or_generation_is_one_line(
    ingested: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOYALTY_DATABASE_URL", ingested)
    for args, fragment in (
        (["statement", "c9999"], "no customer 'c9999'"),
        (["statement", CUSTOMER, "--generation", "nope"], "no generation 'nope'"),
    ):
        code, _, err = cli_in_process(args, capsys)
        assert code == 2 and err.startswith("loyalty: ") and err.count("\n") == 1, err
        assert fragment in err
