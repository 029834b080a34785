"""Kafka plumbing on a real broker: settings, topics, `loyalty produce` and `loyalty tick`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from loyalty_ledger.kafka.partitioner import partition_for
from loyalty_ledger.kafka.settings import (
    KafkaConfigError,
    KafkaSettings,
    client_logger,
    parse_config,
)
from loyalty_ledger.kafka.topics import (
    METADATA_TIMEOUT_S,
    TopicError,
    create_topics,
    partition_count,
    topic_partitions,
)
from loyalty_ledger.runtime.produce import messages_for, produce_file, send_tick, tick_message

LOYALTY = str(Path(sys.executable).with_name("loyalty"))
CONFORMANCE = Path(__file__).parents[1] / "conformance"
READ_TIMEOUT_S = 30.0

# ------------------------------------------------------------------ without a broker


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LOYALTY_KAFKA_BOOTSTRAP", "LOYALTY_KAFKA_TOPIC_PREFIX", "LOYALTY_KAFKA_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    default = KafkaSettings.from_env()
    assert (default.bootstrap, default.prefix, default.extra) == ("127.0.0.1:9092", "loyalty", {})
    assert default.topics == ("loyalty.inputs", "loyalty.internal", "loyalty.ledger",
                              "loyalty.deadletter")  # fmt: skip
    monkeypatch.setenv("LOYALTY_KAFKA_BOOTSTRAP", "k1:9092,k2:9092")
    monkeypatch.setenv("LOYALTY_KAFKA_TOPIC_PREFIX", "shop-eu")
    monkeypatch.setenv("LOYALTY_KAFKA_CONFIG", "security.protocol=SASL_SSL, sasl.mechanism=PLAIN,")
    settings = KafkaSettings.from_env()
    assert settings.inputs == "shop-eu.inputs" and settings.deadletter == "shop-eu.deadletter"
    assert settings.client(**{"linger.ms": 5}) == {
        "bootstrap.servers": "k1:9092,k2:9092", "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN", "linger.ms": 5,
    }  # fmt: skip
    assert KafkaSettings.from_env("flag:9092").bootstrap == "flag:9092"  # a flag wins


@pytest.mark.parametrize("text", ["novalue", "=x", "a=1,broken"])
def test_malformed_client_config_is_refused(text: str) -> None:
    with pytest.raises(KafkaConfigError, match="is not key=value"):
        parse_config(text)


def test_bad_prefix_is_refused() -> None:
    with pytest.raises(KafkaConfigError, match="topic prefix"):
        KafkaSettings("127.0.0.1:9092", prefix="shop eu")


def test_lines_become_messages() -> None:
    keyed = b'{"event_id": "e1", "type": "signup", "customer_id": "c7"}'
    assert [(m.value, m.key, m.partition) for m in messages_for(keyed, 3)] == [(keyed, b"c7", None)]
    for malformed in (b'{"event_id": "e2", "ty', b"[1, 2]", b'{"customer_id": 7}', b"\xff\xfe"):
        assert [(m.value, m.key, m.partition) for m in messages_for(malformed, 3)] == [
            (malformed, None, None)
        ]
    tick = b'{"event_id": "tick-1", "type": "tick", "occurred_at": "2026-03-01T00:00:00Z"}'
    copies = messages_for(tick, 3)
    assert [m.partition for m in copies] == [0, 1, 2]
    assert [json.loads(m.value)["event_id"] for m in copies] == ["tick-1@p0", "tick-1@p1",
                                                                 "tick-1@p2"]  # fmt: skip
    assert all(m.key is None for m in copies)
    message = tick_message(datetime.fromisoformat("2026-03-01T00:00:00+01:00"), 5)
    assert message.partition == 5
    assert json.loads(message.value) == {
        "event_id": "tick-2026-03-01T00:00:00+01:00@p5", "type": "tick",
        "occurred_at": "2026-03-01T00:00:00+01:00",
    }  # fmt: skip


# ------------------------------------------------------------------ on the broker


def test_create_topics(kafka_settings: KafkaSettings) -> None:
    assert create_topics(kafka_settings, 3) == list(kafka_settings.topics)
    counts = topic_partitions(kafka_settings)
    assert {topic: counts.get(topic) for topic in kafka_settings.topics} == dict.fromkeys(
        kafka_settings.topics, 3
    )
    assert partition_count(kafka_settings, kafka_settings.internal) == 3
    assert create_topics(kafka_settings, 3) == []  # existing with the same count: fine
    with pytest.raises(TopicError, match=r"another partition count than 5 \(.*inputs has 3"):
        create_topics(kafka_settings, 5)


def test_producing_needs_the_topics(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    events = tmp_path / "one.jsonl"
    events.write_text('{"event_id": "e1", "type": "signup", "customer_id": "c1"}\n')
    with pytest.raises(TopicError, match=r"inputs does not exist.*loyalty topics create"):
        produce_file(kafka_settings, str(events))
    assert kafka_settings.inputs not in topic_partitions(kafka_settings)  # not auto-created


@pytest.mark.parametrize("case", ["case-01", "case-08"])  # 08 has malformed lines
def test_produce_publishes_every_line(kafka_settings: KafkaSettings, case: str) -> None:
    partitions = 4
    create_topics(kafka_settings, partitions)
    path = CONFORMANCE / case / "events.jsonl"
    lines = [raw.rstrip(b"\r\n") for raw in path.read_bytes().splitlines() if raw.strip()]
    ticks = [line for line in lines if _tick_id(line)]
    expected = len(lines) + len(ticks) * (partitions - 1)
    assert produce_file(kafka_settings, str(path)) == expected

    got = read_all(kafka_settings, partitions, expected)
    assert len(got) == expected
    plain = [m for m in got if not _tick_id(m.value() or b"")]
    assert Counter(m.value() for m in plain) == Counter(line for line in lines if line not in ticks)
    for message in plain:
        customer_id = _customer_id(message.value() or b"")
        assert message.key() == (customer_id.encode() if customer_id is not None else None)
        if customer_id is not None:  # Java's default partitioner's choice
            assert message.partition() == partition_for(customer_id, partitions)
    if case == "case-08":
        assert any(_customer_id(m.value() or b"") is None for m in plain)  # malformed ones kept
    _assert_partition_order(got, lines, partitions)


def test_tick_goes_to_every_partition(kafka_settings: KafkaSettings) -> None:
    create_topics(kafka_settings, 3)
    at = datetime.fromisoformat("2026-03-01T00:00:00+01:00")
    assert send_tick(kafka_settings, at) == 3
    got = read_all(kafka_settings, 3, 3)
    assert sorted((m.partition(), json.loads(m.value() or b"")["event_id"]) for m in got) == [
        (p, f"tick-2026-03-01T00:00:00+01:00@p{p}") for p in range(3)
    ]
    assert {json.loads(m.value() or b"")["occurred_at"] for m in got} == {at.isoformat()}
    with pytest.raises(ValueError, match="no UTC offset"):
        send_tick(kafka_settings, datetime(2026, 3, 1))


def test_cli_topics_produce_tick(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    env = {**os.environ, "LOYALTY_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
           "LOYALTY_KAFKA_TOPIC_PREFIX": kafka_settings.prefix}  # fmt: skip
    created = run(["topics", "create", "--partitions", "2"], env)
    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines()[0] == f"{kafka_settings.inputs}\t2\tcreated"
    listed = run(["topics", "list"], env)
    assert listed.stdout.splitlines() == sorted(f"{t}\t2" for t in kafka_settings.topics)
    mismatch = run(["topics", "create", "--partitions", "3"], env)
    assert_one_line_error(mismatch, "another partition count than 3")
    stdin = '{"event_id": "e1", "type": "signup", "customer_id": "c1"}\n\nnot json\n'
    produced = run(["produce", "-"], env, stdin=stdin)
    assert produced.returncode == 0, produced.stderr
    assert json.loads(produced.stderr.splitlines()[-1])["messages"] == 2
    ticked = run(["tick", "--at", "2026-03-01T00:00:00Z"], env)
    assert ticked.returncode == 0, ticked.stderr
    values = [m.value() for m in read_all(kafka_settings, 2, 4)]
    assert len(values) == 4 and b"not json" in values
    assert_one_line_error(run(["tick", "--at", "2026-03-01T00:00:00"], env), "no UTC offset")


def test_unreachable_broker_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a loopback port where nothing listens
        probe.bind(("127.0.0.1", 0))
        bootstrap = f"127.0.0.1:{probe.getsockname()[1]}"
    events = tmp_path / "events.jsonl"
    events.write_text('{"event_id": "e1", "type": "signup", "customer_id": "c1"}\n')
    commands = [["topics", "create", "--partitions", "2"], ["topics", "list"],
                ["produce", str(events)], ["tick", "--at", "2026-03-01T00:00:00Z"]]  # fmt: skip
    started = time.monotonic()
    running = [
        subprocess.Popen([LOYALTY, *command, "--bootstrap", bootstrap], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        for command in commands
    ]  # fmt: skip
    for process in running:
        stdout, stderr = process.communicate(timeout=30)
        done = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        assert_one_line_error(done, f"kafka at {bootstrap}")
        assert "refused" in stderr
    # What this guards: no command waits out librdkafka's defaults (minutes) but gives up after
    # its own metadata timeout. The margin is for four Pythons starting at once beside the
    # suite's other workers on 2 cores (14.6 s seen there with a benchmark running too).
    assert time.monotonic() - started < METADATA_TIMEOUT_S + 15


# ------------------------------------------------------------------ helpers


def read_all(settings: KafkaSettings, partitions: int, expected: int) -> list[Message]:
    """Every message of the inputs topic from the start: `expected` of them, or the timeout.

    No watermarks (Tansu's are not reliable): reads until the count, then briefly for extras.
    """
    consumer = Consumer({
        **settings.client(), "group.id": f"{settings.prefix}-reader", "enable.auto.commit": False,
        "session.timeout.ms": 6000, "logger": client_logger(),
    })  # fmt: skip
    consumer.assign([TopicPartition(settings.inputs, p, OFFSET_BEGINNING)
                     for p in range(partitions)])  # fmt: skip
    got: list[Message] = []
    try:
        deadline = time.monotonic() + READ_TIMEOUT_S
        while len(got) < expected and time.monotonic() < deadline:
            got += _batch(consumer, 0.5)
        got += _batch(consumer, 0.3)  # anything past the expected count: a duplicate
    finally:
        consumer.close()
    return got


def _batch(consumer: Consumer, timeout_s: float) -> list[Message]:
    batch = consumer.consume(1000, timeout_s)
    errors = [m.error() for m in batch if m.error()]
    assert not errors, errors
    return batch


def _assert_partition_order(got: list[Message], lines: list[bytes], partitions: int) -> None:
    """Each partition holds its keyed lines and tick copies in file order (unkeyed: anywhere)."""
    wanted: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    for line in lines:
        for message in messages_for(line, partitions):
            if message.partition is not None:
                wanted[message.partition].append(message.value)
            elif message.key is not None:
                wanted[partition_for(message.key.decode(), partitions)].append(message.value)
    for p in range(partitions):
        seen = [m.value() for m in sorted(got, key=lambda m: m.offset() or 0) if m.partition() == p]
        assert [v for v in seen if _keyed_or_tick(v or b"")] == wanted[p]


def _keyed_or_tick(value: bytes) -> bool:
    return _tick_id(value) is not None or _customer_id(value) is not None


def _json(value: bytes) -> dict[str, Any] | None:
    try:
        decoded = json.loads(value)
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None


def _tick_id(value: bytes) -> str | None:
    event = _json(value)
    if event is None or event.get("type") != "tick":
        return None
    event_id = event.get("event_id")
    return event_id if isinstance(event_id, str) else None


def _customer_id(value: bytes) -> str | None:
    event = _json(value)
    customer_id = event.get("customer_id") if event else None
    return customer_id if isinstance(customer_id, str) else None


def run(args: list[str], env: dict[str, str], stdin: str | None = None
        ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run([LOYALTY, *args], env=env, input=stdin, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def assert_one_line_error(done: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("loyalty: ") and fragment in lines[0], lines[0]
