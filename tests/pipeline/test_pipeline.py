"""The file pipeline on a real PostgreSQL: idempotency, resumption, determinism, rebuilds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import PgServer, twin_database
from loyalty_ledger.events import Invalid, decode
from loyalty_ledger.projectors import runner
from loyalty_ledger.store.db import connect
from support import (
    CASES,
    assert_matches,
    export,
    ingest,
    ledger_dump,
    projections_dump,
)

CASE = CASES[3]  # returns, debt, tiers and late arrivals


def _copy(tmp_path: Path, lines: list[str], name: str = "events.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _lines(case: Path = CASE) -> list[str]:
    return (case / "events.jsonl").read_text(encoding="utf-8").splitlines()


def test_second_ingest_of_the_same_file_changes_nothing(database_url: str) -> None:
    ingest(database_url, CASE / "events.jsonl", CASE / "program.toml")
    with connect(database_url) as conn:
        before = ledger_dump(conn), export(database_url)
    again = ingest(database_url, CASE / "events.jsonl", None)
    assert (again.accepted, again.rejected, again.dead_lettered) == (0, 0, 0)
    with connect(database_url) as conn:
        assert (ledger_dump(conn), export(database_url)) == before


@pytest.mark.parametrize("cut", [1, 250, 999, 1868])
def test_a_prefix_then_the_whole_file_equals_one_run(
    cut: int, database_url: str, tmp_path: Path
) -> None:
    lines = _lines()
    path = _copy(tmp_path, lines[:cut])
    ingest(database_url, path, CASE / "program.toml", batch_size=64)
    ingest(database_url, path, None, batch_size=64)  # the prefix twice
    _copy(tmp_path, lines)  # the file grows, as a log does
    ingest(database_url, path, None, batch_size=64)
    assert_matches(CASE, *export(database_url))


def test_forgotten_position_replays_as_duplicates_only(database_url: str) -> None:
    ingest(database_url, CASE / "events.jsonl", CASE / "program.toml")
    with connect(database_url) as conn:
        before = ledger_dump(conn)
        conn.execute("DELETE FROM source_positions")
    again = ingest(database_url, CASE / "events.jsonl", None)
    assert again.accepted == again.rejected == 0
    with connect(database_url) as conn:
        assert ledger_dump(conn) == before
    assert_matches(CASE, *export(database_url))


def test_a_resent_event_with_another_body_is_counted(database_url: str, tmp_path: Path) -> None:
    first = json.loads(_lines()[0])
    changed = {**first, "total": "1.00"}
    path = _copy(tmp_path, [json.dumps(first), json.dumps(first), json.dumps(changed)])
    counts = ingest(database_url, path, CASE / "program.toml")
    assert (counts.accepted, counts.duplicates) == (1, 2)
    _, summary = export(database_url)
    assert (summary["duplicates"], summary["duplicates_with_other_body"]) == (2, 1)


@pytest.mark.parametrize("case", [CASES[0], CASES[5]], ids=lambda c: c.name)
def test_the_same_stream_gives_a_byte_identical_ledger(
    case: Path, database_url: str, pg_server: PgServer, tmp_path: Path
) -> None:
    ingest(database_url, case / "events.jsonl", case / "program.toml", batch_size=5000)
    with connect(database_url) as conn:
        first_ledger, first_projections = ledger_dump(conn), projections_dump(conn)
    # The same stream again, from another file, in other batches, into a second database.
    copy = tmp_path / "again.jsonl"
    shutil.copy(case / "events.jsonl", copy)
    with twin_database(pg_server) as twin:
        ingest(twin, copy, case / "program.toml", batch_size=37)
        with connect(twin) as conn:
            assert ledger_dump(conn) == first_ledger
            assert projections_dump(conn) == first_projections


def test_rebuild_gives_identical_projections(database_url: str) -> None:
    ingest(database_url, CASE / "events.jsonl", CASE / "program.toml", batch_size=100)
    with connect(database_url) as conn:
        before = projections_dump(conn)
        runner.rebuild(conn)
        assert projections_dump(conn) == before
        runner.rebuild(conn, ("tier",))
        assert projections_dump(conn) == before


@pytest.mark.parametrize(
    "statement",
    ["UPDATE ledger SET points = points + 1", "DELETE FROM ledger", "TRUNCATE ledger"],
)
def test_the_database_refuses_to_change_the_ledger(database_url: str, statement: str) -> None:
    ingest(database_url, CASES[0] / "events.jsonl", CASES[0] / "program.toml")
    with connect(database_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


def test_conservation_holds_in_the_ledger_for_every_customer(database_url: str) -> None:
    for case in (CASES[1], CASES[3]):
        ingest(database_url, case / "events.jsonl", case / "program.toml")
        with connect(database_url) as conn:
            broken = conn.execute(
                "SELECT l.customer_id FROM ledger l JOIN customer_state s USING (customer_id) "
                "GROUP BY l.customer_id, s.state HAVING "
                "sum(CASE kind WHEN 'credit' THEN points WHEN 'redemption' THEN -points "
                "WHEN 'reversal' THEN -points WHEN 'expiry' THEN -points ELSE 0 END) <> "
                "(SELECT coalesce(sum((lot->>0)::bigint), 0) "
                "FROM jsonb_array_elements(s.state->'lots') lot)"
                " - (s.state->>'debt')::bigint"
            ).fetchall()
            assert broken == []
            # next case, next program: same database
            conn.execute("UPDATE generations SET program_hash = NULL")


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_property_any_prefix_twice_then_the_rest_equals_one_run(
    data: st.DataObject,
    pg_server: PgServer,
    template_db: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    case = CASES[7]
    lines = _lines(case)
    cut = data.draw(st.integers(0, len(lines)), label="cut")
    batch_size = data.draw(st.integers(40, 2000), label="batch_size")
    folder = tmp_path_factory.mktemp("prefix")
    with twin_database(pg_server, template_db) as url:
        path = _copy(folder, lines[:cut])
        ingest(url, path, case / "program.toml", batch_size=batch_size)
        ingest(url, _copy(folder, lines[:cut], "again.jsonl"), None, batch_size=batch_size)
        ingest(url, path, None, batch_size=batch_size)
        _copy(folder, lines)
        ingest(url, path, None, batch_size=batch_size)
        rows, summary = export(url)
        summary["dead_lettered"] -= sum(  # the copy's dead letters are its own inputs
            1 for line in lines[:cut] if isinstance(decode(line), Invalid)
        )
        assert_matches(case, rows, summary)


def test_an_erased_birth_date_leaves_the_cache_and_never_comes_back(database_url: str) -> None:
    from loyalty_ledger.admin.erasure import erase
    from loyalty_ledger.engine import compile_rules
    from loyalty_ledger.generations import programs
    from loyalty_ledger.pipeline import Pipeline
    from loyalty_ledger.sources.line import Line

    case = CASES[0]
    lines = (case / "events.jsonl").read_bytes().splitlines()
    with connect(database_url) as conn:
        program = programs.adopt(conn, (case / "program.toml").read_text(), "program")
        pipeline = Pipeline(conn, compile_rules(program))
        signup = next(i for i, raw in enumerate(lines) if b'"c0004"' in raw and b"birth" in raw)
        batches = [lines[: signup + 1], lines[signup + 1 :]]
        try:
            pipeline.process([Line("file:x", i, raw) for i, raw in enumerate(batches[0])],
                             lambda _conn: None)  # fmt: skip
            assert pipeline.cache["c0004"].birth_date is not None
            erase(conn, "c0004")
            later = [Line("file:x", len(batches[0]) + i, raw) for i, raw in enumerate(batches[1])]
            pipeline.process(later, lambda _conn: None)
            assert "c0004" not in pipeline.cache or pipeline.cache["c0004"].birth_date is None
        finally:
            pipeline.close()
        stored = conn.execute(
            "SELECT state->>'birth_date' FROM customer_state WHERE customer_id = 'c0004'"
        ).fetchone()
        assert stored == (None,)
