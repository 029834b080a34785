"""Re-runs into new generations, and promotion: the live one untouched until it is replaced."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from conftest import PgServer, twin_database
from loyalty_ledger.admin import exports
from loyalty_ledger.admin.compare import compare
from loyalty_ledger.generations import catalog as generations
from loyalty_ledger.generations.catalog import GenerationError
from loyalty_ledger.generations.promote import promote
from loyalty_ledger.generations.rerun import rerun
from loyalty_ledger.projectors import runner
from loyalty_ledger.store.db import connect
from support import CASES, LOYALTY, export, ingest, median_instant, run

CASE = CASES[4]  # tiers, expiry, returns, redemptions, ticks
RICHER = (
    (CASE / "program.toml")
    .read_text()
    .replace('points_per_unit = "0.02"', 'points_per_unit = "0.03"')
)
assert (CASE / "program.toml").read_text() != RICHER


def _dump(url: str, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row a generation holds that a replay must reproduce."""
    queries = {
        "ledger": "SELECT * FROM {} ORDER BY seq",
        "inbox": "SELECT event_id, source, position, event_type, customer_id, occurred_at, "
        "outcome, reason, body_hash, raw FROM {} ORDER BY arrival",
        "customer_state": "SELECT customer_id, version, state, next_due_at FROM {} "
        "ORDER BY customer_id",
        "ticks": "SELECT * FROM {} ORDER BY stream, n",
        "balance": "SELECT * FROM {} ORDER BY customer_id",
        "tier": "SELECT * FROM {} ORDER BY customer_id",
        "customer_value": "SELECT * FROM {} ORDER BY customer_id",
    }
    with connect(url) as conn:
        return {
            table: conn.execute(
                sql.SQL(query).format(sql.Identifier(schema, table))  # type: ignore[arg-type]
            ).fetchall()
            for table, query in queries.items()
        }


def _rerun(url: str, program: str, name: str, **kwargs: Any) -> generations.Generation:
    with connect(url) as conn:
        generation, _ = rerun(conn, program, "test program", name, kwargs.get("until"))
        return generation


def _exports_of(url: str, name: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    with connect(url, schema=generations.schema_of(name)) as conn:
        runner.catch_up(conn)
        return list(exports.customers(conn)), exports.summary(conn)


def test_rerun_under_the_same_program_reproduces_the_live_generation(database_url: str) -> None:
    ingest(database_url, CASE / "events.jsonl", CASE / "program.toml")
    _rerun(database_url, (CASE / "program.toml").read_text(), "again")
    live, again = _dump(database_url, "gen_main"), _dump(database_url, "gen_again")
    assert live["ledger"], "the case has entries"
    for table in live:
        assert again[table] == live[table], table  # hashes and seqs included


def test_rerun_under_a_changed_program_equals_a_fresh_ingest_under_it(
    database_url: str, pg_server: PgServer, template_db: str, tmp_path: Path
) -> None:
    ingest(database_url, CASE / "events.jsonl", CASE / "program.toml")
    before = _dump(database_url, "gen_main")
    _rerun(database_url, RICHER, "richer")
    program = tmp_path / "richer.toml"
    program.write_text(RICHER)
    with twin_database(pg_server, template_db) as fresh:
        ingest(fresh, CASE / "events.jsonl", program)
        assert _exports_of(database_url, "richer") == export(fresh)
    assert _exports_of(database_url, "richer") != export(database_url)  # it did change things
    assert _dump(database_url, "gen_main") == before  # the live generation was only read


def test_rerun_until_replays_only_inputs_up_to_that_instant(database_url: str) -> None:
    ingest(database_url, CASE / "events.jsonl", CASE / "program.toml")
    before = _dump(database_url, "gen_main"), export(database_url)
    until = median_instant(database_url)
    _rerun(database_url, RICHER, "early", until=until)
    with connect(database_url) as conn:
        later = conn.execute(
            "SELECT count(*) FROM gen_early.inbox WHERE occurred_at > %s", (until,)
        ).fetchone()
        fewer = conn.execute(
            "SELECT (SELECT count(*) FROM gen_early.inbox) < (SELECT count(*) FROM gen_main.inbox)"
        ).fetchone()
        assert later == (0,) and fewer == (True,)
        compare(conn, "live", "early")
        with pytest.raises(GenerationError, match="what-if"):
            promote(conn, "early")
        assert generations.live(conn).name == "main"
    # the live generation was only read: by the re-run, the compare and the failed promote
    assert (_dump(database_url, "gen_main"), export(database_url)) == before


def test_rerun_resumes_where_it_stopped_and_refuses_another_program(database_url: str) -> None:
    ingest(database_url, CASE / "events.jsonl", CASE / "program.toml")
    _candidate(database_url, "half")  # as a re-run killed before its first batch leaves it
    with connect(database_url) as conn, pytest.raises(GenerationError, match="another program"):
        rerun(conn, (CASE / "program.toml").read_text(), "p", "half", None)
    _rerun(database_url, RICHER, "half")
    _rerun(database_url, RICHER, "richer")
    assert _dump(database_url, "gen_half") == _dump(database_url, "gen_richer")


def _candidate(url: str, name: str) -> None:
    with connect(url) as conn:
        conn.execute("INSERT INTO programs (hash, name, source) VALUES (%s, 'x', %s) "
                     "ON CONFLICT DO NOTHING", (_hash(RICHER), RICHER))  # fmt: skip
        generations.create(conn, name, _hash(RICHER), generations.live(conn), None)


def _hash(source: str) -> str:
    from loyalty_ledger.program import program_hash

    return program_hash(source)


def test_compare_reports_the_change(database_url: str) -> None:
    ingest(database_url, CASE / "events.jsonl", CASE / "program.toml")
    _rerun(database_url, RICHER, "richer")
    with connect(database_url) as conn:
        result = compare(conn, "live", "richer")
        same = compare(conn, "live", "main")
    assert result.a.generation == "main" and result.b.generation == "richer"
    assert result.b.earned > result.a.earned
    assert result.customers_different > 0
    first = result.largest_differences[0]
    assert first.balance_a != first.balance_b
    gaps = [abs((d.balance_b or 0) - (d.balance_a or 0)) for d in result.largest_differences]
    assert gaps == sorted(gaps, reverse=True)
    assert same.customers_different == 0 and same.a == same.b


def test_promote_switches_the_live_views_and_later_ingests(
    database_url: str, tmp_path: Path
) -> None:
    half = tmp_path / "half.jsonl"
    lines = (CASE / "events.jsonl").read_text().splitlines(keepends=True)
    half.write_text("".join(lines[: len(lines) // 2]))
    ingest(database_url, half, CASE / "program.toml")
    _rerun(database_url, RICHER, "richer")
    ingest(database_url, CASE / "events.jsonl", None)  # the live one goes on meanwhile
    old = _dump(database_url, "gen_main")
    with connect(database_url) as conn:
        promote(conn, "richer")
        assert generations.live(conn).name == "richer"
        assert [g.status for g in generations.listing(conn)] == ["retired", "live"]
    assert _dump(database_url, "gen_main") == old
    # every input of the live inbox, the ones that came after the re-run included
    assert [row[:3] for row in _dump(database_url, "gen_richer")["inbox"]] == [
        row[:3] for row in old["inbox"]
    ]
    with connect(database_url) as conn:
        live_view = conn.execute("SELECT count(*), sum(balance) FROM live.customers").fetchone()
        richer = conn.execute("SELECT count(*), sum(balance) FROM gen_richer.customers").fetchone()
        assert live_view == richer
        # connections made after the promotion work on the new live generation
        assert conn.execute("SELECT current_schema()").fetchone() == ("gen_richer",)


def test_promote_killed_at_any_instant_leaves_one_valid_live_generation(
    database_url: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    big = tmp_path / "big.jsonl"
    _write_many_customers(big, CASE / "events.jsonl", copies=8)
    ingest(database_url, big, CASE / "program.toml")
    _candidate(database_url, "richer")
    rng = random.Random(7)
    for _ in range(4):
        process = subprocess.Popen(
            [LOYALTY, "promote", "richer"], env=cli_env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(rng.uniform(0.2, 1.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
        _assert_one_valid_live(database_url)
    done = run(["promote", "richer"], cli_env)
    if done.returncode != 0:
        assert "live already" in done.stderr
    _assert_one_valid_live(database_url)
    with connect(database_url) as conn:
        assert generations.live(conn).name == "richer"


def _assert_one_valid_live(url: str) -> None:
    with connect(url) as conn:
        statuses = conn.execute("SELECT name FROM generations WHERE status = 'live'").fetchall()
        assert len(statuses) == 1
        schema = generations.live(conn).schema_name
        shown = conn.execute("SELECT count(*), sum(balance) FROM live.customers").fetchone()
        real = conn.execute(
            sql.SQL("SELECT count(*), sum(balance) FROM {}").format(
                sql.Identifier(schema, "customers")
            )
        ).fetchone()
        assert shown == real


def _write_many_customers(out: Path, source: Path, copies: int) -> None:
    """The case's stream, `copies` times over with other customer, order and event ids."""
    import json

    lines = [json.loads(x) for x in source.read_text().splitlines() if _is_json_object(x)]
    with out.open("w") as f:
        for copy in range(copies):
            for event in lines:
                renamed = {
                    k: (f"{v}-{copy}" if k in _ID_FIELDS and isinstance(v, str) else v)
                    for k, v in event.items()
                }
                f.write(json.dumps(renamed) + "\n")


_ID_FIELDS = {"event_id", "customer_id", "order_id", "redemption_id", "referrer_id",
              "referred_by"}  # fmt: skip


def _is_json_object(line: str) -> bool:
    import json

    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def test_the_commands_print_text_and_json(
    database_url: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    import json

    ingest(database_url, CASE / "events.jsonl", CASE / "program.toml")
    program = tmp_path / "richer.toml"
    program.write_text(RICHER)
    done = run(["rerun", "--program", str(program), "--as", "richer"], cli_env)
    assert done.returncode == 0, done.stderr
    assert "loyalty promote richer" in done.stdout
    text = run(["compare", "live", "richer", "--limit", "3"], cli_env)
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0].split() == ["main", "richer", "change"]
    assert "customers differ in balance or tier, the largest differences:" in text.stdout
    report = json.loads(run(["compare", "live", "richer", "--json"], cli_env).stdout)
    assert report["a"]["generation"] == "main" and report["b"]["status"] == "candidate"
    assert report["b"]["earned"] > report["a"]["earned"]
    assert len(report["largest_differences"]) == 20
    listed = run(["generations"], cli_env).stdout.splitlines()
    assert [line.split("\t")[:2] for line in listed] == [["main", "live"], ["richer", "candidate"]]
    bad = run(["rerun", "--program", str(program), "--as", "Bad-Name"], cli_env)
    assert bad.returncode == 2 and bad.stderr.startswith("loyalty: generation name 'Bad-Name'")
