"""Dead letters: list, show, redrive and discard, with every input still in exactly one place."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from psycopg import sql

from conftest import PgServer, twin_database
from loyalty_ledger import events
from loyalty_ledger.admin import dead_letters as dlq
from loyalty_ledger.cli.dead_letter_commands import write_list, write_one
from loyalty_ledger.kafka.settings import KafkaSettings, client_logger
from loyalty_ledger.kafka.topics import create_topics
from loyalty_ledger.store.db import Connection, connect
from support import CASES, cli_in_process, export, ingest

LOYALTY = str(Path(sys.executable).with_name("loyalty"))
CASE = CASES[1]  # 686 lines, 12 of them malformed
NOT_YET = "purchase.channel: pos purchases were not accepted yet"  # a stricter, older decoder
NO_KAFKA = KafkaSettings("127.0.0.1:9")  # file letters never reach for it


def _stricter(raw: bytes | str) -> events.Event | events.Invalid:
    decoded = _decode(raw)
    if isinstance(decoded, events.Purchase) and decoded.channel == "pos":
        return events.Invalid(NOT_YET)
    return decoded


_decode = events.decode


@pytest.fixture
def ingested(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The case ingested by a decoder that refused pos purchases; the real one from now on."""
    with monkeypatch.context() as patched:
        patched.setattr(events, "decode", _stricter)
        ingest(database_url, CASE / "events.jsonl", CASE / "program.toml")
    yield database_url


def _lines() -> int:
    return sum(1 for line in (CASE / "events.jsonl").read_bytes().splitlines() if line.strip())


def _places(conn: Connection) -> int:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM inbox) + (SELECT count(*) FROM duplicates) + "
        "(SELECT count(*) FROM dead_letters WHERE status <> 'redriven')"
    ).fetchone()
    assert row is not None
    return int(row[0])


def _dump(conn: Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: conn.execute(
            sql.SQL("SELECT * FROM {} ORDER BY 1, 2").format(sql.Identifier(table))
        ).fetchall()
        for table in ("inbox", "ledger", "duplicates", "dead_letters", "customer_state", "balance")
    }


def test_list_filters_by_status_reason_and_source(ingested: str) -> None:
    with connect(ingested) as conn:
        everything = dlq.listing(conn, dlq.Filter("all"))
        held_back = dlq.listing(conn, dlq.Filter(reason="NOT ACCEPTED"))
        some = dlq.listing(conn, dlq.Filter(limit=3))
        by_source = dlq.listing(conn, dlq.Filter(source="file:"))
        elsewhere = dlq.listing(conn, dlq.Filter(source="kafka:"))
        redriven = dlq.listing(conn, dlq.Filter("redriven"))
    assert len(everything) > len(held_back) > 0 and {r.reason for r in held_back} == {NOT_YET}
    assert [r.id for r in some] == [r.id for r in everything[:3]]
    assert len(by_source) == len(everything) and not elsewhere and not redriven
    out = io.StringIO()
    with connect(ingested) as conn:
        write_list(dlq.listing(conn, dlq.Filter(limit=2)), "open", out)
    assert len(out.getvalue().splitlines()) == 2
    assert out.getvalue().startswith(f"{everything[0].id}\t{everything[0].source}:")


def test_show_gives_the_raw_line_exactly(ingested: str) -> None:
    with connect(ingested) as conn:
        conn.execute(
            "INSERT INTO dead_letters (source, position, raw, reason) "
            "VALUES ('stdin:x', 7, %s, 'not json')",
            ('{"a": "tab\there", "nul": "\x01", "é": 1\r'.encode(),),
        )
        letter_id = dlq.listing(conn, dlq.Filter(source="stdin:"))[0].id
        out = io.StringIO()
        write_one(dlq.get(conn, letter_id), out)
        with pytest.raises(dlq.DeadLetterError, match="no dead letter 999999"):
            dlq.get(conn, 999_999)
    shown = dict(line.split(None, 1) for line in out.getvalue().splitlines())
    assert shown["source"] == "stdin:x:7" and shown["status"] == "open"
    escaped = shown["raw"].split(" escaped) ", 1)[1]
    assert json.loads(escaped) == '{"a": "tab\there", "nul": "\x01", "é": 1\r'
    assert escaped.isascii() and "\t" not in escaped


def test_redrive_takes_the_now_valid_in_and_accounts_for_every_input(
    ingested: str, tmp_path: Path, pg_server: PgServer, template_db: str
) -> None:
    lines = _lines()
    with connect(ingested) as conn:
        assert _places(conn) == lines
        held_back = dlq.listing(conn, dlq.Filter(reason=NOT_YET))
        bad = [r for r in dlq.listing(conn, dlq.Filter()) if r.reason != NOT_YET]
        done: list[tuple[int, int | None]] = []
        result = dlq.redrive(conn, dlq.Filter(), NO_KAFKA, lambda d, t: done.append((d, t)))
        assert result.redriven == len(held_back) and result.republished == 0
        assert result.counts.inputs == len(held_back)
        assert {s.id for s in result.still_invalid} == {r.id for r in bad}
        assert done[-1] == (len(held_back) + len(bad), len(held_back) + len(bad))
        assert _places(conn) == lines
        # In the inbox (or duplicates) at their original source and position, letters marked;
        # byte for byte.
        original = (CASE / "events.jsonl").read_bytes().splitlines()
        for letter in held_back:
            row = conn.execute(
                "SELECT raw FROM inbox WHERE (source, position) = (%s, %s)",
                (letter.source, letter.position),
            ).fetchone()
            assert row is None or row[0].encode() == original[letter.position - 1]
            row = conn.execute(
                "SELECT d.status, d.resolution, coalesce(i.event_id, u.event_id) "
                "FROM dead_letters d LEFT JOIN inbox i USING (source, position) "
                "LEFT JOIN duplicates u USING (source, position) WHERE d.id = %s",
                (letter.id,),
            ).fetchone()
            assert row is not None and row[0] == "redriven" and row[2] is not None
            assert row[1] == f"redriven into the inbox of generation main as event {row[2]}"
        assert result.counts.duplicates > 0  # a pos purchase sent twice: the copy stays one
        before = _dump(conn)
        again = dlq.redrive(conn, dlq.Filter(), NO_KAFKA)
        assert again.redriven == 0 and len(again.still_invalid) == len(bad)
        assert _dump(conn) == before  # redriving twice changes nothing
    rows, summary = export(ingested)
    assert summary["dead_lettered"] == summary["dead_letters_open"] == len(bad)
    assert summary["dead_letters_redriven"] == len(held_back)
    assert summary["dead_letters_discarded"] == 0
    # Redriven, the inputs count as if they had arrived after the rest of the file.
    late = tmp_path / "late.jsonl"
    kept = (CASE / "events.jsonl").read_bytes().splitlines(keepends=True)
    held = {r.position for r in held_back}
    late.write_bytes(b"".join(
        [line for n, line in enumerate(kept, 1) if n not in held]
        + [line for n, line in enumerate(kept, 1) if n in held]
    ))  # fmt: skip
    with twin_database(pg_server, template_db) as fresh:
        ingest(fresh, late, CASE / "program.toml")
        assert rows == export(fresh)[0]


LATIN1 = (
    b'{"event_id": "e1", "type": "signup", "occurred_at": "2020-01-01T00:00:00Z", '
    b'"customer_id": "c1", "email": "a@b.org", "name": "Ren\xe9"}'
)


def test_a_line_that_is_not_utf8_is_kept_byte_for_byte(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(LATIN1 + b"\n")
    assert ingest(database_url, path, CASE / "program.toml").dead_lettered == 1
    with connect(database_url) as conn:
        (letter,) = dlq.listing(conn, dlq.Filter())
        assert dlq.get(conn, letter.id).raw == LATIN1
        result = dlq.redrive(conn, dlq.Filter(), NO_KAFKA)
        assert [s.reason for s in result.still_invalid] == [letter.reason]
        assert "unicode" in letter.reason and _places(conn) == 1


def test_a_letter_stored_lossily_before_bytes_is_not_redriven(database_url: str) -> None:
    # As migration 0004 leaves a letter stored as text: U+FFFD where the byte was not UTF-8.
    lossy = LATIN1.replace(b"\xe9", "\ufffd".encode())
    with connect(database_url) as conn:
        conn.execute(
            "INSERT INTO dead_letters (source, position, raw, reason) VALUES ('file:/x', 1, %s, "
            "'not json: invalid unicode code point at line 1 column 130')",
            (lossy,),
        )
        result = dlq.redrive(conn, dlq.Filter(), NO_KAFKA)
        assert [s.reason for s in result.still_invalid] == [dlq.LOSSY]
        assert _places(conn) == 1


ANY_BYTES = b"\x00\x1b[2J\t\xff\xfe \xed\xa0\x80 \xc3\xa9 end"


def test_any_bytes_and_a_full_size_line_are_stored_whole(database_url: str, tmp_path: Path) -> None:
    full = b'{"pad": "' + b"x" * (events.MAX_LINE_BYTES - 11) + b'"}'
    assert len(full) == events.MAX_LINE_BYTES
    lines = [ANY_BYTES, full, full + b" ", b"\x00" * 10]
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert ingest(database_url, path, CASE / "program.toml", batch_size=2).dead_lettered == 4
    assert ingest(database_url, path, CASE / "program.toml").dead_lettered == 0  # once
    with connect(database_url) as conn:
        letters = dlq.listing(conn, dlq.Filter())
        assert [dlq.get(conn, r.id).raw for r in letters] == lines
        assert "too large" in letters[2].reason and "too large" not in letters[1].reason
        out = io.StringIO()
        write_list(dlq.listing(conn, dlq.Filter()), "open", out)
        write_one(dlq.get(conn, letters[0].id), out)
    shown = out.getvalue()
    assert "\x00" not in shown and "\x1b" not in shown and shown.count("\t") == 4 * 4
    assert f"({len(ANY_BYTES)} bytes, not utf-8, escaped) {ANY_BYTES!r}" in shown
    env = {**os.environ, "LOYALTY_DATABASE_URL": database_url}
    raw = subprocess.run([LOYALTY, "dlq", "show", str(letters[0].id), "--raw"], env=env,
                         capture_output=True, timeout=120, check=True)  # fmt: skip
    assert raw.stdout == ANY_BYTES


def test_discard_keeps_the_input_counted_for_audit(ingested: str) -> None:
    with connect(ingested) as conn:
        letter = dlq.listing(conn, dlq.Filter())[0]
        done = dlq.discard(conn, letter.id, "  the till sent a test purchase  ")
        assert (done.status, done.resolution) == ("discarded", "the till sent a test purchase")
        assert done.resolved_at is not None and done.raw.startswith(letter.raw[:20])
        with pytest.raises(dlq.DeadLetterError, match="discarded already"):
            dlq.discard(conn, letter.id, "again")
        with pytest.raises(dlq.DeadLetterError, match="--why"):
            dlq.discard(conn, letter.id + 1, " ")
        with pytest.raises(dlq.DeadLetterError, match="no dead letter 999999"):
            dlq.discard(conn, 999_999, "gone")
        result = dlq.redrive(conn, dlq.Filter(ids=(letter.id,)), NO_KAFKA)
        assert result.not_open == [(letter.id, "discarded")] and result.redriven == 0
        with pytest.raises(dlq.DeadLetterError, match="no dead letter 999999"):
            dlq.redrive(conn, dlq.Filter(ids=(letter.id, 999_999)), NO_KAFKA)
        assert _places(conn) == _lines()
    _, summary = export(ingested)
    assert summary["dead_letters_discarded"] == 1
    assert summary["dead_lettered"] == summary["dead_letters_open"] + 1


def test_a_letter_discarded_meanwhile_stops_its_batch(ingested: str) -> None:
    with connect(ingested) as conn:
        first, second = (r.id for r in dlq.listing(conn, dlq.Filter(reason=NOT_YET))[:2])
        dlq.discard(conn, second, "meanwhile")
        with pytest.raises(dlq.DeadLetterError, match="no longer open"), conn.transaction():
            dlq._mark_redriven(conn, marks=[(first, "x"), (second, "x")])
        assert dlq.get(conn, first).status == "open"


def test_the_commands(
    ingested: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOYALTY_DATABASE_URL", ingested)
    for args, fragment in (
        (["dlq", "redrive"], "name the dead letters"),
        (["dlq", "redrive", "999999"], "no dead letter 999999"),
        (["dlq", "discard", "999999", "--why", "x"], "no dead letter 999999"),
        (["dlq", "show", "999999"], "no dead letter 999999"),
    ):
        code, _, err = cli_in_process(args, capsys)
        assert code == 2 and err.startswith("loyalty: ") and err.count("\n") == 1, err
        assert fragment in err
    listing = ["dlq", "list", "--reason", "not accepted yet", "--limit", "1000"]
    _, listed, _ = cli_in_process(listing, capsys)
    first = listed.split("\t", 1)[0]
    assert cli_in_process(["dlq", "discard", first, "--why", "test till"], capsys)[0] == 0
    assert "discarded" in cli_in_process(["dlq", "show", first], capsys)[1]
    # As a user runs it: a separate process, its log line on stderr.
    env = {**os.environ, "LOYALTY_DATABASE_URL": ingested}
    redriven = subprocess.run([LOYALTY, "dlq", "redrive", "--reason", "not accepted yet"],
                              env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert redriven.returncode == 0, redriven.stderr
    n = len(listed.splitlines()) - 1
    assert redriven.stdout.startswith(f"redriven into the inbox: {n} (")
    assert json.loads(redriven.stderr.strip().splitlines()[-1])["event"] == "redriven"
    _, now, _ = cli_in_process(["dlq", "list", "--status", "redriven", "--limit", "1000"], capsys)
    assert len(now.splitlines()) == n
    summary = json.loads(cli_in_process(["export", "summary"], capsys)[1])
    assert summary["dead_letters_redriven"] == n and summary["dead_letters_discarded"] == 1


# ------------------------------------------------------------------ kafka


def test_a_kafka_letter_is_republished_to_its_topic(
    database_url: str, kafka_settings: KafkaSettings
) -> None:
    create_topics(kafka_settings, 2)
    valid = (
        b'{"event_id": "e1", "type": "purchase", "occurred_at": "2024-01-01T10:00:00Z", '
        b'"customer_id": "c42", "order_id": "o1", "currency": "EUR", "total": "10.00"}'
    )
    source = f"kafka:{kafka_settings.inputs}:1"
    with connect(database_url) as conn:
        conn.execute(
            "INSERT INTO dead_letters (source, position, raw, reason) VALUES "
            "(%s, 17, %s, 'misrouted: ...'), (%s, 18, '{\"type\": 1}', 'missing field type')",
            (source, valid, source),
        )
        result = dlq.redrive(conn, dlq.Filter(source="kafka:"), kafka_settings)
        assert result.republished == 1 and len(result.still_invalid) == 1
        resolution = conn.execute(
            "SELECT status, resolution FROM dead_letters WHERE position = 17"
        ).fetchone()
        again = dlq.redrive(conn, dlq.Filter(source="kafka:"), kafka_settings)
    assert again.republished == 0
    message = _read_one(kafka_settings)
    assert message.value() == valid and message.key() == b"c42"
    assert dict(message.headers() or []) == {dlq.REDRIVE_HEADER: f"{source}:17".encode()}
    assert resolution is not None and resolution[0] == "redriven"
    assert resolution[1].startswith(f"republished to {kafka_settings.inputs} partition ")


def _read_one(settings: KafkaSettings) -> Message:
    consumer = Consumer({
        **settings.client(), "group.id": f"{settings.prefix}-reader", "enable.auto.commit": False,
        "logger": client_logger(),
    })  # fmt: skip
    consumer.assign([TopicPartition(settings.inputs, p, OFFSET_BEGINNING) for p in range(2)])
    got: list[Message] = []
    try:
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            got = [m for m in consumer.consume(10, 0.5) if m.error() is None]
        got += [m for m in consumer.consume(10, 0.5) if m.error() is None]
    finally:
        consumer.close()
    assert len(got) == 1, got
    return got[0]


def test_the_relay_publishes_a_letters_own_bytes() -> None:
    from loyalty_ledger.kafka import relay

    row = (7, "file:/x", 3, "not json: \x00", ANY_BYTES[:4], len(ANY_BYTES))
    position, key, value, headers = relay._dead_letter_message(row)
    assert (position, key, value) == (7, "file:/x", ANY_BYTES[:4])
    assert dict(headers) == {
        "id": b"deadletter:7",
        "source": b"file:/x",
        "position": b"3",
        "reason": b"not json: \x00",
        "raw-bytes": str(len(ANY_BYTES)).encode(),
    }
