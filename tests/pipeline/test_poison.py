"""No poison pill: an input whose row the database refuses is dead-lettered, and the rest goes on.

The refusal is injected with a test-only trigger on the live generation's inbox that raises
for chosen event ids, as a CHECK, a too-long value or a program limit would.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from conftest import PgServer, twin_database
from loyalty_ledger.generations.catalog import FIRST, schema_of
from loyalty_ledger.kafka.settings import KafkaSettings
from loyalty_ledger.kafka.topics import create_topics
from loyalty_ledger.runtime.produce import produce_file
from loyalty_ledger.store.db import Connection, connect
from support import CASES, export, ingest, ledger_dump, run_consumer

CASE = CASES[3]  # returns, debt, tiers and late arrivals: later lines depend on earlier ones
MESSAGE = "value too long for type character varying(8)"
REASON = f"refused by the database: {MESSAGE}"


def _refuse(url: str, event_ids: Sequence[str], sqlstate: str = "22001") -> None:
    """A trigger on the inbox raising `sqlstate` for these event ids."""
    body = sql.SQL(
        "CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.event_id = ANY({ids}) THEN RAISE EXCEPTION {message} USING ERRCODE = {state}; "
        "END IF; RETURN NEW; END $$"
    ).format(
        ids=sql.Literal(list(event_ids)), message=sql.Literal(MESSAGE), state=sql.Literal(sqlstate)
    )
    with connect(url) as conn:
        conn.execute(body)
        trigger = sql.SQL(
            "CREATE TRIGGER refuse BEFORE INSERT ON {} FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
        conn.execute(trigger.format(sql.Identifier(schema_of(FIRST), "inbox")))


def _lines() -> list[bytes]:
    return (CASE / "events.jsonl").read_bytes().splitlines()


def _culprits(lines: list[bytes], n: int) -> dict[int, str]:
    """n valid purchases (1-based line -> event id) spread over the file's middle, whose
    customers have later inputs that depend on them."""
    found: dict[int, str] = {}
    for number in range(len(lines) // 3, len(lines), len(lines) // 7):
        for at in range(number, len(lines)):
            try:
                body = json.loads(lines[at])
            except ValueError:
                continue
            if body.get("type") == "purchase":
                found[at + 1] = body["event_id"]
                break
        if len(found) == n:
            return found
    raise AssertionError("the case has too few purchases")


def _reference(pg_server: PgServer, template_db: str, tmp_path: Path, culprits: dict[int, str]
               ) -> tuple[list[dict[str, Any]], dict[str, Any]]:  # fmt: skip
    """The same file with the culprits replaced by lines that are dead letters anyway."""
    lines = [b"refused" if n in culprits else line for n, line in enumerate(_lines(), 1)]
    path = tmp_path / "reference.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with twin_database(pg_server, template_db) as url:
        ingest(url, path, CASE / "program.toml")
        return export(url)


def _places(conn: Connection) -> int:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM inbox) + (SELECT count(*) FROM duplicates) + "
        "(SELECT count(*) FROM dead_letters)"
    ).fetchone()
    assert row is not None
    return int(row[0])


def _assert_dead_lettered(conn: Connection, culprits: dict[int, str], source_end: str) -> None:
    """Each culprit a dead letter with its own bytes and the database's reason."""
    letters = conn.execute(
        "SELECT source, position, raw, reason FROM dead_letters WHERE reason LIKE 'refused%' "
        "ORDER BY position"
    ).fetchall()
    lines = _lines()
    assert [(bytes(raw), reason) for *_, raw, reason in letters] == [
        (lines[n - 1], REASON) for n in sorted(culprits)
    ]
    assert all(source.endswith(source_end) for source, *_ in letters)
    if not source_end.endswith(":0"):  # a file: at their line numbers
        assert [p for _, p, *_ in letters] == sorted(culprits)
    found = conn.execute("SELECT count(*) FROM inbox WHERE event_id = ANY(%s)",
                         (list(culprits.values()),)).fetchone()  # fmt: skip
    assert found == (0,)


@pytest.mark.parametrize(("batch_size", "n"), [(1, 1), (20_000, 1), (20_000, 3), (50, 2)])
def test_a_file_goes_past_an_input_the_database_refuses(
    batch_size: int, n: int, database_url: str, tmp_path: Path, pg_server: PgServer,
    template_db: str,
) -> None:  # fmt: skip
    lines = _lines()
    culprits = _culprits(lines, n)
    _refuse(database_url, list(culprits.values()))
    counts = ingest(database_url, CASE / "events.jsonl", CASE / "program.toml", batch_size)
    want_rows, want_summary = _reference(pg_server, template_db, tmp_path, culprits)
    assert export(database_url) == (want_rows, want_summary)
    assert counts.inputs == sum(1 for line in lines if line.strip())
    assert counts.dead_lettered == want_summary["dead_lettered"]
    assert counts.accepted == sum(want_summary["accepted"].values())
    with connect(database_url) as conn:
        _assert_dead_lettered(conn, culprits, "events.jsonl")
        assert _places(conn) == counts.inputs  # every input in exactly one place
        before = ledger_dump(conn)
    again = ingest(database_url, CASE / "events.jsonl", None, batch_size)
    assert again.inputs == 0
    with connect(database_url) as conn:
        assert ledger_dump(conn) == before
    assert export(database_url) == (want_rows, want_summary)


def test_a_failure_that_is_no_inputs_doing_still_stops_the_ingest(
    database_url: str, tmp_path: Path
) -> None:
    culprits = _culprits(_lines(), 1)
    _refuse(database_url, list(culprits.values()), sqlstate="40001")  # serialization failure
    with pytest.raises(psycopg.errors.SerializationFailure):
        ingest(database_url, CASE / "events.jsonl", CASE / "program.toml", 100)
    with connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM dead_letters WHERE reason LIKE 'refused%'")
        assert row.fetchone() == (0,)
        stored = conn.execute("SELECT position FROM source_positions").fetchone()
    assert stored is not None and stored[0] < min(culprits)  # nothing past it committed


def test_values_the_driver_cannot_format_are_dead_lettered(
    database_url: str, tmp_path: Path
) -> None:
    signup, purchase = (json.loads(_lines()[n]) for n in (1, 4))  # c0003's
    hostile = [
        {**signup, "event_id": "nul", "customer_id": "c\u0000"},
        {**purchase, "event_id": "huge", "total": "9" * 30, "items": []},
        {**signup, "event_id": "lone", "customer_id": "c\ud800"},
    ]
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join(map(json.dumps, [signup, *hostile, purchase])) + "\n")
    counts = ingest(database_url, path, CASE / "program.toml", batch_size=20_000)
    assert (counts.accepted, counts.dead_lettered) == (2, 3)
    with connect(database_url) as conn:
        assert _places(conn) == 5
        reasons = [r for (r,) in conn.execute("SELECT reason FROM dead_letters ORDER BY id")]
    # Refused by the database or the driver today; the bounds on values may refuse them sooner.
    assert all(r and "\n" not in r for r in reasons), reasons
    again = ingest(database_url, path, None)
    assert again.inputs == 0


def test_a_partition_goes_past_an_input_the_database_refuses(
    database_url: str, kafka_settings: KafkaSettings, tmp_path: Path, pg_server: PgServer,
    template_db: str,
) -> None:  # fmt: skip
    culprits = _culprits(_lines(), 2)
    _refuse(database_url, list(culprits.values()))
    create_topics(kafka_settings, 1)
    produce_file(kafka_settings, str(CASE / "events.jsonl"))
    counts = run_consumer(database_url, kafka_settings, CASE / "program.toml")
    want = _reference(pg_server, template_db, tmp_path, culprits)
    assert export(database_url) == want
    assert counts.dead_lettered == want[1]["dead_lettered"]
    with connect(database_url) as conn:
        _assert_dead_lettered(conn, culprits, ".inputs:0")
        before = ledger_dump(conn)
    again = run_consumer(database_url, kafka_settings, None, idle_s=2)
    assert again.inputs == 0
    with connect(database_url) as conn:
        assert ledger_dump(conn) == before


def test_a_redriven_letter_the_database_refuses_stays_open_with_the_reason(
    database_url: str,
) -> None:
    from loyalty_ledger.admin import dead_letters as dlq
    from support import ingest as ingest_file

    signup = _lines()[0]
    event_id = json.loads(signup)["event_id"]
    with connect(database_url) as conn:
        conn.execute(
            "INSERT INTO dead_letters (source, position, raw, reason) "
            "VALUES ('file:/x', 1, %s, 'held back')",
            (signup,),
        )
    path = CASE / "events.jsonl"
    ingest_file(database_url, path, CASE / "program.toml", 20_000)  # stores the program
    _refuse(database_url, [event_id])
    with connect(database_url) as conn:
        conn.execute(sql.SQL("DELETE FROM {} WHERE event_id = %s").format(
            sql.Identifier(schema_of(FIRST), "inbox")), (event_id,))  # fmt: skip
        result = dlq.redrive(conn, dlq.Filter(source="file:/x"), KafkaSettings("127.0.0.1:9"))
        assert result.redriven == 0 and result.counts.dead_lettered == 1
        letter = conn.execute(
            "SELECT status, reason, resolved_at FROM dead_letters WHERE source = 'file:/x'"
        ).fetchone()
        inbox = conn.execute("SELECT count(*) FROM inbox WHERE source = 'file:/x'").fetchone()
    assert letter == ("open", REASON, None) and inbox == (0,)
