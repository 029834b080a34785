"""The HTTP API on a real server and database: writes answered after commit, reads, conformance.

Most tests share one server over one database (the example program and story,
posted once with every id prefixed); each test writes customers of its own, so
they do not meet. The conformance cases each need their own program, so each
gets its own server.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import PgServer, twin_database
from loyalty_ledger.store.db import connect
from served import Served, module_server, served
from support import CASES, assert_matches, export

EXAMPLES = Path(__file__).parents[2] / "examples"
STORY = "story-"  # the prefix of the example story's ids on the shared server


def _events(n: int | None = None, prefix: str = "") -> list[dict[str, Any]]:
    """The example story's first `n` events, every id of a customer or event prefixed."""
    lines = (EXAMPLES / "events.jsonl").read_text().splitlines()[:n]
    return [_renamed(json.loads(line), prefix) for line in lines]


def _renamed(event: dict[str, Any], prefix: str) -> dict[str, Any]:
    for field in ("event_id", "customer_id", "referred_by", "referrer_id", "to_customer_id"):
        if isinstance(event.get(field), str):
            event[field] = prefix + event[field]
    return event


def _post(client: httpx.Client, payload: Any, status: int = 200) -> list[dict[str, Any]]:
    answer = client.post("/v1/events", json=payload)
    assert answer.status_code == status, answer.text
    results: list[dict[str, Any]] = answer.json()["results"]
    return results


@pytest.fixture(scope="module")
def shared(
    pg_server: PgServer, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Served, str]]:
    """One server for the module over a database of its own, with the example story posted."""
    log_dir = tmp_path_factory.mktemp("serve")
    with module_server(pg_server, template_db, log_dir, EXAMPLES / "program.toml") as shared, \
            shared[0].client("admin") as admin:  # fmt: skip
        server, url = shared
        # The story has ticks (admin), a duplicate and two invalid events among its 97.
        results = _post(admin, _events(prefix=STORY))
        assert len(results) == 97
        yield server, url


def _purchase(event_id: str, customer: str, total: str, at: str = "2025-03-01T10:00:00Z"
              ) -> dict[str, Any]:  # fmt: skip
    return {"event_id": event_id, "type": "purchase", "occurred_at": at, "customer_id": customer,
            "order_id": f"o-{event_id}", "currency": "EUR", "total": total}  # fmt: skip


def _signup(event_id: str, customer: str, at: str = "2025-03-01T09:00:00Z") -> dict[str, Any]:
    return {"event_id": event_id, "type": "signup", "occurred_at": at, "customer_id": customer,
            "email": f"{customer}@example.org"}  # fmt: skip


def _redemption(event_id: str, customer: str, reward: str, at: str = "2025-03-02T10:00:00Z"
                ) -> dict[str, Any]:  # fmt: skip
    return {"event_id": event_id, "type": "redemption", "occurred_at": at,
            "customer_id": customer, "redemption_id": f"r-{event_id}",
            "reward_id": reward}  # fmt: skip


# ------------------------------------------------------------------ writes


def test_a_post_is_answered_with_outcomes_after_commit(shared: tuple[Served, str]) -> None:
    server, _ = shared
    with server.client("pos") as client:
        results = _post(client, _events(5, prefix="answered-"))
        assert [r["outcome"] for r in results] == ["accepted"] * 5
        assert results[0]["customer_id"] == "answered-anna"
        card = client.get("/v1/customers/answered-anna").json()
        assert card["balance"] == results[4]["balance"]  # read-your-writes


def test_a_redemption_beyond_the_balance_is_rejected_insufficient_points(
    shared: tuple[Served, str],
) -> None:
    server, _ = shared
    with server.client("pos") as client:
        # 100 signup points + 250 for a purchase of 250 EUR, spendable 14 days later (the
        # example's [pending]): the bag (300) fits, the voucher (500) does not, then nor does
        # a second bag.
        _post(client, [_signup("ins-1", "ins-c"), _purchase("ins-2", "ins-c", "250")])
        later = "2025-03-15T10:00:00Z"
        results = _post(client, [
            _redemption("ins-3", "ins-c", "voucher-5", later),
            _redemption("ins-4", "ins-c", "canvas-bag", later),
            _redemption("ins-5", "ins-c", "canvas-bag", later),
        ])  # fmt: skip
        assert [(r["outcome"], r["reason"], r["balance"]) for r in results] == [
            ("rejected", "insufficient_points", 350),
            ("accepted", None, 50),
            ("rejected", "insufficient_points", 50),
        ]
        assert client.get("/v1/customers/ins-c").json()["redeemed"] == 300


def test_version_2_events_are_answered_with_their_outcomes(shared: tuple[Served, str]) -> None:
    """Under the example's version 2 program: a transfer of its minimum applies, a plan it
    lacks is refused `unknown_plan`, a correction applies (the support key may send it)."""
    server, _ = shared
    at = "2025-03-03T10:00:00Z"
    with server.client("support") as client:
        _post(client, [_signup("v2-1", "v2-c"), _signup("v2-2", "v2-d")])
        results = _post(client, [
            {"event_id": "v2-3", "type": "transfer", "occurred_at": at, "customer_id": "v2-c",
             "to_customer_id": "v2-d", "points": 50},
            {"event_id": "v2-4", "type": "membership", "occurred_at": at, "customer_id": "v2-c",
             "plan": "vip", "paid": "10.00"},
            {"event_id": "v2-5", "type": "adjustment", "occurred_at": at, "customer_id": "v2-c",
             "points": -30, "reason": "a bag counted twice"},
        ])  # fmt: skip
        assert [(r["outcome"], r["reason"], r["balance"]) for r in results] == [
            ("accepted", None, 50),
            ("rejected", "unknown_plan", 50),
            ("accepted", None, 20),
        ]
        card = client.get("/v1/customers/v2-c").json()
        assert (card["adjusted"], card["transferred_out"], card["membership"]) == (-30, 50, None)
        assert card["next_maturity"] is None
        assert [p["id"] for p in card["membership_prices"]] == ["kiez-plus", "kiez-plus-monthly"]
        assert client.get("/v1/customers/v2-d").json()["transferred_in"] == 50


def _ledger_of(url: str, event_id: str) -> list[tuple[Any, ...]]:
    with connect(url) as conn:
        return conn.execute(
            "SELECT * FROM ledger WHERE event_id = %s ORDER BY seq", (event_id,)
        ).fetchall()


def test_a_retried_event_id_gets_the_first_outcome_and_applies_once(
    shared: tuple[Served, str],
) -> None:
    server, url = shared
    with server.client("pos") as client:
        first = _post(client, [_signup("dup-1", "dup-c"), _purchase("dup-2", "dup-c", "40"),
                               _redemption("dup-3", "dup-c", "voucher-5")])  # fmt: skip
        assert [r["outcome"] for r in first] == ["accepted", "accepted", "rejected"]
        rows = {e: _ledger_of(url, e) for e in ("dup-2", "dup-3")}
        assert rows["dup-2"] and rows["dup-3"]  # a rejection is an entry too
        for event, was in ((_purchase("dup-2", "dup-c", "40"), ("accepted", None)),
                           (_redemption("dup-3", "dup-c", "voucher-5"),
                            ("rejected", "insufficient_points")),
                           (_purchase("dup-2", "dup-c", "999"), ("accepted", None))):  # fmt: skip
            (again,) = _post(client, event)  # the last: same id, another body
            assert again["outcome"] == "duplicate", again
            assert again["first"] == {"outcome": was[0], "reason": was[1]}
            assert again["balance"] == first[1]["balance"]
        assert {e: _ledger_of(url, e) for e in rows} == rows
        card = client.get("/v1/customers/dup-c").json()
        assert (card["balance"], card["orders"]) == (first[1]["balance"], 1)
        seen = client.get("/v1/events/dup-2").json()
        assert (seen["outcome"], seen["source"]) == ("accepted", "http:test-pos")


# ------------------------------------------------------------------ reads


def test_a_customer_card_has_next_tier_expiring_points_and_affordable_rewards(
    shared: tuple[Served, str],
) -> None:
    server, url = shared
    (want,) = [row for row in export(url)[0] if row["customer_id"] == f"{STORY}anna"]
    with server.client("read") as client:
        # 30 days before the first lots of the story (January 2025) expire, 24 months on.
        answer = client.get(f"/v1/customers/{STORY}anna", params={"as_of": "2026-12-20T00:00:00Z"})
        assert answer.status_code == 200, answer.text
        card = answer.json()
        assert {k: card[k] for k in want} == want  # every field of the export, as exported
        assert card["tier"] == "silver"
        missing = Decimal(card["next_tier"]["min_spend"]) - Decimal(card["qualifying_spend"])
        assert card["next_tier"]["name"] == "gold"
        assert Decimal(card["next_tier"]["missing_spend"]) == missing > 0
        expiring = card["expiring"]
        assert expiring["days"] == 30
        assert datetime.fromisoformat(expiring["as_of"]) == datetime(2026, 12, 20, tzinfo=UTC)
        assert expiring["points"] == sum(lot["points"] for lot in expiring["lots"]) > 0
        horizon = datetime(2027, 1, 19, tzinfo=UTC)
        assert all(datetime.fromisoformat(lot["expires_at"]) <= horizon
                   for lot in expiring["lots"])  # fmt: skip
        assert card["rewards_affordable"] == [{"id": "canvas-bag", "cost": 300},
                                              {"id": "voucher-5", "cost": 500}]  # fmt: skip
        later = client.get(f"/v1/customers/{STORY}anna", params={"as_of": "2025-06-01T00:00:00Z"})
        assert later.json()["expiring"]["points"] == 0
        naive = client.get(f"/v1/customers/{STORY}anna", params={"as_of": "2026-12-20T00:00:00"})
        assert naive.status_code == 422
        poor = client.get(f"/v1/customers/{STORY}clara").json()
        assert poor["balance"] < 300 and poor["rewards_affordable"] == []
        assert poor["next_tier"]["name"] == "silver"


def test_an_unknown_customer_is_404(shared: tuple[Served, str]) -> None:
    server, _ = shared
    with server.client("read") as client:
        for path in (f"/v1/customers/{STORY}nobody", f"/v1/customers/{STORY}nobody/statement"):
            answer = client.get(path)
            assert answer.status_code == 404, answer.text
            assert "nobody" in answer.json()["detail"]


def test_a_statement_pages_by_cursor_and_filters_by_cause(shared: tuple[Served, str]) -> None:
    server, _ = shared
    path = f"/v1/customers/{STORY}anna/statement"
    with server.client("read") as client:
        whole = client.get(path, params={"limit": 500}).json()
        assert whole["next"] is None and len(whole["entries"]) > 10
        paged, after = [], 0
        while True:
            page = client.get(path, params={"after": after, "limit": 3}).json()
            assert len(page["entries"]) <= 3
            paged += page["entries"]
            if page["next"] is None:
                break
            assert page["next"] == page["entries"][-1]["seq"]
            after = page["next"]
        assert paged == whole["entries"]
        seqs = [e["seq"] for e in paged]
        assert seqs == sorted(set(seqs))
        assert paged[-1]["balance"] == client.get(f"/v1/customers/{STORY}anna").json()["balance"]
        purchases = client.get(path, params={"cause": "purchase", "limit": 500}).json()
        assert purchases["entries"] == [e for e in whole["entries"] if e["cause"] == "purchase"]
        both = client.get(path, params=[("cause", "purchase"), ("cause", "signup"),
                                         ("limit", "500")]).json()  # fmt: skip
        assert both["entries"] == [e for e in whole["entries"]
                                   if e["cause"] in ("purchase", "signup")]  # fmt: skip
        assert client.get(path, params={"after": -1}).status_code == 422


def test_rewards_and_program_are_those_in_force(shared: tuple[Served, str]) -> None:
    server, url = shared
    with server.client("read") as client:
        rewards = client.get("/v1/rewards").json()
        assert rewards == {"min_points": 100, "rewards": [{"id": "voucher-5", "cost": 500},
                                                          {"id": "canvas-bag", "cost": 300}]}
        program = client.get("/v1/program").json()
    with connect(url) as conn:
        row = conn.execute(
            "SELECT p.hash, p.source FROM public.generations g JOIN programs p "
            "ON p.hash = g.program_hash WHERE g.status = 'live'"
        ).fetchone()  # fmt: skip
    assert row is not None
    assert (program["hash"], program["toml"]) == (row[0], row[1])
    assert (program["name"], program["currency"], program["timezone"]) == (
        "Kiez Club", "EUR", "Europe/Berlin",
    )  # fmt: skip
    assert program["toml"] == (EXAMPLES / "program.toml").read_text()
    # version 2's sections, as the example uses them
    assert program["pending"] == {"days": 14}
    assert [c["id"] for c in program["campaigns"]] == ["shoe-weekend", "kiez-fest"]
    assert [m["id"] for m in program["memberships"]] == ["kiez-plus", "kiez-plus-monthly"]
    assert program["transfers"] == {"min_points": 50}


def test_operations_health_readiness_metrics_and_openapi(shared: tuple[Served, str]) -> None:
    server, _ = shared
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "mode": "embedded", "problems": {}}
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "loyalty_http_requests_total{" in metrics
    assert 'loyalty_events_total{outcome="accepted"}' in metrics
    assert "loyalty_http_request_seconds_bucket{" in metrics
    assert "loyalty_batch_events_bucket{" in metrics
    document = httpx.get(f"{server.url}/openapi.json").json()
    for path in ("/v1/events", "/v1/events/{event_id}", "/v1/customers/{customer_id}",
                 "/v1/customers/{customer_id}/statement", "/v1/rewards", "/v1/program",
                 "/healthz", "/readyz", "/metrics"):  # fmt: skip
        assert path in document["paths"], path
    schemas = document["components"]["schemas"]
    assert "Event" in schemas and "Purchase" in schemas
    assert schemas["Purchase"]["properties"]["type"]["const"] == "purchase"
    body = document["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert {"$ref": "#/components/schemas/Event"} in body["schema"]["oneOf"]
    members = {m["$ref"].rsplit("/", 1)[1] for m in schemas["Event"]["oneOf"]}
    assert {"Adjustment", "Transfer", "Membership"} <= members
    for name, required in (("Adjustment", {"points", "reason"}),
                           ("Transfer", {"to_customer_id", "points"}),
                           ("Membership", {"plan", "paid"})):  # fmt: skip
        assert schemas[name]["properties"]["type"]["const"] == name.lower()
        assert required <= set(schemas[name]["required"])
        assert body["examples"][name.lower()]["value"]["type"] == name.lower()
    assert schemas["Adjustment"]["properties"]["reason"]["maxLength"] == 200


# ------------------------------------------------------------------ conformance


def _stream_bodies(case: Path, seed: int) -> Iterator[bytes]:
    """The case's lines in stream order, as bodies of 1 to 200 events (a seeded split): each
    array cut from the raw lines, so every event arrives byte for byte; a line that is not
    JSON goes alone (a body of its own, dead-lettered whole, as its line of the file is)."""
    chosen = random.Random(seed)
    lines = [line for line in (case / "events.jsonl").read_bytes().split(b"\n") if line.strip()]
    batch: list[bytes] = []
    size = chosen.randint(1, 200)
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            if batch:
                yield b"[" + b",".join(batch) + b"]"
                batch, size = [], chosen.randint(1, 200)
            yield line
            continue
        batch.append(line)
        if len(batch) == size:
            yield b"[" + b",".join(batch) + b"]"
            batch, size = [], chosen.randint(1, 200)
    if batch:
        yield b"[" + b",".join(batch) + b"]"


Exports = tuple[list[dict[str, Any]], dict[str, Any]]


def _post_case(case: Path, pg_server: PgServer, template_db: str, log_dir: Path) -> Exports:
    """The case posted through a server of its own over a database of its own: the exports."""
    with twin_database(pg_server, template_db) as url:
        env = {"LOYALTY_ANCHOR_FILE": str(log_dir / "anchors.jsonl")}
        with served(url, case / "program.toml", log_dir, env=env) as server, \
                server.client("admin") as client:  # fmt: skip
            for body in _stream_bodies(case, seed=CASES.index(case)):
                answer = client.post("/v1/events", content=body,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
                # 422: a body of invalid items only (or not JSON), dead-lettered
                assert answer.status_code in (200, 422), answer.text
        return export(url)


@pytest.fixture(scope="module")
def posted_cases(
    pg_server: PgServer, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Future[Exports]]:
    """Every case posted, a server each, two at a time: a server's start (its imports) and
    its commits overlap with another's posting (the suite's time budget)."""
    pool = ThreadPoolExecutor(max_workers=2)
    futures = {
        case.name: pool.submit(
            _post_case, case, pg_server, template_db, tmp_path_factory.mktemp(case.name)
        )
        for case in CASES
    }
    pool.shutdown(wait=True)
    return futures


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_conformance_case_posted_in_batches_gives_the_expected_exports(
    case: Path, posted_cases: dict[str, Future[Exports]]
) -> None:
    assert_matches(case, *posted_cases[case.name].result())
