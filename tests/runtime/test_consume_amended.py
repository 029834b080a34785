"""`loyalty program amend` while `loyalty consume` runs: picked up at the next batch, no restart.

Case 12 (609 lines, two amendments) is cut as the conformance checker cuts it. Part 1 is
produced, the consumers apply all of it, then the program is amended with the command a
user runs, and the next part is produced, and so on. Every consumer is the process that
started before the first amendment; what it ends with is what the file ingest of the
same split gives (PROGRAM.md's results: one partition exactly, several partitions with
their invariants).
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_consume_faults import (
    GROUP,
    START_TIMEOUT_S,
    Member,
    assert_every_offset_once,
    assert_gapless,
    assert_invariants,
    lines_of,
    stream_of,
    wait_until,
)

from conftest import PgServer, twin_database
from loyalty_ledger.kafka.settings import KafkaSettings
from loyalty_ledger.kafka.topics import create_topics
from loyalty_ledger.runtime.produce import produce_file
from loyalty_ledger.store.db import connect
from support import (
    AMENDED_CASES,
    LOYALTY,
    amendments_of,
    assert_matches,
    export,
    ingest_amended,
    run,
    write_parts,
)

CASE = next(case for case in AMENDED_CASES if case.name == "case-12")
APPLY_TIMEOUT_S = 60.0  # a part of case 12 through running consumers, on a loaded machine


@pytest.fixture
def env(cli_env: dict[str, str], kafka_settings: KafkaSettings) -> dict[str, str]:
    return {**cli_env, "LOYALTY_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
            "LOYALTY_KAFKA_TOPIC_PREFIX": kafka_settings.prefix}  # fmt: skip


@pytest.fixture
def members() -> Iterator[list[Member]]:
    """Consumers started by a test; whatever still runs at its end is killed."""
    started: list[Member] = []
    try:
        yield started
    finally:
        for member in started:
            member.kill()


def start(env: dict[str, str], folder: Path, members: list[Member]) -> Member:
    """A `loyalty consume` that runs until stopped (no idle exit): it must live through
    the amendments."""
    args = ["consume", "--group", GROUP, "--program", str(CASE / "program.toml"),
            "--batch-size", "50", "--batch-ms", "100"]  # fmt: skip
    log = folder / f"consumer-{len(members)}.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen([LOYALTY, *args], env=env, stdin=subprocess.DEVNULL,
                                stdout=sink, stderr=subprocess.STDOUT)  # fmt: skip
    members.append(Member(proc, log))
    return members[-1]


def applied(url: str, settings: KafkaSettings, messages: int) -> bool:
    """Every input produced so far, and every internal command they caused, is applied.
    One statement, one snapshot: read apart, a batch committing in between (its inputs
    counted, its command not) would look done."""
    with connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets "
            "WHERE group_id = %(group)s AND topic = %(inputs)s), "
            "(SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets "
            "WHERE group_id = %(group)s AND topic = %(internal)s), "
            "(SELECT position FROM relay_checkpoints WHERE name = 'internal'), "
            "(SELECT coalesce(max(id), 0) FROM outbox), (SELECT count(*) FROM outbox)",
            {"group": GROUP, "inputs": settings.inputs, "internal": settings.internal},
        ).fetchone()
    assert row is not None
    inputs, internal, relayed, last, commands = row
    return bool(inputs == messages and relayed == last and internal == commands)


def feed_with_amendments(
    url: str, settings: KafkaSettings, env: dict[str, str], folder: Path, partitions: int,
    running: list[Member],
) -> None:  # fmt: skip
    """Each part produced and applied by the running consumers, then the next amendment by
    `loyalty program amend`, as a user runs it, then the next part."""
    first, *rest = write_parts(CASE, folder)
    produced = stream_of(lines_of_file(first), partitions).messages
    produce_file(settings, str(first))
    for (effective_at, program), part in zip(amendments_of(CASE), rest, strict=True):
        wait_until("the part applied", lambda n=produced: applied(url, settings, n),  # type: ignore[misc]
                   APPLY_TIMEOUT_S, *running)  # fmt: skip
        done = run(["program", "amend", str(program), "--effective-at", effective_at], env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("amended: "), done.stdout
        produce_file(settings, str(part))
        produced += stream_of(lines_of_file(part), partitions).messages
    wait_until("the last part applied", lambda: applied(url, settings, produced),
               APPLY_TIMEOUT_S, *running)  # fmt: skip
    for member in running:
        assert member.proc.poll() is None, f"a consumer exited: {member.tail()}"
        member.proc.send_signal(signal.SIGTERM)  # the batch in hand, then leave the group
    for member in running:
        assert member.wait() == 0, member.tail()


def lines_of_file(path: Path) -> list[bytes]:
    raw = path.read_bytes().splitlines()
    return [line.rstrip(b"\r\n") for line in raw if line.strip()]  # as produce_file reads them


def reloads(member: Member) -> list[str]:
    """The log lines where the consumer changed its pipeline for an amended program."""
    return [line for line in member.log.read_text().splitlines()
            if '"event": "generation_changed"' in line and "amended" in line]  # fmt: skip


def test_one_consumer_picks_each_amendment_up_without_a_restart(
    database_url: str, kafka_settings: KafkaSettings, env: dict[str, str], tmp_path: Path,
    members: list[Member], pg_server: PgServer, template_db: str,
) -> None:  # fmt: skip
    create_topics(kafka_settings, 1)
    consumer = start(env, tmp_path, members)
    wait_until("assignment", lambda: consumer.logged("assigned"), START_TIMEOUT_S, consumer)
    feed_with_amendments(database_url, kafka_settings, env, tmp_path, 1, [consumer])
    # The one process decided each part after an amendment under the new history: its
    # first batch after it was refused (ProgramAmended) and decided again.
    assert len(reloads(consumer)) == len(amendments_of(CASE)), consumer.tail()
    rows, summary = export(database_url)
    assert_matches(CASE, rows, summary)
    with twin_database(pg_server, template_db) as by_file:  # the same split, from files
        ingest_amended(by_file, CASE, tmp_path)
        assert (rows, summary) == export(by_file)
    stream = stream_of(lines_of(CASE), 1)
    assert_every_offset_once(database_url, kafka_settings, stream)
    assert_gapless(database_url)


def test_eight_partitions_two_consumers_pick_the_amendments_up(
    database_url: str, kafka_settings: KafkaSettings, env: dict[str, str], tmp_path: Path,
    members: list[Member],
) -> None:  # fmt: skip
    partitions = 8
    create_topics(kafka_settings, partitions)
    one, two = start(env, tmp_path, members), start(env, tmp_path, members)
    wait_until("both assigned", lambda: one.logged("assigned") and two.logged("assigned"),
               START_TIMEOUT_S, one, two)  # fmt: skip
    feed_with_amendments(database_url, kafka_settings, env, tmp_path, partitions, [one, two])
    assert reloads(one) and reloads(two), "each process should have reloaded the program"
    lines = lines_of(CASE)
    stream = stream_of(lines, partitions)
    assert_every_offset_once(database_url, kafka_settings, stream)
    assert_invariants(CASE, database_url, kafka_settings.inputs, lines, stream)
    with connect(database_url) as conn:
        versions = conn.execute("SELECT count(*) FROM program_amendments").fetchone()
    assert versions == (len(amendments_of(CASE)),)
