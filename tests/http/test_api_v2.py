"""Program version 2 through the HTTP API: adjustments, transfers and memberships posted and
answered as every event is (accepted, or rejected with the PROGRAM.md reason), the new fields
on the customer card (pending points and their next maturity, the price of each plan), the
program's new sections, and the console's card of a version 2 customer.

The tests share one server under tests/http/program-v2.toml, over a database of its own;
each test has customers of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import PgServer
from loyalty_ledger.store.db import connect
from served import Served, module_server

PROGRAM = Path(__file__).with_name("program-v2.toml")

Event = dict[str, Any]


@pytest.fixture(scope="module")
def shared(
    pg_server: PgServer, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Served, str]]:
    log_dir = tmp_path_factory.mktemp("serve-v2")
    with module_server(pg_server, template_db, log_dir, PROGRAM) as shared:
        yield shared


def _at(day: int, hour: int = 10) -> str:
    return f"2026-03-{day:02d}T{hour:02d}:00:00Z"


def _signup(customer: str, day: int = 1) -> Event:
    return {"event_id": f"{customer}-signup", "type": "signup", "occurred_at": _at(day, 9),
            "customer_id": customer, "email": "x@example.org"}  # fmt: skip


def _adjustment(event_id: str, customer: str, points: Any, reason: Any = "goodwill",
                day: int = 2) -> Event:  # fmt: skip
    return {"event_id": event_id, "type": "adjustment", "occurred_at": _at(day),
            "customer_id": customer, "points": points, "reason": reason}  # fmt: skip


def _transfer(event_id: str, giver: str, to: str, points: int, day: int = 3) -> Event:
    return {"event_id": event_id, "type": "transfer", "occurred_at": _at(day),
            "customer_id": giver, "to_customer_id": to, "points": points}  # fmt: skip


def _membership(event_id: str, customer: str, plan: str, paid: str, day: int = 4) -> Event:
    return {"event_id": event_id, "type": "membership", "occurred_at": _at(day),
            "customer_id": customer, "plan": plan, "paid": paid}  # fmt: skip


def _purchase(event_id: str, customer: str, total: str, day: int) -> Event:
    return {"event_id": event_id, "type": "purchase", "occurred_at": _at(day),
            "customer_id": customer, "order_id": f"o-{event_id}", "currency": "EUR",
            "total": total}  # fmt: skip


def _post(client: httpx.Client, payload: Any, status: int = 200) -> dict[str, Any]:
    answer = client.post("/v1/events", json=payload)
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _outcomes(body: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(r["outcome"], r["reason"]) for r in body["results"]]


def _ledger(url: str, event_id: str) -> list[tuple[str, str, int, str | None]]:
    """(customer, kind, points, ref) of the event's ledger entries, in order."""
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT customer_id, kind, points, ref FROM ledger WHERE event_id = %s ORDER BY seq",
            (event_id,),
        ).fetchall()
    return [(c, k, int(p), r) for c, k, p, r in rows]


# ------------------------------------------------------------------ adjustments


def test_an_adjustment_needs_a_support_key_and_is_answered_like_any_event(
    shared: tuple[Served, str],
) -> None:
    server, url = shared
    with server.client("pos") as till, server.client("support") as agent:
        _post(till, _signup("adj"))
        refused = till.post("/v1/events", json=_adjustment("adj-by-till", "adj", 500))
        assert refused.status_code == 403, refused.text
        assert refused.json()["detail"].startswith("an adjustment event needs scope support")
        assert till.get("/v1/events/adj-by-till").status_code == 404  # nothing applied

        body = _post(agent, [
            _adjustment("adj-1", "adj", 400, "late delivery, order A-1042"),
            _adjustment("adj-2", "adj", -150, "double credit in January"),
            _adjustment("adj-3", "adj", -10_000, "too much"),
            _adjustment("adj-4", "adj-nobody", 10),
        ])  # fmt: skip
        assert _outcomes(body) == [("accepted", None), ("accepted", None),
                                   ("rejected", "insufficient_points"),
                                   ("rejected", "not_enrolled")]  # fmt: skip
        assert [r["balance"] for r in body["results"][:3]] == [500, 350, 350]
        model = body["customers"]["adj"]
        assert (model["balance"], model["adjusted"], model["earned"]) == (350, 250, 100)
        assert _ledger(url, "adj-1") == [("adj", "adjustment_credit", 400, None)]
        assert _ledger(url, "adj-2") == [("adj", "adjustment_debit", 150, None)]

        again = _post(agent, _adjustment("adj-1", "adj", 400, "late delivery, order A-1042"))
        assert again["results"][0]["outcome"] == "duplicate"
        assert again["results"][0]["first"] == {"outcome": "accepted", "reason": None}
        assert again["customers"]["adj"]["balance"] == 350
        card = agent.get("/v1/customers/adj").json()
        assert (card["balance"], card["adjusted"]) == (350, 250)
        assert agent.get("/v1/events/adj-3").json()["reason"] == "insufficient_points"


@pytest.mark.parametrize(("name", "bad"), [
    ("zero", {"points": 0}), ("string", {"points": "5"}), ("float", {"points": 1.5}),
    ("no-reason", {"reason": ""}), ("long-reason", {"reason": "x" * 201}),
])  # fmt: skip
def test_an_invalid_adjustment_is_422_and_dead_lettered(
    shared: tuple[Served, str], name: str, bad: dict[str, Any]
) -> None:
    server, url = shared
    event_id = f"adj-bad-{name}"
    with server.client("support") as agent:
        body = _post(agent, {**_adjustment(event_id, "adj", 5), **bad}, status=422)
    (result,) = body["results"]
    assert result["outcome"] == "invalid" and result["event_id"] == event_id
    assert next(iter(bad)) in result["reason"]
    with connect(url) as conn:
        letters = conn.execute(
            "SELECT count(*) FROM dead_letters WHERE reason = %s", (result["reason"],)
        ).fetchone()
    assert letters is not None and letters[0] >= 1


# ------------------------------------------------------------------ transfers


def test_a_transfer_moves_lot_parts_once_and_answers_with_the_recipient(
    shared: tuple[Served, str],
) -> None:
    """The HTTP writer owns every customer: the recipient's credit is decided with the
    transfer, in its transaction; no internal command is left for a consumer that is not
    there, and a retry applies nothing again."""
    server, url = shared
    with server.client("support") as client:
        _post(client, [_signup("tr-giver"), _signup("tr-taker", day=2),
                       _adjustment("tr-adj", "tr-giver", 400, day=2)])  # fmt: skip
        body = _post(client, _transfer("tr-1", "tr-giver", "tr-taker", 300))
        assert _outcomes(body) == [("accepted", None)]
        assert body["results"][0]["balance"] == 200
        giver, taker = body["customers"]["tr-giver"], body["customers"]["tr-taker"]
        assert (giver["balance"], giver["transferred_out"]) == (200, 300)
        assert (taker["balance"], taker["transferred_in"]) == (400, 300)

        entries = _ledger(url, "tr-1")
        assert entries[0] == ("tr-giver", "transfer_out", 300, "tr-taker")
        parts = [e for e in entries[1:] if e[1] == "transfer_in"]
        # FIFO: the signup's 100 points first, then 200 of the adjustment's 400
        assert [(c, p, r) for c, _, p, r in parts] == [("tr-taker", 100, "tr-giver"),
                                                      ("tr-taker", 200, "tr-giver")]  # fmt: skip
        with connect(url) as conn:
            commands = conn.execute(
                "SELECT count(*) FROM outbox WHERE payload LIKE %s", ("%tr-1/transfer%",)
            ).fetchone()
        assert commands == (0,)

        again = _post(client, _transfer("tr-1", "tr-giver", "tr-taker", 300))
        assert again["results"][0]["outcome"] == "duplicate"
        assert again["results"][0]["first"] == {"outcome": "accepted", "reason": None}
        assert _ledger(url, "tr-1") == entries
        assert client.get("/v1/customers/tr-taker").json()["balance"] == 400

        fresh = _post(client, _transfer("tr-2", "tr-taker", "tr-new", 150, day=4))
        assert _outcomes(fresh) == [("accepted", None)]
        assert fresh["customers"]["tr-new"]["transferred_in"] == 150
        assert client.get("/v1/customers/tr-new").json()["balance"] == 150  # enrolled by it


def test_transfer_rejections_are_answered_with_their_reasons(shared: tuple[Served, str]) -> None:
    server, _ = shared
    with server.client("pos") as till:
        _post(till, [_signup("trr"), _signup("trr-friend")])
        body = _post(till, [
            _transfer("trr-self", "trr", "trr", 100),
            _transfer("trr-small", "trr", "trr-friend", 50),
            _transfer("trr-much", "trr", "trr-friend", 5_000),
            _transfer("trr-nobody", "trr-nobody", "trr-friend", 100),
        ])  # fmt: skip
    assert _outcomes(body) == [("rejected", "self_transfer"), ("rejected", "below_minimum"),
                               ("rejected", "insufficient_points"),
                               ("rejected", "not_enrolled")]  # fmt: skip
    assert [r["balance"] for r in body["results"][:3]] == [100, 100, 100]
    assert set(body["customers"]) == {"trr"}  # a rejected transfer names no recipient
    assert body["customers"]["trr"]["transferred_out"] == 0


# ------------------------------------------------------------------ memberships


def test_memberships_are_priced_on_the_card_and_bought_at_that_price(
    shared: tuple[Served, str],
) -> None:
    server, _ = shared
    with server.client("support") as client:
        _post(client, [_signup("mem"), _signup("mem-rich"),
                       _adjustment("mem-rich-adj", "mem-rich", 900)])  # fmt: skip
        poor = client.get("/v1/customers/mem").json()
        rich = client.get("/v1/customers/mem-rich").json()
        assert poor["membership_prices"] == [
            {"id": "vip", "days": 365, "price": "888.00", "fee": "888.00"},
            {"id": "plus", "days": 30, "price": "9.90", "fee": "9.90"},
        ]
        assert rich["balance"] == 1000  # member_fee_min_balance: the member price
        assert rich["membership_prices"][0] == {"id": "vip", "days": 365, "price": "88.00",
                                                "fee": "888.00"}  # fmt: skip
        assert (poor["membership"], poor["membership_ends_at"], poor["membership_fees"]) == (
            None, None, "0",
        )  # fmt: skip

        body = _post(client, [
            _membership("mem-cheap", "mem", "vip", "88.00"),
            _membership("mem-vip", "mem", "vip", poor["membership_prices"][0]["price"]),
            _membership("mem-plus", "mem", "plus", "9.90"),
            _membership("mem-gold", "mem", "gold", "1.00"),
            _membership("mem-nobody", "mem-nobody", "vip", "888.00"),
            _membership("mem-rich-vip", "mem-rich", "vip", rich["membership_prices"][0]["price"]),
        ])  # fmt: skip
        assert _outcomes(body) == [
            ("rejected", "wrong_fee"), ("accepted", None), ("rejected", "membership_active"),
            ("rejected", "unknown_plan"), ("rejected", "not_enrolled"), ("accepted", None),
        ]  # fmt: skip
        member = body["customers"]["mem"]
        ends_at = datetime.fromisoformat(_at(4)) + timedelta(days=365)
        assert member["membership"] == "vip"
        assert datetime.fromisoformat(member["membership_ends_at"]) == ends_at
        assert Decimal(member["membership_fees"]) == Decimal("888.00")
        assert Decimal(body["customers"]["mem-rich"]["membership_fees"]) == Decimal("88.00")
        card = client.get("/v1/customers/mem").json()
        assert card["membership"] == "vip" and card["balance"] == 100  # a fee costs no points

        renewed = _post(client, _membership("mem-renew", "mem", "vip", "888.00", day=5))
        assert _outcomes(renewed) == [("accepted", None)]
        model = renewed["customers"]["mem"]
        assert datetime.fromisoformat(model["membership_ends_at"]) == ends_at + timedelta(365)
        assert Decimal(model["membership_fees"]) == Decimal("1776.00")


# ------------------------------------------------------------------ pending points


def test_the_card_shows_pending_points_and_their_next_maturity(
    shared: tuple[Served, str],
) -> None:
    server, _ = shared
    with server.client("pos") as client:
        body = _post(client, [
            _signup("pend"),
            _purchase("pend-1", "pend", "100.00", day=1),
            _purchase("pend-2", "pend", "50.00", day=2),
            _purchase("pend-3", "pend", "30.00", day=1),  # late: the same maturity as pend-1
        ])  # fmt: skip
        assert _outcomes(body) == [("accepted", None)] * 4
        model = body["customers"]["pend"]
        assert (model["balance"], model["pending"], model["earned"]) == (100, 180, 100)
        card = client.get("/v1/customers/pend").json()
        first = datetime(2026, 3, 15, 10, tzinfo=UTC)  # 14 days of 24 hours
        assert card["pending"] == 180
        assert card["next_maturity"] == {"matures_at": first.isoformat(), "points": 130}
        _post(client, {"event_id": "pend-ret", "type": "return", "occurred_at": _at(3),
                       "customer_id": "pend", "order_id": "o-pend-1",
                       "amount": "40.00"})  # fmt: skip
        card = client.get("/v1/customers/pend").json()
        assert card["pending"] == 140 and card["balance"] == 100  # taken from pending first
        assert card["next_maturity"] == {"matures_at": first.isoformat(), "points": 90}
        # A purchase at the first maturity: its step 2 credits what matured.
        _post(client, _purchase("pend-4", "pend", "10.00", day=15))
        card = client.get("/v1/customers/pend").json()
        assert (card["balance"], card["pending"], card["earned"]) == (190, 60, 190)
        assert card["next_maturity"] == {
            "matures_at": datetime(2026, 3, 16, 10, tzinfo=UTC).isoformat(), "points": 50,
        }  # fmt: skip
        none = client.get("/v1/customers/adj-nobody")
        assert none.status_code == 404
        _post(client, _signup("pend-none"))
        assert client.get("/v1/customers/pend-none").json()["next_maturity"] is None


# ------------------------------------------------------------------ program and console


def test_the_program_shows_its_version_2_sections(shared: tuple[Served, str]) -> None:
    server, _ = shared
    with server.client("read") as client:
        program = client.get("/v1/program").json()
    assert program["name"] == "Kiez Club v2"
    assert program["toml"] == PROGRAM.read_text()
    assert program["pending"] == {"days": 14}
    assert program["transfers"] == {"min_points": 100}
    assert [p["id"] for p in program["memberships"]] == ["vip", "plus"]
    assert program["memberships"][0] == {
        "id": "vip", "days": 365, "fee": "888.00", "member_fee": "88.00",
        "member_fee_min_balance": 1000, "multiplier": "1.05",
    }  # fmt: skip
    (campaign,) = program["campaigns"]
    assert campaign["id"] == "shoe-weekend" and campaign["categories"] == ["shoes"]
    assert datetime.fromisoformat(campaign["starts_at"]) == datetime(2026, 3, 6, 17, tzinfo=UTC)


def test_the_console_card_shows_pending_points_membership_and_prices(
    shared: tuple[Served, str],
) -> None:
    server, _ = shared
    with server.client("support") as client:
        _post(client, [_signup("con"), _purchase("con-1", "con", "70.00", day=2),
                       _membership("con-plus", "con", "plus", "9.90", day=3),
                       _transfer("con-give", "con", "con-friend", 100, day=3)])  # fmt: skip
    with httpx.Client(base_url=server.url, timeout=30) as agent:
        signed = agent.post("/console/sign-in", data={"key": server.keys["support"]})
        assert signed.status_code == 303, signed.text
        page = agent.get("/console/customers/con")
    assert page.status_code == 200, page.text
    text = re.sub(r"\s+", " ", page.text)
    assert re.search(r'data-testid="pending">70 <', text)
    # 70 points of 2026-03-02 10:00 UTC mature 14 days later, shown in Berlin time
    assert re.search(r'data-testid="next-maturity">next: <b>70</b> on 2026-03-16 11:00', text)
    assert 'data-testid="membership">plus<' in text
    assert re.search(r'data-plan="vip">.*?888\.00 EUR', text)
    assert "Points given" in text and "to: con-friend" in text
    assert "Membership started" in text and "paid: 9.90" in text
    assert "Points pending" in text and "matures: 2026-03-16 11:00" in text
