"""`loyalty consume` under faults, on the real broker and PostgreSQL: exactly once, always.

Every consumer here is a `loyalty consume` subprocess: killed with SIGKILL at
random (seeded) instants, crashed deterministically between the PostgreSQL
commit and the courtesy commit to Kafka, joined and left by a second member.
One partition must give exactly PROGRAM.md's results; several partitions
must keep the invariants (non-referrers exact, conservation, gapless
versions, every input and every offset once, every internal command applied
once). The last test replays a rebalance through KafkaSource's callbacks.

Restarts after a kill -9 use static group membership (`group.instance.id`,
passed through LOYALTY_KAFKA_CONFIG like any librdkafka setting): the new
process takes the dead one's place without waiting out its session timeout
(~12 s a restart on Tansu otherwise). Tansu still holds every static JoinGroup
and SyncGroup for 3 s (PAUSE_MS in its group coordinator), so a restart costs
~7 s: most of this file's time. The rebalance tests use plain dynamic members,
so a killed member is dropped by its session timeout.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from psycopg import sql

from loyalty_ledger import events as ev
from loyalty_ledger.engine import compile_rules
from loyalty_ledger.generations import programs
from loyalty_ledger.kafka.partitioner import partition_for
from loyalty_ledger.kafka.settings import ENV_CONFIG, KafkaSettings
from loyalty_ledger.kafka.topics import create_topics
from loyalty_ledger.ledger.entries import BALANCE_SIGN
from loyalty_ledger.pipeline import Pipeline
from loyalty_ledger.pipeline import commands as commands_module
from loyalty_ledger.runtime.produce import messages_for, produce_file
from loyalty_ledger.sources.kafka import KafkaSource, PartitionRouting
from loyalty_ledger.sources.line import Line
from loyalty_ledger.store.db import Connection, connect
from support import CASES, assert_matches, expected, export, norm

LOYALTY = str(Path(sys.executable).with_name("loyalty"))
GROUP = "g"
START_TIMEOUT_S = 30.0  # process start, PostgreSQL, metadata and Tansu's 3 s join delay
RUN_TIMEOUT_S = 90.0  # a consumer that should exit by itself (idle) does so within this
# Version 2 with transfers between customers of different partitions (15 accepted).
TRANSFERS_CASE = next(case for case in CASES if case.name == "case-13")
COURTESY_CRASHES_WHEN_TWICE = (2, 3, 2)  # of 75 batches of 50: each life makes progress

# The consumer as a `python -c` child: the same `loyalty` entry point, with the courtesy
# commit to Kafka replaced by a crash on its Nth call. That instant is after the batch's
# PostgreSQL commit and before Kafka hears of it: a restart must resume from PostgreSQL.
CRASH_AT_COURTESY = """
import os, sys
from loyalty_ledger import cli
from loyalty_ledger.sources.kafka import KafkaSource

crash_at = int(os.environ["CRASH_AT_COURTESY"])
original = KafkaSource.commit_courtesy
calls = 0

def commit_courtesy(self, next_offsets):
    global calls
    if next_offsets:
        calls += 1
        if calls >= crash_at:
            os._exit(137)
    original(self, next_offsets)

KafkaSource.commit_courtesy = commit_courtesy
sys.exit(cli.main(sys.argv[1:]))
"""


# ------------------------------------------------------------------ processes


@dataclass
class Member:
    """One consumer process and its stderr log (JSON lines)."""

    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def owner(self) -> str:
        return f"{socket.gethostname()}:{self.proc.pid}"  # as sources.kafka.consumer_name

    def logged(self, event: str) -> bool:
        return self.count(event) > 0

    def count(self, event: str) -> int:
        return self.log.read_bytes().count(f'"event": "{event}"'.encode())

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def wait(self, timeout_s: float = RUN_TIMEOUT_S) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"consumer did not exit within {timeout_s:.0f} s: {self.tail()}")

    def tail(self) -> str:
        return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-5:])


@dataclass
class Fleet:
    """Starts consumers; whatever still runs at the end of a test is killed (fixture teardown)."""

    env: dict[str, str]
    program: Path
    folder: Path
    members: list[Member] = field(default_factory=list)
    batch_size: int = 50
    group: str = field(default_factory=lambda: GROUP)  # this test's (see _group_of_its_own)

    def start(self, instance: str | None = None, crash_at_courtesy: int | None = None) -> Member:
        env = dict(self.env)
        if instance is not None:  # static membership: a restart takes the dead one's place
            env[ENV_CONFIG] = ",".join(
                x for x in (env.get(ENV_CONFIG, ""), f"group.instance.id={instance}") if x
            )
        args = ["consume", "--group", self.group, "--program", str(self.program),
                "--batch-size", str(self.batch_size),
                "--batch-ms", "100", "--stop-when-idle", "3"]  # fmt: skip
        if crash_at_courtesy is None:
            command = [LOYALTY, *args]
        else:
            command = [sys.executable, "-c", CRASH_AT_COURTESY, *args]
            env["CRASH_AT_COURTESY"] = str(crash_at_courtesy)
        log = self.folder / f"consumer-{len(self.members)}.log"
        with open(log, "wb") as sink:
            proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=sink,
                                    stderr=subprocess.STDOUT)  # fmt: skip
        member = Member(proc, log)
        self.members.append(member)
        return member

    def kill_all(self) -> None:
        for member in self.members:
            member.kill()


@pytest.fixture
def fleet_for(
    cli_env: dict[str, str], kafka_bootstrap: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> Iterator[Callable[[Path], Fleet]]:
    env = {**cli_env, "LOYALTY_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "LOYALTY_KAFKA_TOPIC_PREFIX": kafka_settings.prefix}  # fmt: skip
    fleets: list[Fleet] = []

    def make(case: Path) -> Fleet:
        fleets.append(Fleet(env, case / "program.toml", tmp_path))
        return fleets[-1]

    try:
        yield make
    finally:
        for fleet in fleets:
            fleet.kill_all()


@pytest.fixture(autouse=True)
def _group_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's consumers in a consumer group of their own: members that a test before
    killed (or that Tansu still counts) stay in a shared group and hold new members' joins."""
    monkeypatch.setitem(globals(), "GROUP", f"g-{uuid.uuid4().hex[:12]}")


def wait_until(what: str, condition: Callable[[], bool], timeout_s: float = START_TIMEOUT_S,
               *alive: Member) -> None:  # fmt: skip
    """Poll `condition` (bounded in time); fail early if a member that should run has exited."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        for member in alive:
            if member.proc.poll() is not None:
                pytest.fail(f"consumer exited ({member.proc.returncode}) before {what}: "
                            f"{member.tail()}")  # fmt: skip
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout_s:.0f} s")
        time.sleep(0.02)


# --------------------------------------------------------------- broker and db


def offsets_in_pg(url: str, topic: str, group: str | None = None) -> dict[int, tuple[int, str]]:
    """partition -> (next offset, owner) as PostgreSQL has them for the group."""
    group = group or GROUP
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT partition, next_offset, owner FROM consumer_offsets "
            "WHERE group_id = %s AND topic = %s",
            (group, topic),
        ).fetchall()
    return {int(p): (int(o), str(w)) for p, o, w in rows}


def consumed(url: str, topic: str, group: str | None = None) -> int:
    return sum(o for o, _ in offsets_in_pg(url, topic, group).values())


def kafka_committed(settings: KafkaSettings, topic: str) -> int:
    """The group's offset committed to Kafka for partition 0 (-1: none), read without joining."""
    client = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": GROUP,
                       "enable.auto.commit": False, **settings.extra})  # fmt: skip
    try:
        (found,) = client.committed([TopicPartition(topic, 0)], timeout=10)
        return max(found.offset, -1)
    finally:
        client.close()


def assert_every_offset_once(
    url: str, settings: KafkaSettings, stream: Stream, group: str | None = None
) -> None:
    """Every offset below each stored next offset ended in exactly one place (inbox, dead
    letters, duplicates), once; the inputs' next offsets are the ends of what was produced;
    every command written to the outbox was relayed.

    Counted from PostgreSQL rather than from watermarks: Tansu reports a partition's high
    watermark as the base offset of its last record batch + 1, short of the real end.
    """
    with connect(url) as conn:
        found = conn.execute(
            "SELECT source, array_agg(position ORDER BY position) FROM (SELECT source, position "
            "FROM inbox UNION ALL SELECT source, position FROM dead_letters UNION ALL "
            "SELECT source, position FROM duplicates) p GROUP BY source"
        ).fetchall()
        relayed = conn.execute(
            "SELECT (SELECT position FROM relay_checkpoints WHERE name = 'internal'), "
            "(SELECT coalesce(max(id), 0) FROM outbox)"
        ).fetchone()
    seen = {source: positions for source, positions in found}
    for topic in (settings.inputs, settings.internal):
        for p, (next_offset, _) in offsets_in_pg(url, topic, group).items():
            positions = seen.pop(f"kafka:{topic}:{p}", [])
            assert positions == list(range(next_offset)), f"{topic}[{p}]: offsets not once each"
    assert seen == {}, f"inputs recorded without a stored offset: {sorted(seen)}"
    stored = {p: o for p, (o, _) in offsets_in_pg(url, settings.inputs, group).items()}
    for p in range(stream.partitions):
        least = stream.placed.get(p, 0)
        assert least <= stored.get(p, 0) <= least + stream.unplaced, f"inputs[{p}]: {stored}"
    assert sum(stored.values()) == stream.messages, "not every produced input was consumed"
    assert relayed is not None and relayed[0] == relayed[1], f"outbox relayed up to {relayed}"


# ----------------------------------------------------------------- expectations


@dataclass(frozen=True)
class Stream:
    """What the broker holds after producing a case: the fate of every message, computed here."""

    partitions: int
    messages: int
    placed: dict[int, int]  # messages per partition, of those whose partition is known
    unplaced: int  # keyless messages: the partitioner picks one at random
    valid_ids: list[str]  # unique event ids of decodable messages, first arrival
    dead: int
    duplicates: int
    duplicates_other_body: int


def lines_of(case: Path) -> list[bytes]:
    raw = (case / "events.jsonl").read_bytes().splitlines()
    return [line.rstrip(b"\r\n") for line in raw if line.strip()]  # as produce_file reads them


def stream_of(lines: list[bytes], partitions: int, copies: int = 1) -> Stream:
    seen: dict[str, bytes] = {}
    placed: Counter[int] = Counter()
    messages = unplaced = dead = duplicates = other = 0
    for _ in range(copies):
        for line in lines:
            for message in messages_for(line, partitions):
                messages += 1
                if message.partition is not None:
                    placed[message.partition] += 1
                elif message.key is not None:
                    placed[partition_for(message.key.decode(), partitions)] += 1
                elif partitions == 1:
                    placed[0] += 1
                else:
                    unplaced += 1
                item = ev.decode(message.value)
                if isinstance(item, ev.Invalid):
                    dead += 1
                    continue
                body = hashlib.sha256(message.value).digest()
                known = seen.get(item.event_id)
                if known is None:
                    seen[item.event_id] = body
                else:
                    duplicates += 1
                    other += known != body
    return Stream(partitions, messages, dict(placed), unplaced, list(seen), dead, duplicates, other)


def referrers_of(lines: list[bytes]) -> set[str]:
    """Customers a referral or a signup names as referrer, or a transfer as recipient: their
    credits may travel as commands, and arrive later than in the one-stream order."""
    found: set[str] = set()
    for line in lines:
        try:
            body = json.loads(line)
        except ValueError:
            continue
        if isinstance(body, dict):
            found.update(
                v
                for k in ("referrer_id", "referred_by", "to_customer_id")
                if isinstance(v := body.get(k), str)
            )
    return found


def assert_exactly_once(url: str, stream: Stream) -> None:
    """No message was applied twice or read twice: the duplicates are the stream's own."""
    with connect(url) as conn:
        reread = conn.execute(
            "SELECT count(*) FROM duplicates d JOIN inbox i USING (source, position)"
        ).fetchone()
        assert reread == (0,), "a message was applied, then read again as a duplicate"
    _, summary = export(url)
    assert summary["dead_lettered"] == stream.dead
    assert summary["duplicates"] == stream.duplicates
    assert summary["duplicates_with_other_body"] == stream.duplicates_other_body


def assert_invariants(
    case: Path, url: str, inputs_topic: str, lines: list[bytes], stream: Stream
) -> None:
    """What several partitions must keep, whatever the interleaving of their consumers."""
    rows, summary = export(url)
    got = {row["customer_id"]: row for row in rows}
    want_rows, want_summary = expected(case)
    referrers = referrers_of(lines)
    assert {r["customer_id"] for r in want_rows} <= set(got), "an enrolled customer is missing"
    exact = 0
    for want in want_rows:
        if want["customer_id"] in referrers:
            continue
        mine = got[want["customer_id"]]
        assert {k: norm(k, mine.get(k)) for k in want} == {
            k: norm(k, v) for k, v in want.items()
        }, want["customer_id"]
        exact += 1
    assert exact >= len(want_rows) // 2, "too few non-referrers to prove anything"

    # Every qualified referral credited its referrer once: in the batch, or by a command.
    assert sum(norm("referrals_qualified", r["referrals_qualified"]) for r in rows) == sum(
        norm("referrals_qualified", w["referrals_qualified"]) for w in want_rows
    )

    # Every input ended in exactly one place, once: the contract's totals, ticks once for
    # each partition.
    accepted, rejected = sum(summary["accepted"].values()), sum(summary["rejected"].values())
    assert accepted + rejected == len(stream.valid_ids)
    assert summary["dead_lettered"] == stream.dead
    ticks = want_summary["accepted"].get("tick", 0)
    assert summary["accepted"].get("tick", 0) == ticks * stream.partitions
    want_total = sum(want_summary["accepted"].values()) + sum(want_summary["rejected"].values())
    assert accepted + rejected == want_total + ticks * (stream.partitions - 1)
    with connect(url) as conn:
        (resent,) = conn.execute(  # not counting commands the relay may have sent twice
            "SELECT count(*) FROM duplicates WHERE source LIKE %s", (f"kafka:{inputs_topic}:%",)
        ).fetchone() or (None,)
        assert resent == stream.duplicates
        inbox = conn.execute("SELECT event_type, event_id FROM inbox").fetchall()
        inputs = Counter(i for t, i in inbox if t not in commands_module.COMMAND_TYPES)
        assert set(inputs) == set(stream.valid_ids) and max(inputs.values()) == 1

        # Internal commands: each one written to the outbox is applied exactly once.
        commands = Counter(json.loads(p)["command_id"] for (p,) in conn.execute(
            "SELECT payload FROM outbox"))  # fmt: skip
        assert max(commands.values(), default=1) == 1, "one command written twice"
        applied = Counter(i for t, i in inbox if t in commands_module.COMMAND_TYPES)
        assert applied == commands, "commands not applied exactly once"
        qualified = Counter(e for (e,) in conn.execute(
            "SELECT event_id FROM ledger WHERE kind = 'referral_qualified' AND event_id LIKE "
            "'%%/referrer'"))  # fmt: skip
        assert qualified == Counter(c for c in commands if c.endswith("/referrer"))
        assert_transfers_arrive_whole(conn)

        # Conservation (version 2), the projection's balance straight off the ledger.
        signed = sql.SQL(" ").join(
            sql.SQL("WHEN {} THEN {}").format(sql.Literal(kind.value), sql.Literal(sign))
            for kind, sign in BALANCE_SIGN.items()
        )
        broken = conn.execute(sql.SQL(
            "SELECT customer_id FROM balance b FULL JOIN (SELECT customer_id, "
            "sum(points * CASE kind {} END) AS moved FROM ledger WHERE kind = ANY(%s) "
            "GROUP BY customer_id) l USING (customer_id) "
            "WHERE b.customer_id IS NULL OR b.balance <> coalesce(l.moved, 0)"
        ).format(signed), ([k.value for k in BALANCE_SIGN],)).fetchall()  # fmt: skip
        assert broken == [], f"conservation broken for {broken[:5]}"
    assert_gapless(url)


def assert_transfers_arrive_whole(conn: Connection) -> None:
    """Every accepted transfer's points reached its recipient once: in the giver's batch
    (same event id) or as a command (`<event id>/transfer`), in lot parts that sum to it."""
    rows = conn.execute(
        "SELECT o.event_id, o.ref, o.points, coalesce(sum(i.points), 0), count(i.*) "
        "FROM ledger o LEFT JOIN ledger i ON i.kind = 'transfer_in' AND i.customer_id = o.ref "
        "AND i.event_id IN (o.event_id, o.event_id || '/transfer') "
        "WHERE o.kind = 'transfer_out' GROUP BY o.event_id, o.ref, o.points"
    ).fetchall()
    short = [(e, r, out, got) for e, r, out, got, parts in rows if got != out or parts == 0]
    assert short == [], f"transfers not received whole (event, to, out, in): {short[:5]}"


def assert_gapless(url: str) -> None:
    """Ledger versions 1..n per customer, and each snapshot at its customer's last version."""
    with connect(url) as conn:
        gaps = conn.execute(
            "SELECT customer_id, count(*), min(version), max(version) FROM ledger "
            "GROUP BY customer_id HAVING min(version) <> 1 OR max(version) <> count(*)"
        ).fetchall()
        behind = conn.execute(
            "SELECT s.customer_id, s.version, l.v FROM customer_state s LEFT JOIN "
            "(SELECT customer_id, max(version) AS v FROM ledger GROUP BY customer_id) l "
            "USING (customer_id) WHERE s.version <> coalesce(l.v, 0)"
        ).fetchall()
    assert gaps == [], f"ledger versions with gaps: {gaps[:5]}"
    assert behind == [], f"snapshots not at the last ledger version: {behind[:5]}"


# ------------------------------------------------------------------------ tests


@dataclass(frozen=True)
class Life:
    """One consumer process that crashed: the inputs' stored offset before and after it, and
    the offset Kafka had been told when it died."""

    crash_at_courtesy: int | None
    before: int
    after: int
    kafka: int


def crash_repeatedly(
    fleet: Fleet, plan: list[int | None], rng: random.Random, url: str, settings: KafkaSettings
) -> tuple[list[Life], Member]:
    """One `solo` consumer per plan item, each ended by a crash. None: SIGKILL at a random
    instant, either of its start on the partition (claim, seek, first batch: one in four) or
    after its first batch (the next ones: decide, write, commit, courtesy commit, relay). N:
    its own exit at its Nth courtesy commit. Returns the lives, and the next consumer, started
    already, to be left running until its idle exit.

    Each successor starts when its predecessor owns the partition: its start-up (~0.7 s before
    it asks to join) overlaps the predecessor's last instants (~0.2 s)."""
    topic = settings.inputs
    lives: list[Life] = []
    before = consumed(url, topic)
    member = fleet.start(instance="solo", crash_at_courtesy=plan[0] if plan else None)
    for i, crash_at in enumerate(plan):
        wait_until("assignment", lambda m=member: m.logged("assigned"), START_TIMEOUT_S, member)
        successor = fleet.start(instance="solo", crash_at_courtesy=(plan[i + 1 :] or [None])[0])
        if crash_at is None:
            if rng.random() < 0.25:
                time.sleep(rng.uniform(0.0, 0.1))  # anywhere in its start: progress or not
            else:
                # Scheduled by events, not the clock: a batch is logged when it is submitted
                # to the writer thread, and the next one only once the one before committed,
                # so the second log line means at least one batch is in PostgreSQL.
                wait_until("two batches", lambda m=member: m.count("batch") >= 2,
                           START_TIMEOUT_S, member)  # fmt: skip
            member.kill()
        else:
            assert member.wait() == 137, f"no crash at courtesy commit {crash_at}: {member.tail()}"
        after = consumed(url, topic)
        assert after >= before, "the stored offset went back"
        lives.append(Life(crash_at, before, after, kafka_committed(settings, topic)))
        before, member = after, successor
    return lives, member


def test_kill_9_at_random_points_then_restart_equals_a_clean_run(
    database_url: str, kafka_settings: KafkaSettings, fleet_for: Callable[[Path], Fleet]
) -> None:
    case = CASES[6]  # 2,404 lines: ~96 batches of 25, more than 12 lives of a few each
    lines = lines_of(case)
    create_topics(kafka_settings, 1)
    produce_file(kafka_settings, str(case / "events.jsonl"))
    fleet = fleet_for(case)
    fleet.batch_size = 25
    # 12 crash points (20 cost the suite 3 minutes; 12 still reach every kind): SIGKILL at
    # random instants, and at every third restart a crash right after the Nth batch's
    # PostgreSQL commit, before its courtesy commit to Kafka (N = 1..4).
    plan: list[int | None] = [None] * 12
    for n, at in enumerate((1, 4, 7, 10), start=1):
        plan[at] = n
    lives, final = crash_repeatedly(fleet, plan, random.Random(20), database_url, kafka_settings)
    for life in lives:
        if life.crash_at_courtesy is not None:  # PostgreSQL has N more batches; Kafka does not
            assert life.kafka < life.after, life
            assert life.before < life.after, life
    mid_stream = sum(life.before < life.after < len(lines) for life in lives)
    assert mid_stream >= 7, f"only {mid_stream} of the crashes landed mid-stream: {lives}"
    behind = sum(life.kafka < life.after for life in lives)
    assert behind >= 4, f"only {behind} crashes left Kafka's offset behind PostgreSQL's"

    assert final.wait() == 0, final.tail()
    stream = stream_of(lines, 1)
    assert_matches(case, *export(database_url))
    assert_exactly_once(database_url, stream)
    assert_every_offset_once(database_url, kafka_settings, stream)
    assert_gapless(database_url)


def test_every_message_twice(
    database_url: str, kafka_settings: KafkaSettings, fleet_for: Callable[[Path], Fleet]
) -> None:
    case = CASES[3]
    lines = lines_of(case)
    create_topics(kafka_settings, 1)
    produce_file(kafka_settings, str(case / "events.jsonl"))
    produce_file(kafka_settings, str(case / "events.jsonl"))  # every message resent
    fleet = fleet_for(case)
    # Crashes scheduled by events, not the clock: each life dies right after its Nth batch's
    # PostgreSQL commit, so each one made progress however loaded the machine is.
    plan: list[int | None] = list(COURTESY_CRASHES_WHEN_TWICE)
    lives, final = crash_repeatedly(fleet, plan, random.Random(2), database_url, kafka_settings)
    assert all(life.before < life.after for life in lives), lives
    assert final.wait() == 0, final.tail()

    stream = stream_of(lines, 1, copies=2)
    valid = sum(not isinstance(ev.decode(line), ev.Invalid) for line in lines)
    rows, summary = export(database_url)
    # The whole second copy is duplicates, on top of the case's own resent events.
    assert summary["duplicates"] == stream.duplicates == valid + stream_of(lines, 1).duplicates
    _, want = expected(case)
    assert summary["dead_lettered"] == 2 * want["dead_lettered"]  # resent garbage is new garbage
    assert_matches(case, rows, {**summary, "dead_lettered": want["dead_lettered"]})
    assert_exactly_once(database_url, stream)
    assert_every_offset_once(database_url, kafka_settings, stream)
    assert_gapless(database_url)


class Feeder:
    """Produces a case from a thread: a quarter at once, then 40 lines at a time, so consumers
    stay mid-stream for a while; everything left at once when `hurry` is set."""

    def __init__(self, settings: KafkaSettings, lines: list[bytes], folder: Path) -> None:
        self.settings = settings
        self.lines = lines
        self.folder = folder
        self.hurry = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Feeder:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.hurry.set()
        self.thread.join(timeout=60)

    def _run(self) -> None:
        try:
            done, step = len(self.lines) // 4, 40
            self._produce(self.lines[:done])
            while done < len(self.lines):
                self.hurry.wait(0.3)
                upto = len(self.lines) if self.hurry.is_set() else done + step
                self._produce(self.lines[done:upto])
                done = upto
        except BaseException as e:  # re-raised by finish()
            self.error = e

    def _produce(self, lines: list[bytes]) -> None:
        path = self.folder / "chunk.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        produce_file(self.settings, str(path))

    def finish(self) -> None:
        self.hurry.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the feeder did not finish"
        if self.error is not None:
            raise self.error


def test_rebalance_second_consumer_joins_and_leaves(
    database_url: str,
    kafka_settings: KafkaSettings,
    fleet_for: Callable[[Path], Fleet],
    tmp_path: Path,
) -> None:
    case, partitions = CASES[6], 4
    lines = lines_of(case)
    create_topics(kafka_settings, partitions)
    fleet = fleet_for(case)
    topic = kafka_settings.inputs
    rng = random.Random(3)

    def owners() -> set[str]:
        return {w for _, w in offsets_in_pg(database_url, topic).values()}

    with Feeder(kafka_settings, lines, tmp_path) as feeder:
        a = fleet.start()
        wait_until("progress of A", lambda: consumed(database_url, topic) > 0, START_TIMEOUT_S, a)
        b = fleet.start()
        wait_until("a batch of B", lambda: b.owner in owners() and b.logged("batch"),
                   START_TIMEOUT_S, a, b)  # fmt: skip
        time.sleep(rng.uniform(0.0, 0.3))
        assert feeder.thread.is_alive(), "B should be killed while inputs still arrive"
        b.kill()
        # B's session times out (6 s); A takes its partitions over from PostgreSQL's offsets.
        wait_until("takeover by A", lambda: owners() == {a.owner}, 40, a)
        feeder.finish()
    assert a.wait() == 0, a.tail()
    stream = stream_of(lines, partitions)
    assert_every_offset_once(database_url, kafka_settings, stream)
    assert_invariants(case, database_url, kafka_settings.inputs, lines, stream)


@pytest.mark.parametrize("case", [CASES[6], TRANSFERS_CASE], ids=lambda c: c.name)
def test_eight_partitions_two_processes(
    case: Path,
    database_url: str,
    kafka_settings: KafkaSettings,
    fleet_for: Callable[[Path], Fleet],
) -> None:
    partitions = 8
    lines = lines_of(case)
    create_topics(kafka_settings, partitions)
    produce_file(kafka_settings, str(case / "events.jsonl"))
    fleet = fleet_for(case)
    one, two = fleet.start(), fleet.start()
    assert one.wait() == 0, one.tail()
    assert two.wait() == 0, two.tail()
    assert one.logged("batch") and two.logged("batch"), "both members should have worked"
    stream = stream_of(lines, partitions)
    assert_every_offset_once(database_url, kafka_settings, stream)
    assert_invariants(case, database_url, kafka_settings.inputs, lines, stream)

    # Referrers and transfer recipients: credits that travelled as internal commands.
    with connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() != (0,), "no commands"
    rows, _ = export(database_url)
    got = {row["customer_id"]: row["referrals_qualified"] for row in rows}
    want_rows, _ = expected(case)
    referrers = referrers_of(lines)
    differ = {
        w["customer_id"]: (got[w["customer_id"]], w["referrals_qualified"])
        for w in want_rows
        if w["customer_id"] in referrers
        and norm("referrals_qualified", got[w["customer_id"]])
        != norm("referrals_qualified", w["referrals_qualified"])
    }
    assert differ == {}, f"referrals_qualified (got, want): {differ}"


def test_transfers_across_partitions_under_kills_and_resends(
    database_url: str, kafka_settings: KafkaSettings, fleet_for: Callable[[Path], Fleet]
) -> None:
    """Version 2's transfers between customers of different owners travel as commands.
    Every message is sent twice, two consumers share 8 partitions, both are killed
    (SIGKILL) mid-stream and replaced: each transfer still reaches its recipient once,
    whole, and every invariant of several partitions holds."""
    case, partitions = TRANSFERS_CASE, 8
    lines = lines_of(case)
    create_topics(kafka_settings, partitions)
    produce_file(kafka_settings, str(case / "events.jsonl"))
    produce_file(kafka_settings, str(case / "events.jsonl"))  # every message resent
    fleet = fleet_for(case)
    fleet.batch_size = 20
    # A group of its own: static members killed by the tests before stay in group "g" on
    # Tansu, which then holds a new member's join past this test's patience.
    fleet.group = "g-transfers"
    stream = stream_of(lines, partitions, copies=2)
    # Static members (as the kill -9 tests): each restart takes its dead one's place at once.
    one, two = fleet.start(instance="t1"), fleet.start(instance="t2")
    # Both killed together once the pair has written a few batches, wherever each one is:
    # which member gets which partitions, and when, is the broker's choice.
    wait_until("four batches", lambda: one.count("batch") + two.count("batch") >= 4,
               3 * START_TIMEOUT_S, one, two)  # fmt: skip
    one.kill()
    two.kill()
    assert consumed(database_url, kafka_settings.inputs, fleet.group) < stream.messages, (
        "killed at the end"
    )
    # One plain member finishes: it gets all 8 partitions once the dead static members'
    # sessions expire (two restarted in place could leave one idle with none, never exiting).
    three = fleet.start()
    assert three.wait() == 0, three.tail()
    assert_every_offset_once(database_url, kafka_settings, stream, fleet.group)
    assert_invariants(case, database_url, kafka_settings.inputs, lines, stream)
    # Every transfer credit sent as a command was applied, once. Whether any transfer crossed
    # owners depends on when the kill came (the last member owns every partition): the
    # two-process test without kills asserts that commands travel.
    with connect(database_url) as conn:
        kind = commands_module.TRANSFER_CREDIT
        sent = conn.execute(
            "SELECT payload::jsonb ->> 'command_id' FROM outbox WHERE kind = %s", (kind,)
        ).fetchall()
        applied = conn.execute(
            "SELECT event_id FROM inbox WHERE event_type = %s", (kind,)
        ).fetchall()
    assert sorted(sent) == sorted(applied), "a transfer credit lost or applied twice"


def _customer_in(partition: int, partitions: int, prefix: str) -> str:
    return next(
        c for i in range(1000) if partition_for(c := f"{prefix}{i}", partitions) == partition
    )


def test_a_gained_partition_is_decided_on_its_stored_state(
    database_url: str, kafka_settings: KafkaSettings
) -> None:
    """Consumer A caches a referrer it does not own (named by a signup it decides); B, the
    owner, changes that referrer; then B dies and A is assigned B's partition. A must decide
    on the stored snapshot, not on what it cached while it did not own the customer.

    The rebalances go through KafkaSource's own callbacks, called in the order the broker
    calls them (eager protocol: revoke everything, then assign), without waiting for a group."""
    case, partitions = CASES[6], 4
    create_topics(kafka_settings, partitions)
    referrer, referee = _customer_in(3, partitions, "r"), _customer_in(0, partitions, "e")

    def line(stream: int, offset: int, body: dict[str, Any]) -> Line:
        raw = json.dumps({"occurred_at": f"2024-01-0{offset + 1}T10:00:00Z", **body})
        return Line(f"kafka:{kafka_settings.inputs}:{stream}", offset, raw.encode(), f"p{stream}")

    def purchase(n: int) -> dict[str, Any]:
        return {
            "event_id": f"buy-{n}",
            "type": "purchase",
            "customer_id": referrer,
            "order_id": f"o-{n}",
            "currency": "USD",
            "total": "20.00",
            "items": [{"sku": "X", "category": "misc", "quantity": 1, "unit_price": "20.00"}],
        }

    def both(*owned: int) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t in kafka_settings.topics[:2] for p in owned]

    def nothing(_conn: Connection) -> None:
        return None  # offsets are not what this is about

    with connect(database_url) as conn_a, connect(database_url) as conn_b:
        rules = compile_rules(programs.adopt(conn_a, (case / "program.toml").read_text()))
        members: list[tuple[Pipeline, KafkaSource]] = []
        try:
            for conn, owned in ((conn_a, (0, 1)), (conn_b, (2, 3))):
                routing = PartitionRouting(partitions)
                pipeline = Pipeline(conn, rules, routing)
                members.append((pipeline, KafkaSource(conn, kafka_settings, GROUP, routing,
                                                      pipeline.forget)))  # fmt: skip
                members[-1][1]._assigned(members[-1][1].consumer, both(*owned))
            (a, source_a), (b, _) = members
            b.process([line(3, 0, {"event_id": "s-r", "type": "signup", "customer_id": referrer,
                                   "email": "r@example.org"})], nothing)  # fmt: skip
            a.process([line(0, 0, {"event_id": "s-e", "type": "signup", "customer_id": referee,
                                   "email": "e@example.org", "referred_by": referrer})],
                      nothing)  # fmt: skip
            b.process([line(3, 1, purchase(1))], nothing)  # the referrer changes at its owner
            # B is gone: A's partitions are revoked, then all four are assigned to A.
            source_a._revoked(source_a.consumer, both(0, 1))
            source_a._assigned(source_a.consumer, both(0, 1, 2, 3))
            a.process([line(3, 2, purchase(2))], nothing)
        finally:
            for pipeline, source in members:
                pipeline.close()
                source.close()
    assert_gapless(database_url)
