"""The Kafka path end to end on a real broker and PostgreSQL: exactly the file ingest's results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loyalty_ledger.kafka.settings import KafkaSettings
from loyalty_ledger.kafka.topics import create_topics
from loyalty_ledger.runtime.produce import produce_file
from loyalty_ledger.store.db import connect
from support import (
    AMENDED_CASES,
    CASES,
    amend,
    amendments_of,
    assert_matches,
    export,
    run_consumer,
    write_parts,
)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_one_partition_gives_exactly_the_contract(
    case: Path, database_url: str, kafka_settings: KafkaSettings
) -> None:
    create_topics(kafka_settings, 1)
    produce_file(kafka_settings, str(case / "events.jsonl"))
    run_consumer(database_url, kafka_settings, case / "program.toml")
    assert_matches(case, *export(database_url))


# Case 12 (two amendments, every version 2 feature) stands for the three: the file path
# runs all of them (test_conformance), and each costs ~15 s here.
@pytest.mark.parametrize(
    "case", [c for c in AMENDED_CASES if c.name == "case-12"], ids=lambda c: c.name
)
def test_one_partition_with_amendments_between_parts_gives_the_contract(
    case: Path, database_url: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """Part 1 produced and consumed, the program amended, part 2 produced and consumed...:
    the conformance checker's split, through the topic."""
    first, *rest = write_parts(case, tmp_path)
    create_topics(kafka_settings, 1)
    produce_file(kafka_settings, str(first))
    run_consumer(database_url, kafka_settings, case / "program.toml", idle_s=2)
    for (effective_at, program), part in zip(amendments_of(case), rest, strict=True):
        assert amend(database_url, program, effective_at).new
        produce_file(kafka_settings, str(part))
        run_consumer(database_url, kafka_settings, None, idle_s=2)
    assert_matches(case, *export(database_url))


def test_consuming_again_changes_nothing(database_url: str, kafka_settings: KafkaSettings) -> None:
    case = CASES[0]
    create_topics(kafka_settings, 1)
    produce_file(kafka_settings, str(case / "events.jsonl"))
    first = run_consumer(database_url, kafka_settings, case / "program.toml")
    assert first.accepted > 0
    again = run_consumer(database_url, kafka_settings, None, idle_s=2)
    assert again.inputs == 0  # resumed from the offsets stored in PostgreSQL
    produce_file(kafka_settings, str(case / "events.jsonl"))  # every message resent
    resent = run_consumer(database_url, kafka_settings, None, idle_s=2)
    assert resent.accepted == resent.rejected == 0
    assert resent.duplicates == first.accepted + first.rejected + first.duplicates
    rows, summary = export(database_url)
    # A resent malformed line is a new input at a new offset: dead-lettered again, with it.
    assert summary["dead_lettered"] == 2 * first.dead_lettered
    summary["dead_lettered"] = first.dead_lettered
    assert_matches(case, rows, summary)


def test_poison_messages_are_dead_lettered_and_the_partition_moves_on(
    database_url: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    case = CASES[0]
    lines = (case / "events.jsonl").read_text().splitlines()
    poison = [
        "not json at all",
        "x" * (1024 * 1024 + 10),
        json.dumps({"event_id": 5, "type": "purchase"}),
    ]
    path = tmp_path / "poisoned.jsonl"
    path.write_text("\n".join(lines[:50] + poison + lines[50:]) + "\n")
    create_topics(kafka_settings, 1)
    produce_file(kafka_settings, str(path))
    run_consumer(database_url, kafka_settings, case / "program.toml")
    rows, summary = export(database_url)
    summary["dead_lettered"] -= len(poison)
    assert_matches(case, rows, summary)
    with connect(database_url) as conn:
        found = conn.execute(
            "SELECT source, position, reason FROM dead_letters WHERE position BETWEEN 50 AND 52 "
            "ORDER BY position"
        ).fetchall()
    assert [p for _, p, _ in found] == [50, 51, 52]
    assert all(source.endswith(".inputs:0") for source, _, _ in found)
