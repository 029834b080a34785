"""Tamper evidence an owner cannot forge: the keyed chain, its anchors, and the ledger key.

Each attack is what the database's owner can do: lift the append-only trigger, change the
ledger, and mend what the package's own code can mend (the legacy unkeyed chain, the
projections, the chain record). `verify` must fail and name the first seq that differs.
"""

from __future__ import annotations

import json
import os
import stat
import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conftest import PgServer, twin_database
from loyalty_ledger.admin.verify import Report, verify
from loyalty_ledger.generations.migrate import migrate
from loyalty_ledger.kafka.settings import KafkaSettings
from loyalty_ledger.ledger import anchors
from loyalty_ledger.ledger import key as ledger_key
from loyalty_ledger.ledger.chain import (
    GENESIS,
    _field,
    encode,
    keyed_chain,
    keyed_hash,
    legacy_chain_hash,
)
from loyalty_ledger.ledger.entries import COLUMNS, Entry, Kind
from loyalty_ledger.ledger.key import LedgerKeyError
from loyalty_ledger.projectors import runner
from loyalty_ledger.store.db import Connection, connect
from support import CASES, cli_in_process, ingest, undo_0010

CASE = CASES[4]
BATCH = 400
OTHER_KEY = "a7" * 32
# A redemption id holding the legacy separator: moving it between `ref` and `reward` kept
# every legacy hash.
SEPARATED = (
    '{"event_id": "ev-sep", "type": "redemption", "occurred_at": "2023-07-05T13:00:00Z", '
    '"channel": "pos", "customer_id": "%s", "redemption_id": "rdm\\u001fvoucher", '
    '"reward_id": "voucher-s"}\n'
)


@pytest.fixture
def ledger_url(database_url: str, tmp_path: Path) -> str:
    ingest(database_url, CASE / "events.jsonl", CASE / "program.toml", batch_size=BATCH)
    with connect(database_url) as conn:
        runner.catch_up(conn)
        richest = conn.execute("SELECT customer_id FROM balance ORDER BY balance DESC LIMIT 1")
        row = richest.fetchone()
    assert row is not None
    separated = tmp_path / "separated.jsonl"
    separated.write_text(SEPARATED % row[0])
    ingest(database_url, separated, None)
    with connect(database_url) as conn:
        runner.catch_up(conn)
    return database_url


def _as_owner(
    conn: Connection, *statements: str, params: list[tuple[object, ...]] | None = None
) -> None:
    """What the database's owner can do: lift the append-only trigger, change, restore it."""
    with conn.transaction():
        conn.execute("ALTER TABLE ledger DISABLE TRIGGER ALL")
        for statement in statements:
            if params:
                conn.cursor().executemany(statement, params)
            else:
                conn.execute(statement)
        conn.execute("ALTER TABLE ledger ENABLE TRIGGER ALL")


def _recompute_unkeyed(conn: Connection, after_seq: int) -> None:
    """Mend every hash from `after_seq` on with the package's own unkeyed chain function."""
    columns = ", ".join(COLUMNS)
    before = conn.execute("SELECT hash FROM ledger WHERE seq < %s ORDER BY seq DESC LIMIT 1",
                          (after_seq,)).fetchone()  # fmt: skip
    prev = bytes(before[0]) if before else GENESIS
    fixed = []
    for seq, *values in conn.execute(
        f"SELECT seq, {columns} FROM ledger WHERE seq >= %s ORDER BY seq", (after_seq,)
    ).fetchall():
        prev = legacy_chain_hash(prev, tuple(values))
        fixed.append((prev, seq))
    _as_owner(conn, "UPDATE ledger SET hash = %s WHERE seq = %s", params=fixed)


def _one_seq(conn: Connection, query: str) -> int:
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def _problems(report: Report, check: str) -> list[str]:
    return [str(p) for p in report.problems if p.check == check]


# ------------------------------------------------------------------ the encoding


def test_a_moved_separator_changes_the_encoding_but_not_the_legacy_hash() -> None:
    head = ("c1", 1, "redemption", 0, "e1", 10, None, None)
    moved = (*head, "rdm\x1fsticker", "sticker"), (*head, "rdm", "sticker\x1fsticker")
    assert legacy_chain_hash(GENESIS, moved[0]) == legacy_chain_hash(GENESIS, moved[1])
    assert encode(moved[0]) != encode(moved[1])
    assert encode((None,)) != encode(("",)) != encode(("-",)) != encode(("\x00",))
    key = bytes(32)
    assert keyed_hash(key, GENESIS, moved[0]) != keyed_hash(key, GENESIS, moved[1])
    assert keyed_chain(key, GENESIS, [moved[0]]) == [keyed_hash(key, GENESIS, moved[0])]
    assert keyed_hash(bytes(32), GENESIS, moved[0]) != keyed_hash(b"x" * 32, GENESIS, moved[0])


AT = datetime(2025, 2, 25, 15, 44, 21, 5, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def test_the_entries_of_a_batch_hash_as_they_always_did() -> None:
    entries = [
        Entry("cust-1", 3, Kind.order_placed, AT, "ev-1", amount=Decimal("140.90"), ref="ord-1"),
        Entry("cust-1", 4, Kind.credit, AT, "ev-1", 176, cause="purchase", ref="ord-1",
              expires_at=AT.replace(year=2027)),
    ]  # fmt: skip
    assert [h.hex() for h in keyed_chain(bytes(range(32)), GENESIS, entries)] == [
        "aa891be41848d59c1e18baa19b46ffef2c44d7ded79ac17bf4d07a1f5b5d3851",
        "05bada9ce992d82ac730bfb50dca51874cae6589501586ab80efb5ade9f93a79",
    ]  # as computed before the encoding was inlined (ledger/chain.py `_text`)


# Values of other types than COLUMNS give, in every column: the inlined encoding falls back.
ODD = [
    None, "", "x:y", "credit", Kind.credit, 0, -7, True, 10**30, Decimal("-0"), Decimal(0),
    Decimal("1.25E+1"), AT, AT.astimezone(BERLIN), datetime(2024, 10, 27, 2, 30, tzinfo=BERLIN),
    datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=BERLIN), AT.replace(tzinfo=timezone(timedelta(0))),
]  # fmt: skip


@pytest.mark.parametrize("column", range(len(COLUMNS)))
def test_the_inlined_encoding_is_the_generic_one_for_any_value(column: int) -> None:
    base = tuple(Entry("c", 1, Kind.credit, AT, "e", expires_at=AT))
    rows = [(*base[:column], value, *base[column + 1 :]) for value in ODD]
    generic = [b"".join(_field(v).encode() for v in row) for row in rows]
    assert [encode(row) for row in rows] == generic
    chained = keyed_chain(bytes(32), GENESIS, rows)  # one memo of instants across the rows
    prev = GENESIS
    for row, digest in zip(rows, chained, strict=True):
        prev = keyed_hash(bytes(32), prev, row)
        assert digest == prev


# ------------------------------------------------------------------ the attacks


def test_a_sound_ledger_verifies_with_its_anchors(ledger_url: str, anchor_file: Path) -> None:
    lines = anchor_file.read_text().splitlines()
    with connect(ledger_url) as conn:
        entries = _one_seq(conn, "SELECT count(*) FROM ledger")
        last = _one_seq(conn, "SELECT max(seq) FROM ledger")
        report = verify(conn)
    assert report.ok, report.problems
    # one anchor per batch that wrote entries; the last one is the head
    seqs = [json.loads(line)["seq"] for line in lines]
    assert len(seqs) > 2 and seqs == sorted(set(seqs))
    head = json.loads(lines[-1])
    assert (head["generation"], head["seq"], head["entries"]) == ("main", last, entries)
    assert head["key_id"] == ledger_key.current().key_id and len(head["mac"]) == 64


def test_a_changed_row_is_named(ledger_url: str) -> None:
    with connect(ledger_url) as conn:
        seq = _one_seq(conn, "SELECT seq FROM ledger WHERE kind = 'credit' ORDER BY seq "
                             "OFFSET 300 LIMIT 1")  # fmt: skip
        _as_owner(conn, f"UPDATE ledger SET points = points + 1 WHERE seq = {seq}")
        report = verify(conn)
    assert str(report.problems[0]).startswith(f"chain: ledger seq {seq} ")


def test_a_moved_separator_is_named(ledger_url: str) -> None:
    with connect(ledger_url) as conn:
        seq = _one_seq(conn, "SELECT seq FROM ledger WHERE ref = E'rdm\\x1fvoucher'")
        _as_owner(conn, "UPDATE ledger SET ref = 'rdm', reward = E'voucher\\x1fvoucher-s' "
                        f"WHERE seq = {seq}")  # fmt: skip
        report = verify(conn)
    assert _problems(report, "chain") == [str(report.problems[0])]
    assert str(report.problems[0]).startswith(f"chain: ledger seq {seq} ")


def test_a_deleted_tail_is_caught_by_its_anchor(ledger_url: str) -> None:
    with connect(ledger_url) as conn:
        last = _one_seq(conn, "SELECT max(seq) FROM ledger")
        _as_owner(conn, f"DELETE FROM ledger WHERE seq > {last - 10}")
        conn.execute("UPDATE public.generations SET chain_entries = chain_entries - 10")
        runner.rebuild(conn)
        report = verify(conn)
    assert not _problems(report, "chain")  # what is left chains: only the anchor can tell
    assert _problems(report, "anchor")[0].startswith(
        f"anchor: entries after seq {last - 10} were deleted: anchor of "
    )


def test_a_chain_recomputed_without_the_key_is_named(ledger_url: str) -> None:
    with connect(ledger_url) as conn:
        seq = _one_seq(conn, "SELECT seq FROM ledger WHERE kind = 'redemption' ORDER BY seq "
                             "LIMIT 1")  # fmt: skip
        _as_owner(conn, f"UPDATE ledger SET points = points + 1 WHERE seq = {seq}")
        _recompute_unkeyed(conn, seq)
        assert str(verify(conn).problems[0]).startswith(f"chain: ledger seq {seq} ")
        # ... and told that the whole ledger is legacy: the anchors know better
        last = _one_seq(conn, "SELECT max(seq) FROM ledger")
        _recompute_unkeyed(conn, 1)
        conn.execute(f"UPDATE public.generations SET chain_keyed_from = {last + 1}")
        report = verify(conn)
    assert not _problems(report, "chain")
    first = _problems(report, "anchor")[0]
    assert first.startswith("anchor: ledger seq ") and "differs from its anchor" in first


def test_the_command_names_the_deleted_tail(
    ledger_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOYALTY_DATABASE_URL", ledger_url)
    with connect(ledger_url) as conn:
        last = _one_seq(conn, "SELECT max(seq) FROM ledger")
        _as_owner(conn, f"DELETE FROM ledger WHERE seq > {last - 3}")
    code, out, _ = cli_in_process(["verify"], capsys)
    assert code == 1
    assert f"broken: anchor: entries after seq {last - 3} were deleted: " in out


# ------------------------------------------------------------------ anchors


def test_a_changed_anchor_line_is_reported(ledger_url: str, anchor_file: Path) -> None:
    lines = anchor_file.read_text().splitlines()
    forged = json.loads(lines[1])
    forged["entries"] -= 1
    anchor_file.write_text("\n".join([lines[0], json.dumps(forged), *lines[2:]]) + "\n")
    with connect(ledger_url) as conn:
        report = verify(conn)
    assert _problems(report, "anchor") == [
        f"anchor: {anchor_file}:2: its MAC does not check: the line was changed after it was signed"
    ]


def test_a_filed_anchor_outlives_the_anchor_file(
    ledger_url: str, anchor_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("LOYALTY_DATABASE_URL", ledger_url)
    code, out, _ = cli_in_process(["ledger", "anchor"], capsys)
    assert code == 0 and out.count("\n") == 1
    filed = tmp_path / "filed.jsonl"
    filed.write_text(out)
    assert cli_in_process(["verify", "--anchor", str(filed)], capsys)[0] == 0
    # the owner deletes the tail and the local anchor file: the filed line still knows
    anchor_file.unlink()
    with connect(ledger_url) as conn:
        last = _one_seq(conn, "SELECT max(seq) FROM ledger")
        _as_owner(conn, f"DELETE FROM ledger WHERE seq > {last - 1}")
    # (conservation tells too, but a tail of non-point entries would not move a balance)
    assert "broken: anchor" not in cli_in_process(["verify"], capsys)[1]
    code, out, _ = cli_in_process(["verify", "--anchor", str(filed)], capsys)
    assert code == 1 and f"broken: anchor: entries after seq {last - 1} were deleted" in out
    code, _, err = cli_in_process(["verify", "--anchor", str(tmp_path / "nope")], capsys)
    assert code == 2 and "anchor file" in err and "not found" in err


# ------------------------------------------------------------------ the key


def test_a_wrong_key_is_reported_as_such(
    ledger_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    right = ledger_key.current().key_id
    monkeypatch.setenv("LOYALTY_LEDGER_KEY", OTHER_KEY)
    with connect(ledger_url) as conn:
        report = verify(conn)
    assert [str(p) for p in report.problems if p.check == "chain"] == [
        f"chain: generation main: is chained with another key (id {right}), not the one in "
        f"LOYALTY_LEDGER_KEY (id {ledger_key.current().key_id}): set LOYALTY_LEDGER_KEY or "
        "LOYALTY_LEDGER_KEY_FILE to its key"
    ]
    assert "signed with another key" in _problems(report, "anchor")[0]
    # and a writer refuses to chain on with it
    monkeypatch.setenv("LOYALTY_DATABASE_URL", ledger_url)
    events = CASES[0] / "events.jsonl"
    code, _, err = cli_in_process(["ingest", str(events)], capsys)
    assert code == 2 and "chained with another key" in err


def test_the_key_file_is_made_once_0600_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOYALTY_LEDGER_KEY")
    monkeypatch.chdir(tmp_path)
    first = ledger_key.current()
    path = tmp_path / ".loyalty" / "ledger.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(bytes.fromhex(path.read_text().strip())) == 32
    ledger_key._cache.clear()  # as a later process
    assert ledger_key.current().secret == first.secret
    assert [p.name for p in path.parent.iterdir()] == ["ledger.key"]  # no draft left behind
    monkeypatch.setenv("LOYALTY_LEDGER_KEY_FILE", str(path))
    assert ledger_key.current().secret == first.secret


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("ab" * 16, "has 16 bytes, fewer than 32"),
        ("not a key!", "neither hex nor base64"),
        ("", "has 0 bytes"),
    ],
)
def test_a_bad_key_is_one_user_error(text: str, fragment: str) -> None:
    with pytest.raises(LedgerKeyError, match=fragment):
        ledger_key.parse(text, "LOYALTY_LEDGER_KEY")


def test_keys_in_hex_base64_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import base64

    secret = os.urandom(32)
    assert ledger_key.parse(secret.hex().upper(), "x").secret == secret
    assert ledger_key.parse(base64.b64encode(secret).decode(), "x").secret == secret
    assert ledger_key.parse(base64.urlsafe_b64encode(secret).decode(), "x").secret == secret
    monkeypatch.delenv("LOYALTY_LEDGER_KEY")
    monkeypatch.setenv("LOYALTY_LEDGER_KEY_FILE", str(tmp_path / "missing.key"))
    with pytest.raises(LedgerKeyError, match="not found"):
        ledger_key.current()
    (tmp_path / "missing.key").write_text(secret.hex() + "\n")
    assert ledger_key.current().secret == secret


def test_a_ledger_chained_before_keys_verifies_and_chains_on(
    ledger_url: str, tmp_path: Path, anchor_file: Path
) -> None:
    """Migration 0005 on a ledger of the legacy chain: its entries keep it, new ones are keyed."""
    with connect(ledger_url) as conn:
        _recompute_unkeyed(conn, 1)  # the ledger as 0003 left it
        conn.execute("ALTER TABLE public.generations DROP COLUMN chain_id, "
                     "DROP COLUMN chain_key_id, DROP COLUMN chain_keyed_from, "
                     "DROP COLUMN chain_entries")  # fmt: skip
        # and as 0007 and 0008 found it (the revisions after 0005 run again)
        conn.execute("ALTER TABLE consumer_offsets RENAME COLUMN owner_epoch TO generation")
        conn.execute("DROP TABLE public.api_keys")
        undo_0010(conn)
        conn.execute("UPDATE public.alembic_version SET version_num = '0004'")
        last = _one_seq(conn, "SELECT max(seq) FROM ledger")
    anchor_file.unlink()  # anchors came with keys
    migrate(ledger_url)
    with connect(ledger_url) as conn:
        row = conn.execute("SELECT chain_keyed_from, chain_entries, chain_key_id "
                           "FROM public.generations").fetchone()  # fmt: skip
        assert row == (last + 1, _one_seq(conn, "SELECT count(*) FROM ledger"), None)
        runner.catch_up(conn)  # 0009 made balance and point_lots again: `loyalty verify` does this
        assert verify(conn).ok
    ingest(ledger_url, CASES[1] / "events.jsonl", None)
    with connect(ledger_url) as conn:
        runner.catch_up(conn)
        assert verify(conn).ok
        _as_owner(conn, "UPDATE ledger SET points = points + 1 WHERE seq = 5")
        assert str(verify(conn).problems[0]).startswith("chain: ledger seq 5 ")


def test_anchor_lines_round_trip(tmp_path: Path) -> None:
    key = ledger_key.parse("11" * 32, "test")
    anchor = anchors.Anchor("main", "a-chain-id", 7, 7, "00" * 32, 1, key.key_id, anchors.now())
    path = tmp_path / "a.jsonl"
    anchors.append(path, anchor, key)
    anchors.append(path, anchor, key)
    with path.open("a") as out:
        out.write("garbage\n")
    good, bad = anchors.read(path, key, missing_ok=False)
    assert [f.anchor for f in good] == [anchor, anchor]
    assert bad == [f"{path}:3: not a JSON anchor line"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# ------------------------------------------------------------------ the ledger topic


def test_the_relay_ends_each_pass_with_an_anchor(
    ledger_url: str, kafka_settings: KafkaSettings, tmp_path: Path, anchor_file: Path
) -> None:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from loyalty_ledger.kafka import relay
    from loyalty_ledger.kafka.producer import producer as kafka_producer
    from loyalty_ledger.kafka.settings import client_logger
    from loyalty_ledger.kafka.topics import create_topics

    create_topics(kafka_settings, 1, 1)
    with connect(ledger_url) as conn:
        entries = _one_seq(conn, "SELECT count(*) FROM ledger")
        passes = -(-entries // relay.RELAY_ROWS_MAX)
        producer = kafka_producer(kafka_settings)
        while relay.relay(conn, producer, kafka_settings):
            pass
    consumer = Consumer({
        **kafka_settings.client(), "group.id": f"{kafka_settings.prefix}-reader",
        "enable.auto.commit": False, "logger": client_logger(),
    })  # fmt: skip
    consumer.assign([TopicPartition(kafka_settings.ledger, 0, OFFSET_BEGINNING)])
    got: list[Any] = []
    try:
        deadline = time.monotonic() + 60
        while len(got) < entries + passes and time.monotonic() < deadline:
            got += [m for m in consumer.consume(1000, 0.5) if not m.error()]
    finally:
        consumer.close()
    marked = [m for m in got if dict(m.headers() or ()).get(relay.ANCHOR_HEADER)]
    assert len(got) == entries + passes and len(marked) == passes
    assert got[-1] is marked[-1]
    filed = tmp_path / "from-kafka.jsonl"
    filed.write_bytes(marked[-1].value())
    assert json.loads(marked[-1].value())["entries"] == entries
    anchor_file.unlink()  # the owner wipes the local anchors: the topic's copy remains
    with connect(ledger_url) as conn:
        last = _one_seq(conn, "SELECT max(seq) FROM ledger")
        _as_owner(conn, f"DELETE FROM ledger WHERE seq = {last}")
        report = verify(conn, anchor_files=[filed])
    assert any(
        str(p).startswith(f"anchor: entries after seq {last - 1} were deleted: ")
        and str(filed) in str(p)
        for p in report.problems
    ), report.problems


def test_two_ledgers_share_an_anchor_file(
    database_url: str, pg_server: PgServer, template_db: str, anchor_file: Path
) -> None:
    """Anchors name their ledger's chain id: another database's in the same file (one
    folder, two LOYALTY_DATABASE_URLs) neither checks against this one nor breaks it."""
    with twin_database(pg_server, template_db) as other_url:
        with connect(other_url) as conn:  # copies of one template share the id: give it its own
            conn.execute("UPDATE public.generations SET chain_id = 'another-ledger'")
        ingest(other_url, CASES[0] / "events.jsonl", CASES[0] / "program.toml")
        ingest(database_url, CASE / "events.jsonl", CASE / "program.toml", batch_size=BATCH)
        ids = {json.loads(line)["chain_id"] for line in anchor_file.read_text().splitlines()}
        assert len(ids) == 2
        for url in (database_url, other_url):
            with connect(url) as conn:
                runner.catch_up(conn)
                report = verify(conn)
            assert report.ok, report.problems


def test_a_changed_chain_id_breaks_the_chain(ledger_url: str) -> None:
    """The owner cannot disown the anchors by giving the ledger another id."""
    with connect(ledger_url) as conn:
        first = _one_seq(conn, "SELECT min(seq) FROM ledger")
        conn.execute("UPDATE public.generations SET chain_id = 'not-the-anchored-one'")
        report = verify(conn)
    assert _problems(report, "chain")[0].startswith(f"chain: ledger seq {first} ")


def test_a_renamed_generation_is_named(ledger_url: str) -> None:
    """Anchors name their generation: renaming it to disown them is reported."""
    with connect(ledger_url) as conn:
        conn.execute("UPDATE public.generations SET name = 'renamed' WHERE name = 'main'")
        report = verify(conn)
    assert _problems(report, "anchor")[0].startswith("anchor: generation main: is anchored")
