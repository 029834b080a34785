"""`loyalty verify` passes a sound ledger and names the first row changed behind its back."""

from __future__ import annotations

from pathlib import Path

import pytest

from loyalty_ledger.admin.verify import verify
from loyalty_ledger.ledger.chain import GENESIS, chain_start, keyed_chain
from loyalty_ledger.ledger.key import current
from loyalty_ledger.projectors import runner
from loyalty_ledger.store.db import Connection, connect
from support import CASES, V2_CASES, ingest, run

CASE = CASES[4]


@pytest.fixture
def ledger_url(database_url: str) -> str:
    ingest(database_url, CASE / "events.jsonl", CASE / "program.toml")
    with connect(database_url) as conn:
        runner.catch_up(conn)
    return database_url


def _behind_its_back(conn: Connection, statement: str, params: tuple[object, ...] = ()) -> None:
    """What a superuser can do: skip the append-only trigger for one statement."""
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(statement, params)


def test_a_sound_ledger_verifies(ledger_url: str) -> None:
    with connect(ledger_url) as conn:
        report = verify(conn)
        assert report.ok, report.problems
        assert report.entries > 1000 and report.projections >= 3


@pytest.mark.parametrize("case", V2_CASES[1:3], ids=lambda c: c.name)
def test_a_version_2_ledger_verifies_and_a_lost_transfer_breaks_conservation(
    database_url: str, case: Path
) -> None:
    ingest(database_url, case / "events.jsonl", case / "program.toml")
    with connect(database_url) as conn:
        runner.catch_up(conn)
        report = verify(conn)
        assert report.ok, report.problems
        # A transfer_out changed behind the ledger's back: the sums no longer conserve.
        row = conn.execute(
            "SELECT seq, customer_id FROM ledger WHERE kind IN ('transfer_out', 'adjustment_debit')"
            " ORDER BY seq LIMIT 1"
        ).fetchone()
        assert row is not None
        _behind_its_back(conn, "UPDATE ledger SET points = points + 1 WHERE seq = %s", (row[0],))
        problems = [p for p in verify(conn).problems if p.check == "conservation"]
        assert problems and row[1] in problems[0].where, verify(conn).problems


def test_the_chain_is_the_hashes_of_the_entries_in_seq_order(ledger_url: str) -> None:
    from loyalty_ledger.ledger.entries import COLUMNS

    with connect(ledger_url) as conn:
        rows = conn.execute(
            "SELECT hash, " + ", ".join(COLUMNS) + " FROM ledger ORDER BY seq"
        ).fetchall()
        row = conn.execute("SELECT chain_id FROM public.generations WHERE status = 'live'")
        chain_id = row.fetchone()
    assert chain_id is not None
    start = chain_start(current().secret, GENESIS, chain_id[0])
    hashes = keyed_chain(current().secret, start, [tuple(r[1:]) for r in rows])
    assert [bytes(r[0]) for r in rows] == hashes


def test_an_update_behind_its_back_is_caught_at_its_row(ledger_url: str) -> None:
    with connect(ledger_url) as conn:
        seq = conn.execute(
            "SELECT seq FROM ledger WHERE kind = 'credit' ORDER BY seq OFFSET 100 LIMIT 1"
        ).fetchone()
        assert seq is not None
        _behind_its_back(conn, f"UPDATE ledger SET points = points + 500 WHERE seq = {seq[0]}")
        report = verify(conn)
    assert not report.ok
    first = report.problems[0]
    assert first.check == "chain" and f"ledger seq {seq[0]} " in first.where
    assert any(p.check == "conservation" for p in report.problems)


def test_a_deleted_entry_breaks_the_chain_and_the_versions(ledger_url: str) -> None:
    with connect(ledger_url) as conn:
        _behind_its_back(conn, "DELETE FROM ledger WHERE seq = 50")
        report = verify(conn)
    checks = {p.check: p for p in report.problems}
    assert "ledger seq 51 " in checks["chain"].where
    assert "versions" in checks


def test_a_changed_projection_differs_from_its_rebuild(ledger_url: str) -> None:
    with connect(ledger_url) as conn:
        conn.execute(
            "UPDATE customer_value SET orders = orders + 1 "
            "WHERE customer_id = (SELECT min(customer_id) FROM customer_value)"
        )
        report = verify(conn)
    assert [p.check for p in report.problems] == ["projection"]
    assert report.problems[0].where.startswith("customer_value row (")


def test_the_command_exits_non_zero_naming_the_row(
    ledger_url: str, cli_env: dict[str, str]
) -> None:
    assert run(["verify"], cli_env).returncode == 0
    with connect(ledger_url) as conn:
        _behind_its_back(conn, "UPDATE ledger SET customer_id = 'someone' WHERE seq = 7")
    done = run(["verify"], cli_env)
    assert done.returncode == 1
    assert "broken: chain: ledger seq 7 " in done.stdout
