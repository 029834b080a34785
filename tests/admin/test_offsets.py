"""Offsets reset re-reads from PostgreSQL's record of positions; re-reading changes nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from conftest import PgServer, twin_database
from loyalty_ledger.admin import offsets
from loyalty_ledger.admin.offsets import ResetError
from loyalty_ledger.generations import catalog as generations
from loyalty_ledger.generations.promote import promote
from loyalty_ledger.generations.rerun import rerun
from loyalty_ledger.kafka.settings import KafkaSettings
from loyalty_ledger.kafka.topics import create_topics
from loyalty_ledger.runtime.produce import produce_file
from loyalty_ledger.store.db import connect
from support import CASES, export, ingest, median_instant, run_consumer

CASE = CASES[4]


def test_reset_to_a_time_or_an_offset_rereads_and_changes_nothing(
    database_url: str, kafka_settings: KafkaSettings
) -> None:
    create_topics(kafka_settings, 1)
    produce_file(kafka_settings, str(CASE / "events.jsonl"))
    first = run_consumer(database_url, kafka_settings, CASE / "program.toml")
    before = export(database_url)
    group = f"g-{kafka_settings.prefix}"  # run_consumer's
    with connect(database_url) as conn:
        resets = offsets.reset(conn, group, to_time=median_instant(database_url),
                               topic=kafka_settings.inputs)  # fmt: skip
    assert len(resets) == 1 and 0 < resets[0].next_offset < resets[0].next_offset_was
    again = run_consumer(database_url, kafka_settings, None, idle_s=2)
    assert again.inputs > 0 and again.accepted == again.rejected == 0
    assert export(database_url) == before  # summary too: a message read again is one input
    with connect(database_url) as conn:
        offsets.reset(conn, group, to_offset=0)
    from_start = run_consumer(database_url, kafka_settings, None, idle_s=2)
    assert from_start.inputs == first.inputs
    assert export(database_url) == before


def test_reset_of_an_unknown_group_names_the_known_ones(
    database_url: str, kafka_settings: KafkaSettings
) -> None:
    with connect(database_url) as conn:
        conn.execute(
            "INSERT INTO consumer_offsets (group_id, topic, partition, next_offset, owner_epoch, "
            "owner) VALUES ('loyalty', 't', 0, 5, 1, 'x')"
        )
        with pytest.raises(ResetError, match="groups: loyalty"):
            offsets.reset(conn, "nope", to_offset=0)


def test_a_running_consumer_moves_to_the_promoted_generation(
    database_url: str, kafka_settings: KafkaSettings, pg_server: PgServer, template_db: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    lines = (CASE / "events.jsonl").read_text().splitlines(keepends=True)
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_text("".join(lines[: len(lines) // 2]))
    second.write_text("".join(lines[len(lines) // 2 :]))
    richer = (CASE / "program.toml").read_text().replace('"0.02"', '"0.03"')
    create_topics(kafka_settings, 1)
    produce_file(kafka_settings, str(first))
    consumer = threading.Thread(
        target=run_consumer, args=(database_url, kafka_settings, CASE / "program.toml", 8)
    )
    consumer.start()
    try:
        _wait_for_offset(database_url, kafka_settings.inputs, len(lines) // 2)
        with connect(database_url) as conn:
            rerun(conn, richer, "richer.toml", "richer", None)
            promote(conn, "richer")
        produce_file(kafka_settings, str(second))
    finally:
        consumer.join(timeout=120)
    assert not consumer.is_alive()
    with connect(database_url) as conn:
        assert generations.live(conn).name == "richer"
        old = conn.execute("SELECT max(position) FROM gen_main.inbox").fetchone()
        assert old is not None and old[0] < len(lines) // 2  # nothing went to the old one
    program = tmp_path / "richer.toml"
    program.write_text(richer)
    with twin_database(pg_server, template_db) as fresh:
        ingest(fresh, CASE / "events.jsonl", program)
        assert export(database_url) == export(fresh)


def _wait_for_offset(url: str, topic: str, offset: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with connect(url) as conn:
            row = conn.execute(
                "SELECT coalesce(max(next_offset), 0) FROM consumer_offsets WHERE topic = %s",
                (topic,),
            ).fetchone()
        if row and row[0] >= offset:
            return
        time.sleep(0.2)
    raise AssertionError(f"the consumer did not reach offset {offset} of {topic}")
