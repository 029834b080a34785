"""The HTTP API in Kafka mode on the test broker: the server publishes, `loyalty consume`
writes, and the answer comes once the consumer group has committed (LISTEN/NOTIFY)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from loyalty_ledger.kafka.settings import KafkaSettings
from loyalty_ledger.kafka.topics import create_topics
from served import Served, make_keys, served
from support import CASES, LOYALTY, assert_matches, export

EXAMPLES = Path(__file__).parents[2] / "examples"


@contextmanager
def consumer(url: str, settings: KafkaSettings, program: Path, log_dir: Path) -> Iterator[None]:
    """`loyalty consume` in the background until the block ends (stopped with SIGTERM)."""
    env = {**os.environ, "LOYALTY_DATABASE_URL": url, **_kafka_env(settings)}
    with (log_dir / "consume.log").open("wb") as log_file:
        process = subprocess.Popen(
            [LOYALTY, "consume", "--group", f"g-{settings.prefix}", "--program", str(program),
             "--batch-ms", "20"],
            env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield
    finally:
        process.terminate()
        process.wait(30)


def _kafka_env(settings: KafkaSettings) -> dict[str, str]:
    return {"LOYALTY_KAFKA_BOOTSTRAP": settings.bootstrap,
            "LOYALTY_KAFKA_TOPIC_PREFIX": settings.prefix}  # fmt: skip


@contextmanager
def kafka_served(
    url: str, settings: KafkaSettings, program: Path, tmp_path: Path, wait_s: str = "20"
) -> Iterator[Served]:
    with served(url, program, tmp_path, keys=make_keys(url),
                args=["--group", f"g-{settings.prefix}", "--answer-wait", wait_s],
                env=_kafka_env(settings)) as server:  # fmt: skip
        yield server


def _lines(case: Path) -> list[bytes]:
    return [line for line in (case / "events.jsonl").read_bytes().splitlines() if line.strip()]


def _bodies(lines: list[bytes], size: int) -> list[bytes]:
    """Arrays of up to `size` lines, in order; a line that is not JSON goes alone (as its own
    body it is dead-lettered whole; inside an array it would spoil the array)."""
    bodies: list[bytes] = []
    chunk: list[bytes] = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            bodies += [b"[" + b",".join(chunk) + b"]"] if chunk else []
            bodies.append(line)
            chunk = []
            continue
        chunk.append(line)
        if len(chunk) == size:
            bodies.append(b"[" + b",".join(chunk) + b"]")
            chunk = []
    return bodies + ([b"[" + b",".join(chunk) + b"]"] if chunk else [])


@pytest.mark.parametrize("partitions", [4])  # one partition: test_api.py's embedded cases
def test_a_case_posted_in_kafka_mode_gives_the_file_ingests_read_models(
    database_url: str, kafka_settings: KafkaSettings, tmp_path: Path, partitions: int
) -> None:
    case = CASES[2]
    create_topics(kafka_settings, partitions)
    program = case / "program.toml"
    with kafka_served(database_url, kafka_settings, program, tmp_path) as server, \
            consumer(database_url, kafka_settings, program, tmp_path), \
            server.client("admin") as client:  # fmt: skip
        for body in _bodies(_lines(case), 200):
            answer = client.post("/v1/events", content=body)
            assert answer.status_code in (200, 422), answer.text
    rows, summary = export(database_url)
    summary["accepted"]["tick"] //= partitions  # a tick is copied to every partition
    assert_matches(case, rows, summary)


def test_kafka_mode_answers_after_commit_retries_and_202(
    database_url: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    create_topics(kafka_settings, 2)
    program = EXAMPLES / "program.toml"
    events = [json.loads(line) for line in (EXAMPLES / "events.jsonl").read_text().splitlines()]
    with kafka_served(database_url, kafka_settings, program, tmp_path, wait_s="1") as server, \
            server.client("pos") as client:  # fmt: skip
        pending = client.post("/v1/events", json=events[:2])  # no consumer yet: 202
        assert pending.status_code == 202, pending.text
        assert pending.json()["events"] == ["/v1/events/e001", "/v1/events/e002"]
        assert client.get("/v1/events/e001").status_code == 404
        with consumer(database_url, kafka_settings, program, tmp_path):
            _until(lambda: client.get("/v1/events/e002").status_code == 200)
            again = client.post("/v1/events", json=events[:3])
            assert again.status_code == 200, again.text
            results = again.json()["results"]
            assert [r["outcome"] for r in results] == ["duplicate", "duplicate", "accepted"]
            assert results[0]["first"] == {"outcome": "accepted", "reason": None}
            card = client.get(f"/v1/customers/{results[2]['customer_id']}").json()
            assert card["balance"] == results[2]["balance"]  # read-your-writes
            bad = client.post("/v1/events", content=b'{"type": "purchase", "event_id": ')
            assert bad.status_code == 422


def _until(check: object, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("timed out")
