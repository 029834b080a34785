"""The exactly-once contract (exactly_once.py), run against every input path."""

from __future__ import annotations

import hashlib
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from exactly_once import BATCH, PROGRAM, ExactlyOnceContract, stream_lines
from psycopg import sql

from loyalty_ledger import events
from loyalty_ledger.generations import catalog
from loyalty_ledger.kafka.settings import KafkaSettings
from loyalty_ledger.kafka.topics import create_topics
from loyalty_ledger.runtime.produce import produce_file
from loyalty_ledger.store.db import Connection, connect
from served import Served, make_keys, spawn
from support import ingest

_PLACES = (
    "SELECT (SELECT count(*) FROM inbox) + (SELECT count(*) FROM duplicates)"
    " + (SELECT count(*) FROM dead_letters WHERE status <> 'redriven')"
)


def _one(conn: Connection, query: str | sql.Composed) -> int:
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


class _EveryLineOnce(ExactlyOnceContract):
    """Paths fed the stream's lines: each ends in the inbox, duplicates or dead letters."""

    def fed(self, conn: Connection) -> int:
        return len(stream_lines())

    def landed(self, conn: Connection) -> int:
        return _one(conn, _PLACES)


class TestFileSource(_EveryLineOnce):
    def prepare(self, url: str) -> None:
        pass

    def argv(self, url: str) -> list[str]:
        return ["ingest", str(self.stream), "--program", str(PROGRAM), "--batch-size", BATCH]


class TestKafkaSource(_EveryLineOnce):
    """One partition, a consumer group per database (offsets live in PostgreSQL)."""

    @pytest.fixture(autouse=True)
    def _kafka(self, kafka_settings: KafkaSettings, _folder: None) -> None:
        self.kafka = kafka_settings
        self.env["LOYALTY_KAFKA_BOOTSTRAP"] = kafka_settings.bootstrap
        self.env["LOYALTY_KAFKA_TOPIC_PREFIX"] = kafka_settings.prefix

    def feed(self) -> None:
        create_topics(self.kafka, 1)
        produce_file(self.kafka, str(self.stream))

    def prepare(self, url: str) -> None:
        pass

    def argv(self, url: str) -> list[str]:
        # A group of each database's own: Tansu mishandles a group reused with other topics.
        group = f"g-{self.kafka.prefix}-{hashlib.sha256(url.encode()).hexdigest()[:6]}"
        return ["consume", "--group", group, "--program", str(PROGRAM), "--batch-size", BATCH,
                "--batch-ms", "100", "--stop-when-idle", "2"]  # fmt: skip


class TestRerun(ExactlyOnceContract):
    """The live generation's inbox replayed into generation `again` under the same program."""

    patch = f"from loyalty_ledger.generations import rerun; rerun.BATCH_SIZE = {BATCH}"

    def prepare(self, url: str) -> None:
        ingest(url, self.stream, PROGRAM)

    def argv(self, url: str) -> list[str]:
        return ["rerun", "--program", str(PROGRAM), "--as", "again"]

    def use_target(self, conn: Connection) -> None:
        catalog.use(conn, catalog.get(conn, "again"))

    def fed(self, conn: Connection) -> int:
        live = catalog.get(conn, "main").schema_name
        query = sql.SQL("SELECT count(*) FROM {}.inbox").format(sql.Identifier(live))
        return _one(conn, query)

    def landed(self, conn: Connection) -> int:
        return _one(conn, "SELECT count(*) FROM inbox")

    def check_dead_letters(self, conn: Connection) -> None:
        """A re-run reads the inbox: the live dead letters stay as they were, open, once."""
        kept = _one(conn, "SELECT count(*) FROM dead_letters WHERE status = 'open'")
        assert kept == _one(conn, "SELECT count(*) FROM dead_letters") > 0


NOT_YET = "purchase.channel: pos purchases were not accepted yet"


class TestRedrive(_EveryLineOnce):
    """Ingested by a stricter decoder that refused pos purchases; redriven by the real one."""

    patch = "from loyalty_ledger.admin import dead_letters; dead_letters.REDRIVE_BATCH = 8"

    @pytest.fixture(autouse=True)
    def _stricter(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        decode = events.decode

        def stricter(raw: bytes | str) -> events.Event | events.Invalid:
            decoded = decode(raw)
            if isinstance(decoded, events.Purchase) and decoded.channel == "pos":
                return events.Invalid(NOT_YET)
            return decoded

        self._decoders = (decode, stricter)
        yield

    def prepare(self, url: str) -> None:
        decode, stricter = self._decoders
        events.decode = stricter  # type: ignore[assignment]
        try:
            ingest(url, self.stream, PROGRAM)
        finally:
            events.decode = decode  # type: ignore[assignment]

    def argv(self, url: str) -> list[str]:
        return ["dlq", "redrive", "--reason", "not accepted yet"]


# ---------------------------------------------------------------- the HTTP API

SEND_TIMEOUT_S = 60.0  # one request's answer: a group commit plus the projections' catch-up
DEATH_WAIT_S = 10.0  # a dropped connection: how long the server may take to be seen dead
_ANSWERED = (200, 422)  # 422: every item invalid, or the body not JSON (dead-lettered whole)
_STOPPED = (0,)  # SIGTERM: a graceful stop, exit 0 (tests/http/test_api_writes.py)
_LANDED_ONCE = (
    "SELECT (SELECT count(*) FROM inbox) + (SELECT count(DISTINCT raw) FROM dead_letters)"
)


def _requests() -> list[list[bytes]]:
    """What the till sends, request by request: BATCH lines each, the cut-off line alone
    (inside an array it would make the whole body malformed)."""
    *lines, cut_off = stream_lines()
    size = int(BATCH)
    return [*(lines[at : at + size] for at in range(0, len(lines), size)), [cut_off]]


def _body(lines: list[bytes]) -> bytes:
    """A JSON array of the lines' own bytes (never re-serialized: the inbox keeps the bytes)."""
    if len(lines) == 1 and lines[0] == stream_lines()[-1]:
        return lines[0]
    return b"[" + b",".join(lines) + b"]"


@dataclass
class _Till:
    """The driver of one database across the server's lives: its key, the next request to
    send (every one before it was answered) and the answers it got."""

    key: str
    next: int = 0
    answers: list[tuple[int, int, Any]] = field(default_factory=list)  # request, status, JSON


class TestHttpApi(ExactlyOnceContract):
    """`loyalty serve`, fed by one till posting the stream in requests of BATCH lines.

    A life: the crashing child serves on a port of its own; the till sends each request
    until it is answered (a 503 is sent again), never again once answered, and the life
    ends when the server dies. The next life sends the unanswered request again first.
    Unlike a file's line number, a till cannot tell whether an unanswered request committed
    (the "after" crash): its resend lands in `duplicates`, which a clean run does not have.
    So what must equal the clean run here is the ledger and read models row for row, the
    inbox event by event in arrival order (positions aside: the resends shift them) and the
    distinct dead letters; "fed" is the distinct lines (a resend is the same input) and
    "landed" each event id in the inbox plus each distinct raw input dead-lettered. After
    every life, each answer the till got is checked against the database: an accepted or
    rejected event is in the inbox with that outcome, an invalid one is dead-lettered, and
    no event id was ever answered as applied twice.
    """

    @pytest.fixture(autouse=True)
    def _tills(self, _folder: None) -> None:
        self.tills: dict[str, _Till] = {}

    def prepare(self, url: str) -> None:
        self.tills[url] = _Till(make_keys(url)["admin"])  # admin: the stream holds ticks

    def argv(self, url: str) -> list[str]:
        return ["serve", "--port", "0", "--program", str(PROGRAM)]  # spawn reads the port

    def fed(self, conn: Connection) -> int:
        return len(set(stream_lines()))

    def landed(self, conn: Connection) -> int:
        return _one(conn, _LANDED_ONCE)

    def run(self, url: str, crash: tuple[str, int] | None = None) -> int:
        till = self.tills[url]
        command, env = self.child(url, crash)
        log_path = self.folder / f"serve-{uuid.uuid4().hex[:8]}.log"
        server = spawn(command, env, log_path, {"admin": till.key})
        process = server.process
        try:
            finished = self.post(server, till)
            code = server.stop() if finished else process.wait(DEATH_WAIT_S)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(DEATH_WAIT_S)
        self.check_answered(url, till)
        if crash is None:
            assert code in _STOPPED, server.log()[-2000:]
            till.next = 0  # a run after this one is the till sending the stream again
        return code

    def post(self, server: Served, till: _Till) -> bool:
        """Send the requests from `till.next` on; False once the server died."""
        requests = _requests()
        with server.client("admin", SEND_TIMEOUT_S) as client:
            while till.next < len(requests):
                answer = self.send(client, server, _body(requests[till.next]))
                if answer is None:
                    return False
                till.answers.append((till.next, answer.status_code, answer.json()))
                till.next += 1
        return True

    def send(self, client: httpx.Client, server: Served, body: bytes) -> httpx.Response | None:
        """`body` until it is answered; None when the server died without answering."""
        while True:
            try:
                answer = client.post(
                    "/v1/events", content=body, headers={"content-type": "application/json"}
                )
            except httpx.TransportError:
                try:  # a dropped connection is the kill, unless the server lives on
                    server.process.wait(DEATH_WAIT_S)
                    return None
                except subprocess.TimeoutExpired:
                    continue
            if answer.status_code == 503:  # the writer refused it: nothing applied, again
                time.sleep(0.05)
                continue
            assert answer.status_code in _ANSWERED, answer.text
            return answer

    def check_answered(self, url: str, till: _Till) -> None:
        """Every answer the till got so far holds in the database: no answered event lost,
        none applied twice."""
        with connect(url) as conn:
            inbox = {row[0]: row[1:] for row in
                     conn.execute("SELECT event_id, outcome, reason FROM inbox")}  # fmt: skip
            dead = {bytes(row[0]) for row in conn.execute("SELECT raw FROM dead_letters")}
        requests, applied = _requests(), Counter[str]()
        for index, status, payload in till.answers:
            if "results" not in payload:  # not JSON: the body is one dead letter
                assert status == 422 and _body(requests[index]) in dead, (index, payload)
                continue
            for result in payload["results"]:
                event_id, outcome = result["event_id"], result["outcome"]
                if outcome == "invalid":
                    assert requests[index][result["index"]] in dead, (index, result)
                elif outcome == "duplicate":
                    assert inbox[event_id][0] == result["first"]["outcome"], (index, result)
                else:
                    assert inbox.get(event_id) == (outcome, result["reason"]), (index, result)
                    applied[event_id] += 1
        assert [i for i, n in applied.items() if n > 1] == [], "answered as applied twice"

    def check_resumed(self, url: str, clean_url: str) -> None:
        """The inbox, event by event in arrival order, and the distinct dead letters."""
        inbox = sql.SQL(
            "SELECT event_id, event_type, customer_id, occurred_at, outcome, reason, body_hash,"
            " raw FROM inbox ORDER BY arrival"
        )
        dead = sql.SQL("SELECT DISTINCT raw, reason FROM dead_letters ORDER BY raw")
        with connect(url) as mine, connect(clean_url) as clean:
            for query in (inbox, dead):
                assert mine.execute(query).fetchall() == clean.execute(query).fetchall()
