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

from loyalty_ledger.kafka.partitioner import partition_for
from loyalty_ledger.kafka.settings import KafkaSettings
from loyalty_ledger.kafka.topics import create_topics
from loyalty_ledger.pipeline.commands import TRANSFER_CREDIT
from loyalty_ledger.store.db import connect
from served import Served, make_keys, served
from support import CASES, LOYALTY, assert_matches, export

EXAMPLES = Path(__file__).parents[2] / "examples"
PROGRAM_V2 = Path(__file__).with_name("program-v2.toml")


@contextmanager
def consumer(url: str, settings: KafkaSettings, program: Path, log_dir: Path,
             name: str = "consume") -> Iterator[None]:  # fmt: skip
    """`loyalty consume` in the background until the block ends (stopped with SIGTERM); its
    log is `name`.log in `log_dir`."""
    env = {**os.environ, "LOYALTY_DATABASE_URL": url, **_kafka_env(settings)}
    with (log_dir / f"{name}.log").open("wb") as log_file:
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


def _owned(log: Path, topic: str) -> set[int]:
    """The `topic` partitions a consumer owns by its log: those of its last assignment, unless
    a revocation came after it (the eager protocol revokes everything, then assigns)."""
    owned: set[int] = set()
    for line in log.read_text(errors="replace").splitlines() if log.exists() else ():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") in ("assigned", "revoked"):
            named = {int(p.rsplit("[", 1)[1].rstrip("]")) for p in record["partitions"]
                     if p.rsplit("[", 1)[0] == topic}  # fmt: skip
            owned = named if record["event"] == "assigned" else set()
    return owned


def _customer_in(partition: int, partitions: int, prefix: str) -> str:
    return next(
        c for i in range(1000) if partition_for(c := f"{prefix}{i}", partitions) == partition
    )


def test_transfers_posted_in_kafka_mode_reach_recipients_of_another_consumer_once(
    database_url: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    """A giver on partition 0 gives to a recipient on each other partition while two
    consumers share the four: the recipients the giver's consumer does not own are credited
    by the internal command, once; a resent body applies nothing again."""
    partitions, points = 4, 150
    create_topics(kafka_settings, partitions)
    giver = _customer_in(0, partitions, "giver-")
    takers = [_customer_in(n, partitions, "taker-") for n in range(1, partitions)]
    at = "2026-03-02T10:00:00Z"
    setup = [{"event_id": f"{c}-signup", "type": "signup", "occurred_at": "2026-03-01T10:00:00Z",
              "customer_id": c, "email": "x@example.org"} for c in [giver, *takers]]  # fmt: skip
    setup.append({"event_id": "give-adj", "type": "adjustment", "occurred_at": at,
                  "customer_id": giver, "points": 1000, "reason": "to give away"})  # fmt: skip
    transfers = [{"event_id": f"give-{t}", "type": "transfer", "occurred_at": at,
                  "customer_id": giver, "to_customer_id": t, "points": points}
                 for t in takers]  # fmt: skip
    logs = [tmp_path / "consume-a.log", tmp_path / "consume-b.log"]
    with kafka_served(database_url, kafka_settings, PROGRAM_V2, tmp_path) as server, \
            consumer(database_url, kafka_settings, PROGRAM_V2, tmp_path, "consume-a"), \
            consumer(database_url, kafka_settings, PROGRAM_V2, tmp_path, "consume-b"), \
            server.client("support") as client:  # fmt: skip
        _until(lambda: all(_owned(log, kafka_settings.inputs) for log in logs)
               and set().union(*(_owned(log, kafka_settings.inputs) for log in logs))
               == set(range(partitions)), timeout_s=60)  # fmt: skip
        givers = next(o for o in (_owned(log, kafka_settings.inputs) for log in logs) if 0 in o)
        crossing = {t for t in takers if partition_for(t, partitions) not in givers}
        assert client.post("/v1/events", json=setup).status_code == 200
        answer = client.post("/v1/events", json=transfers)
        assert answer.status_code == 200, answer.text
        assert [r["outcome"] for r in answer.json()["results"]] == ["accepted"] * len(takers)
        assert answer.json()["results"][-1]["balance"] == 100 + 1000 - points * len(takers)
        _until(lambda: all(client.get(f"/v1/customers/{t}").json()["transferred_in"] == points
                           for t in takers))  # fmt: skip
        again = client.post("/v1/events", json=transfers)
        assert [r["outcome"] for r in again.json()["results"]] == ["duplicate"] * len(takers)
    with connect(database_url) as conn:
        received = dict(conn.execute(
            "SELECT customer_id, sum(points) FROM ledger WHERE kind = 'transfer_in' "
            "GROUP BY customer_id"
        ).fetchall())  # fmt: skip
        commands = conn.execute(
            "SELECT customer_id, count(*) FROM inbox WHERE event_type = %s GROUP BY 1",
            (TRANSFER_CREDIT,),
        ).fetchall()
    assert received == {t: points for t in takers}
    # Those the giver's consumer does not own were credited by a command, applied once.
    assert crossing and dict(commands) == dict.fromkeys(crossing, 1), (commands, crossing)
