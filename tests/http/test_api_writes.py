"""Writes through the HTTP API under load: concurrent clients lose and double nothing, a read
after a write's answer shows it, bodies over the limits or not JSON, a graceful shutdown.

The tests share one server over a database of their own, each with customers of
its own; the shutdown tests stop their server, so they start their own.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import PgServer, twin_database
from loyalty_ledger.store.db import connect
from served import Served, served, shared_examples_server  # noqa: F401 (the fixture)
from support import example_program_v1_file, export, ingest, normalized

EXAMPLES = Path(__file__).parents[2] / "examples"
PROGRAM = EXAMPLES / "program.toml"

Event = dict[str, Any]




def _at(day: int, minute: int) -> str:
    return f"2025-03-{day:02d}T10:{minute:02d}:00Z"


def _story(customer: str, chosen: random.Random) -> list[Event]:
    """A customer's events in order: a signup, purchases and redemptions (some beyond the
    balance, rejected), no ticks and no referrals: customers do not touch each other."""
    events: list[Event] = [{"event_id": f"{customer}-0", "type": "signup",
                            "occurred_at": _at(1, 0), "customer_id": customer,
                            "email": f"{customer}@example.org"}]  # fmt: skip
    for n in range(1, chosen.randint(2, 5)):
        event_id = f"{customer}-{n}"
        if chosen.random() < 0.7:
            events.append({"event_id": event_id, "type": "purchase", "occurred_at": _at(2, n),
                           "customer_id": customer, "order_id": f"o-{event_id}",
                           "currency": "EUR", "total": f"{chosen.randint(5, 400)}.50"})  # fmt: skip
        else:
            events.append({"event_id": event_id, "type": "redemption",
                           "occurred_at": _at(2, n), "customer_id": customer,
                           "redemption_id": f"r-{event_id}",
                           "reward_id": chosen.choice(["canvas-bag", "voucher-5"])})  # fmt: skip
    return events


def _post(client: httpx.Client, events: list[Event]) -> list[dict[str, Any]]:
    answer = client.post("/v1/events", json=events)
    assert answer.status_code == 200, answer.text
    results: list[dict[str, Any]] = answer.json()["results"]
    return results


def _client_run(server: Served, stories: list[list[Event]], seed: int) -> list[dict[str, Any]]:
    """One till: its customers' events in order, interleaved across its customers, in bodies
    of 1 to 5 events; every answer, in the order received."""
    chosen = random.Random(seed)
    pending = [list(story) for story in stories]
    answers: list[dict[str, Any]] = []
    with server.client("pos") as client:
        while any(pending):
            body: list[Event] = []
            for _ in range(chosen.randint(1, 5)):
                left = [p for p in pending if p]
                if not left:
                    break
                body.append(chosen.choice(left).pop(0))
            answers += _post(client, body)
    return answers


def test_concurrent_clients_lose_and_double_nothing(
    shared: tuple[Served, str], pg_server: PgServer, template_db: str, tmp_path: Path
) -> None:
    server, url = shared
    _, before = export(url)
    chosen = random.Random(12)
    tills = [[_story(f"till{t}-c{c:02d}", chosen) for c in range(40)] for t in range(8)]
    with ThreadPoolExecutor(max_workers=len(tills)) as pool:
        runs = list(pool.map(_client_run, [server] * len(tills), tills, range(len(tills))))
    posted = [event for stories in tills for story in stories for event in story]
    answers = [a for run in runs for a in run]
    assert sorted(a["event_id"] for a in answers) == sorted(e["event_id"] for e in posted)
    assert {a["outcome"] for a in answers} <= {"accepted", "rejected"}

    rows, summary = export(url)
    mine = {r["customer_id"]: r for r in rows if r["customer_id"].startswith("till")}
    assert len(mine) == 8 * 40
    kinds = {e["event_id"]: e["type"] for e in posted}
    accepted: dict[str, int] = dict(before["accepted"])  # other tests' customers
    rejected: dict[str, int] = dict(before["rejected"])
    for a in answers:
        if a["outcome"] == "accepted":
            accepted[kinds[a["event_id"]]] = accepted.get(kinds[a["event_id"]], 0) + 1
        else:
            rejected[a["reason"]] = rejected.get(a["reason"], 0) + 1
    assert summary["accepted"] == accepted
    assert summary["rejected"] == rejected
    assert "insufficient_points" in rejected
    last = {a["customer_id"]: a for run in runs for a in run}  # in each till's order
    assert {c: a["balance"] for c, a in last.items()} == {c: r["balance"] for c, r in mine.items()}

    with twin_database(pg_server, template_db) as twin:  # the same events from a file
        path = tmp_path / "same.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in posted))
        ingest(twin, path, example_program_v1_file(tmp_path))  # the shared server's
        assert normalized(export(twin)[0]) == normalized(list(mine.values()))


def test_a_read_after_a_write_answer_shows_the_write(shared: tuple[Served, str]) -> None:
    server, _ = shared

    def writer(n: int) -> None:
        own = f"ryw-{n}"
        with server.client("pos") as client:
            _post(client, [{"event_id": f"{own}-0", "type": "signup",
                            "occurred_at": _at(1, 0), "customer_id": own,
                            "email": "x@example.org"}])  # fmt: skip
            for i in range(1, 12):
                for customer, exact in ((own, True), ("ryw-shared", False)):
                    event_id = f"{customer}-{n}-{i}"
                    (result,) = _post(client, [{
                        "event_id": event_id, "type": "purchase", "occurred_at": _at(3, i),
                        "customer_id": customer, "order_id": f"o-{event_id}",
                        "currency": "EUR", "total": "10.00",
                    }])  # fmt: skip
                    assert result["outcome"] == "accepted", result
                    seen = client.get(f"/v1/customers/{customer}").json()["balance"]
                    # only purchases: balances only grow; the own customer has one writer
                    assert seen == result["balance"] if exact else seen >= result["balance"]

    with server.client("pos") as client:
        _post(client, [{"event_id": "ryw-shared-0", "type": "signup", "occurred_at": _at(1, 0),
                        "customer_id": "ryw-shared", "email": "x@example.org"}])  # fmt: skip
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(writer, range(6)))  # re-raises a thread's failed assertion


def _count(url: str, query: str, *params: Any) -> int:
    with connect(url) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return int(row[0])


def test_bodies_over_the_limits_are_413_and_apply_nothing(shared: tuple[Served, str]) -> None:
    server, url = shared
    letters = _count(url, "SELECT count(*) FROM dead_letters")
    signups = [{"event_id": f"big-{n}", "type": "signup", "occurred_at": _at(1, 0),
                "customer_id": f"big-{n}", "email": "x@example.org"}
               for n in range(1001)]  # fmt: skip
    with server.client("pos") as client:
        many = client.post("/v1/events", json=signups)
        assert many.status_code == 413, many.text
        assert "1001 events" in many.json()["detail"]
        padded = [{**signups[0], "name": "x" * 1_100_000}]
        large = client.post("/v1/events", json=padded)
        assert large.status_code == 413, large.text
        streamed = client.post("/v1/events", content=iter([b"[", b" " * 1_100_000, b"]"]),
                               headers={"Content-Type": "application/json"})  # fmt: skip
        assert streamed.status_code == 413, streamed.text  # no content-length: counted
    assert _count(url, "SELECT count(*) FROM inbox WHERE event_id LIKE 'big-%%'") == 0
    assert _count(url, "SELECT count(*) FROM dead_letters") == letters


def _dead_letters(url: str) -> list[tuple[int, bytes, str]]:
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT position, raw, reason FROM dead_letters WHERE source = 'http:test-pos' "
            "ORDER BY position"
        ).fetchall()  # fmt: skip
    return [(int(p), bytes(raw), reason) for p, raw, reason in rows]


def test_a_body_that_is_not_json_is_422_and_dead_lettered_whole(
    shared: tuple[Served, str],
) -> None:
    server, url = shared
    before = _dead_letters(url)
    raw = b'[{"event_id": "nj-1", "type": "signup",'
    with server.client("pos") as client:
        answer = client.post("/v1/events", content=raw,
                             headers={"Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("malformed JSON:")
    (letter,) = [d for d in _dead_letters(url) if d not in before]
    assert letter[1] == raw and letter[2]


def test_invalid_items_are_dead_lettered_and_the_others_apply_in_order(
    shared: tuple[Served, str],
) -> None:
    server, url = shared
    before = _dead_letters(url)
    body = [
        {"event_id": "mix-1", "type": "signup", "occurred_at": _at(1, 0), "customer_id": "mix",
         "email": "x@example.org"},
        7,
        {"event_id": "mix-2", "type": "purchase", "customer_id": "mix"},
        {"event_id": "mix-3", "type": "purchase", "occurred_at": _at(2, 0),
         "customer_id": "mix", "order_id": "o-mix-3", "currency": "EUR", "total": "20.00"},
    ]  # fmt: skip
    with server.client("pos") as client:  # sent as dumped: the items' bytes are known
        answer = client.post("/v1/events", content=json.dumps(body),
                             headers={"Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["outcome"] for r in results] == ["accepted", "invalid", "invalid", "accepted"]
    assert results[3]["balance"] == 100 + 20  # after the signup's bonus: applied in order
    assert all(r["reason"] for r in results[1:3])
    letters = [d for d in _dead_letters(url) if d not in before]
    assert [(raw, reason) for _, raw, reason in letters] == [
        (b"7", results[1]["reason"]),
        (json.dumps(body[2]).encode(), results[2]["reason"]),
    ]
    assert letters[0][0] < letters[1][0]
    assert _count(url, "SELECT count(*) FROM inbox WHERE event_id LIKE 'mix-%%'") == 2


# ------------------------------------------------------------------ shutdown


def _burst(server: Served, n: int, stop: threading.Event) -> list[str]:
    """Single-event POSTs for a customer of its own until the server stops answering; the
    event ids answered 200."""
    answered = []
    with server.client("pos", timeout_s=60) as client:
        for i in range(10_000):
            event_id = f"burst-{n}-{i}"
            event = {"event_id": event_id, "type": "purchase", "occurred_at": _at(4, 0),
                     "customer_id": f"burst-{n}", "order_id": f"o-{event_id}",
                     "currency": "EUR", "total": "1.00"}  # fmt: skip
            try:
                answer = client.post("/v1/events", json=event)
            except httpx.TransportError:
                return answered
            if answer.status_code == 200:
                assert answer.json()["results"][0]["outcome"] == "accepted"
                answered.append(event_id)
            elif stop.is_set():
                return answered
    return answered


def test_sigterm_during_a_burst_keeps_every_answered_write_once(
    database_url: str, tmp_path: Path
) -> None:
    with served(database_url, example_program_v1_file(tmp_path), tmp_path) as server:
        stop = threading.Event()
        with ThreadPoolExecutor(max_workers=6) as pool:
            bursts = [pool.submit(_burst, server, n, stop) for n in range(6)]
            time.sleep(1.0)
            stop.set()
            server.process.send_signal(signal.SIGTERM)
            answered = [event_id for burst in bursts for event_id in burst.result()]
        code = server.process.wait(30)
        assert code in (0, -signal.SIGTERM), server.log()  # 0: see the test below
    assert answered
    with connect(database_url) as conn:
        inbox = dict(conn.execute(
            "SELECT event_id, count(*) FROM inbox WHERE event_id LIKE 'burst-%%' GROUP BY 1"
        ).fetchall())  # fmt: skip
        credits = dict(conn.execute(
            "SELECT event_id, count(*) FROM ledger WHERE event_id LIKE 'burst-%%' "
            "AND kind = 'credit' GROUP BY 1"
        ).fetchall())  # fmt: skip
    assert all(inbox.get(e) == 1 and credits.get(e) == 1 for e in answered)
    assert set(inbox) == set(credits)  # the unanswered that applied did so once too
    assert all(n == 1 for n in credits.values())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_graceful_stop_exits_zero(database_url: str, tmp_path: Path, sig: int) -> None:
    """SIGTERM (an orchestrator) and SIGINT (Ctrl-C) stop the server, then the command: 0."""
    with served(database_url, PROGRAM, tmp_path) as server:
        assert server.stop(sig) == 0, server.log()[-2000:]
