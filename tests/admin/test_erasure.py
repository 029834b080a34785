"""`loyalty members erase`: no PII left in any table of any schema; ledger and read models stay."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from psycopg import sql

from loyalty_ledger import events
from loyalty_ledger.admin import erasure
from loyalty_ledger.generations import catalog as generations
from loyalty_ledger.projectors import runner
from loyalty_ledger.store.db import Connection, connect
from support import CASES, cli_in_process, export, ingest, ledger_dump

LOYALTY = str(Path(sys.executable).with_name("loyalty"))
CASE = CASES[0]
# Every value below occurs once in the case's stream. c0001 also has a dead-lettered signup
# (a bad birth date) with an email and birth date of its own.
ERASED = {
    "c0015": ("c0015@example.org", "Jun Tanaka", "+61 154 4539809", "1993-08-08"),
    "c0001": ("c0001@example.org", "+95 954 9802028", "2002-03-23", "x@example.org",
              "1991-02-29"),
}  # fmt: skip
TEXT_TYPES = ("text", "character varying", "character", "json", "jsonb")


def _found(conn: Connection, values: list[str]) -> list[tuple[str, str, str, str]]:
    """(schema, table, column, value) wherever a value occurs in a text or JSON column."""
    columns = conn.execute(
        "SELECT c.table_schema, c.table_name, c.column_name FROM information_schema.columns c "
        "JOIN information_schema.tables t USING (table_schema, table_name) "
        "WHERE t.table_type = 'BASE TABLE' AND c.data_type = ANY(%s) "
        "AND c.table_schema NOT IN ('pg_catalog', 'information_schema')",
        (list(TEXT_TYPES),),
    ).fetchall()
    hits = []
    for schema, table, column in columns:
        query = sql.SQL("SELECT v FROM unnest(%s::text[]) v WHERE EXISTS "
                        "(SELECT 1 FROM {} WHERE strpos({}::text, v) > 0)").format(
            sql.Identifier(schema, table), sql.Identifier(column))  # fmt: skip
        hits += [(schema, table, column, v) for (v,) in conn.execute(query, (values,))]
    # Raw bytes (dead letters): searched as the values' UTF-8.
    query = sql.SQL("SELECT v FROM unnest(%s::text[]) v WHERE EXISTS (SELECT 1 FROM "
                    "dead_letters WHERE position(convert_to(v, 'UTF8') IN raw) > 0)")  # fmt: skip
    hits += [("public", "dead_letters", "raw", v) for (v,) in conn.execute(query, (values,))]
    return hits


def _spare_generation(conn: Connection) -> None:
    """A second generation holding copies of the inputs and states, as a re-run leaves one."""
    live = generations.live(conn)
    assert live.program_hash is not None
    spare = generations.create(conn, "spare", live.program_hash, live, None)
    for table in ("inbox", "customer_state"):
        target, origin = (sql.Identifier(g.schema_name, table) for g in (spare, live))
        conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(target, origin))


@pytest.fixture
def ingested(database_url: str) -> str:
    ingest(database_url, CASE / "events.jsonl", CASE / "program.toml")
    with connect(database_url) as conn:
        _spare_generation(conn)
    return database_url


def test_erasure_leaves_no_pii_anywhere(ingested: str, cli_env: dict[str, str]) -> None:
    values = [v for pii in ERASED.values() for v in pii]
    customers_before, summary_before = export(ingested)
    with connect(ingested) as conn:
        ledger_before = ledger_dump(conn)
        before = {v for *_, v in _found(conn, values)}
        assert before == set(values)  # the search does find them
        schemas_before = {s for s, *_ in _found(conn, values)}
        assert {"public", "gen_main", "gen_spare"} <= schemas_before
        done = {c: erasure.erase(conn, c) for c in ERASED}
        assert _found(conn, values) == []
        assert done["c0015"].member and done["c0015"].inputs == 2  # its signup, both generations
        assert done["c0015"].states == 2 and done["c0015"].dead_letters == 0
        assert done["c0001"].dead_letters == 1 and done["c0001"].erased_before is None
        assert ledger_dump(conn) == ledger_before  # the ledger is not touched
        erased = conn.execute(
            "SELECT customer_id, inputs, dead_letters FROM erasures ORDER BY 1"
        ).fetchall()
        assert erased == [("c0001", 2, 1), ("c0015", 2, 0)]
        # A re-run still reads every input of theirs: the signups decode, without PII.
        for (raw,) in conn.execute(
            "SELECT raw FROM gen_spare.inbox WHERE customer_id = ANY(%s)", (list(ERASED),)
        ):
            decoded = events.decode(raw)
            assert not isinstance(decoded, events.Invalid), raw
            if isinstance(decoded, events.Signup):
                assert decoded.email == "erased" and decoded.birth_date is None
                assert decoded.name is None and decoded.phone is None
    assert export(ingested) == (customers_before, summary_before)
    rebuilt = subprocess.run([LOYALTY, "rebuild"], env=cli_env, capture_output=True, text=True)
    assert rebuilt.returncode == 0, rebuilt.stderr
    with connect(ingested) as conn:
        runner.catch_up(conn)
        assert _found(conn, values) == []
    assert export(ingested) == (customers_before, summary_before)
    # A re-run afterwards replays the scrubbed inputs: it works and brings no PII back.
    command = [LOYALTY, "rerun", "--program", str(CASE / "program.toml"), "--as", "after"]
    rerun = subprocess.run(command, env=cli_env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    with connect(ingested) as conn:
        assert _found(conn, values) == []
        members = conn.execute(
            "SELECT count(*) FROM members WHERE customer_id = ANY(%s)", (list(ERASED),)
        ).fetchone()
        assert members == (0,)
        inputs = conn.execute("SELECT count(*) FROM gen_after.inbox").fetchone()
        assert inputs == conn.execute("SELECT count(*) FROM gen_main.inbox").fetchone()


def test_erasing_twice_is_fine_and_says_so(ingested: str) -> None:
    with connect(ingested) as conn:
        first = erasure.erase(conn, "c0015")
        second = erasure.erase(conn, "c0015")
        count = conn.execute("SELECT inputs FROM erasures WHERE customer_id = 'c0015'").fetchone()
    assert second.erased_before is not None and not second.member
    assert (second.inputs, second.states, second.dead_letters) == (0, 0, 0)
    assert count == (first.inputs,)


def test_scrubbing_keeps_every_other_field_and_the_order() -> None:
    raw = ('{"event_id": "e1", "type": "signup", "occurred_at": "2020-01-01T00:00:00Z", '
           '"customer_id": "c1", "email": "a@b.org", "name": "Al", "phone": "+1 2", '
           '"birth_date": "1990-01-01", "newsletter": true, "note": "mail a@b.org", '
           '"channel": "Al"}')  # fmt: skip
    pii = erasure._collect(None, [raw])
    scrubbed = erasure.scrub_json(raw, pii)
    assert scrubbed is not None
    body = json.loads(scrubbed)
    assert list(body) == list(json.loads(raw))
    assert body == {
        "event_id": "e1", "type": "signup", "occurred_at": "2020-01-01T00:00:00Z",
        "customer_id": "c1", "email": "erased", "name": None, "phone": None,
        "birth_date": None, "newsletter": True, "note": "[erased]", "channel": "[erased]",
    }  # fmt: skip
    assert erasure.scrub_json(scrubbed, pii) is None  # nothing left to do
    assert erasure.scrub_text('c1,"a@b.org",Al\n', pii.texts) == 'c1,"[erased]",[erased]\n'


def test_an_unknown_customer_is_one_line(
    ingested: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with connect(ingested) as conn, pytest.raises(erasure.ErasureError, match="no customer"):
        erasure.erase(conn, "c9999")
    monkeypatch.setenv("LOYALTY_DATABASE_URL", ingested)
    code, _, err = cli_in_process(["members", "erase", "c9999"], capsys)
    assert code == 2 and err.startswith("loyalty: no customer 'c9999'") and err.count("\n") == 1
    code, out, _ = cli_in_process(["members", "erase", "c0015"], capsys)
    assert code == 0 and out.startswith("erased c0015: member row deleted")
    code, out, _ = cli_in_process(["members", "erase", "c0015"], capsys)
    assert code == 0 and out.startswith("erased c0015: already erased at ")


def test_a_letter_that_is_not_utf8_loses_the_member_strings_and_keeps_its_other_bytes(
    ingested: str,
) -> None:
    raw = (b'{"event_id": "x1", "type": "signup", "customer_id": "c0015", "name": "\xff", '
           b'"email": "c0015@example.org"}')  # fmt: skip
    stranger = b"\x00 someone else, \xfe, wrote c0015@example.org \x1b"
    with connect(ingested) as conn:
        conn.execute(
            "INSERT INTO dead_letters (source, position, raw, reason) "
            "VALUES ('file:/x', 1, %s, 'not json'), ('file:/x', 2, %s, 'not json')",
            (raw, stranger),
        )
        done = erasure.erase(conn, "c0015")
        rows = [bytes(r) for (r,) in conn.execute(
            "SELECT raw FROM dead_letters WHERE source = 'file:/x' ORDER BY position")]  # fmt: skip
    assert done.dead_letters == 2
    assert b"c0015@example.org" not in rows[0] and b'"name": null' in rows[0]
    assert b'"customer_id": "c0015"' in rows[0]  # its identity stays
    assert rows[1] == b"\x00 someone else, \xfe, wrote [erased] \x1b"
