"""Decoding input events: a decision table of lines and reasons, null-as-absent, and fuzzing."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fuzz_corpus import corpus
from loyalty_ledger import events
from loyalty_ledger.events import (
    EVENT_CLASSES,
    EVENT_TYPES,
    MAX_LINE_BYTES,
    Action,
    Adjustment,
    Event,
    Invalid,
    Item,
    Membership,
    Purchase,
    Redemption,
    Referral,
    Return,
    Signup,
    Tick,
    Transfer,
    decode,
    json_schemas,
)

AT = "2026-03-01T14:05:00+01:00"

BASE: dict[str, dict[str, Any]] = {
    "signup": {"customer_id": "c1", "email": "c1@example.org"},
    "purchase": {"customer_id": "c1", "order_id": "o1", "currency": "EUR", "total": "59.90"},
    "return": {"customer_id": "c1", "order_id": "o1", "amount": "10.00"},
    "referral": {"customer_id": "c2", "referrer_id": "c1"},
    "redemption": {"customer_id": "c1", "redemption_id": "r1", "reward_id": "voucher-5"},
    "action": {"customer_id": "c1", "action": "review_written"},
    "adjustment": {"customer_id": "c1", "points": -40, "reason": "goodwill: late parcel"},
    "transfer": {"customer_id": "c1", "to_customer_id": "c2", "points": 200},
    "membership": {"customer_id": "c1", "plan": "vip", "paid": "88.00"},
    "tick": {},
}
CLASSES: dict[str, type[Any]] = {
    "signup": Signup,
    "purchase": Purchase,
    "return": Return,
    "referral": Referral,
    "redemption": Redemption,
    "action": Action,
    "adjustment": Adjustment,
    "transfer": Transfer,
    "membership": Membership,
    "tick": Tick,
}
ITEM = {"sku": "S-1", "category": "shoes", "quantity": 2, "unit_price": "29.95"}


def line(type_: str, **fields: Any) -> str:
    """A JSON line of `type_` built from its base event; a field given as ... is left out."""
    event: dict[str, Any] = {"event_id": "e1", "type": type_, "occurred_at": AT, **BASE[type_]}
    for key, value in fields.items():
        if value is ...:
            event.pop(key, None)
        else:
            event[key] = value
    return json.dumps(event)


def decoded(raw: str | bytes) -> Event:
    result = decode(raw)
    assert not isinstance(result, Invalid), result.reason
    return result


def reason(raw: str | bytes) -> str:
    result = decode(raw)
    assert isinstance(result, Invalid), f"decoded: {result!r}"
    assert result.reason == result.reason.strip() and "\n" not in result.reason
    return result.reason


# --- valid inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_every_type_decodes_to_its_class(type_: str) -> None:
    event = decoded(line(type_))
    assert type(event) is CLASSES[type_]
    assert event.type == type_
    assert event.event_id == "e1"
    assert event.channel == "web"


def test_occurred_at_is_converted_to_utc() -> None:
    event = decoded(line("tick", occurred_at="2026-03-01T14:05:00.250+01:00"))
    assert event.occurred_at == datetime(2026, 3, 1, 13, 5, 0, 250000, tzinfo=UTC)
    assert event.occurred_at.tzinfo is UTC


@pytest.mark.parametrize(
    "instant",
    [
        "2026-03-01T13:05:00Z",
        "2026-03-01t13:05:00z",
        "2026-03-01 13:05:00+00:00",
        "2026-03-01T08:05:00-05:00",
    ],
)
def test_rfc_3339_spellings_are_accepted(instant: str) -> None:
    assert decoded(line("tick", occurred_at=instant)).occurred_at == datetime(
        2026, 3, 1, 13, 5, tzinfo=UTC
    )


def test_purchase_fields_are_typed() -> None:
    event = decoded(line("purchase", channel="app", items=[ITEM]))
    assert isinstance(event, Purchase)
    assert event.total == Decimal("59.90")
    assert event.channel == "app"
    assert event.items == (
        Item(sku="S-1", category="shoes", quantity=2, unit_price=Decimal("29.95")),
    )


def test_signup_fields_are_typed() -> None:
    event = decoded(
        line(
            "signup",
            name="Ann",
            phone="+49 1",
            birth_date="1990-02-28",
            referred_by="c0",
            newsletter=True,
        )
    )
    assert isinstance(event, Signup)
    assert (event.name, event.phone, event.referred_by) == ("Ann", "+49 1", "c0")
    assert event.birth_date == date(1990, 2, 28)
    assert event.newsletter is True


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"reward_id": "voucher-5"}, ("voucher-5", None)),
        ({"reward_id": ..., "points": 150}, (None, 150)),
        ({"reward_id": None, "points": 150}, (None, 150)),
        ({"reward_id": "voucher-5", "points": None}, ("voucher-5", None)),
    ],
)
def test_redemption_takes_exactly_one_target(
    fields: dict[str, Any], expected: tuple[Any, Any]
) -> None:
    event = decoded(line("redemption", **fields))
    assert isinstance(event, Redemption)
    assert (event.reward_id, event.points) == expected


@pytest.mark.parametrize(
    ("total", "amount"), [("0", "0"), ("-0", "0"), ("007.50", "7.50"), ("12", "12")]
)
def test_money_strings(total: str, amount: str) -> None:
    event = decoded(line("purchase", total=total))
    assert isinstance(event, Purchase)
    assert event.total == Decimal(amount)
    assert not event.total.is_signed()


def test_null_is_absent() -> None:
    signup = decoded(
        line(
            "signup",
            channel=None,
            name=None,
            phone=None,
            birth_date=None,
            referred_by=None,
            newsletter=None,
        )
    )
    assert isinstance(signup, Signup)
    assert signup.channel == "web"
    assert (signup.name, signup.phone, signup.birth_date, signup.referred_by) == (None,) * 4
    assert signup.newsletter is False
    purchase = decoded(line("purchase", items=None))
    assert isinstance(purchase, Purchase)
    assert purchase.items == ()


def test_unknown_fields_are_ignored() -> None:
    event = decoded(
        line("purchase", coupon="SPRING", nested={"a": [1, 2]}, items=[{**ITEM, "colour": "red"}])
    )
    assert isinstance(event, Purchase)
    assert not hasattr(event, "coupon")
    assert event.items[0].sku == "S-1"


@pytest.mark.parametrize("customer_id", ["c1", 5, None, {"x": 1}, ""])
def test_tick_ignores_any_customer_id(customer_id: Any) -> None:
    assert isinstance(decoded(line("tick", customer_id=customer_id)), Tick)


@pytest.mark.parametrize("ending", ["\n", "\r\n", "   \n"])
def test_line_endings_are_not_part_of_the_event(ending: str) -> None:
    decoded(line("tick") + ending)
    decoded((line("tick") + ending).encode())


def test_str_and_bytes_decode_alike() -> None:
    text = line("purchase", items=[ITEM], name="Zoë")
    assert decode(text) == decode(text.encode())


def test_events_are_frozen() -> None:
    event = decoded(line("tick"))
    with pytest.raises(ValueError, match="frozen"):
        event.event_id = "other"  # type: ignore[misc]


# --- invalid inputs: the decision table -----------------------------------------------------

INVALID: list[tuple[str, str | bytes, str]] = [
    # (case, raw line, expected reason or its start)
    ("cut off", '{"event_id": "e1", "ty', "not json: EOF while parsing a string at line 1"),
    ("empty", "", "not json: EOF while parsing a value"),
    ("trailing text", line("tick") + " x", "not json: trailing characters"),
    ("bad utf-8", b'{"event_id": "\xff"}', "not json: invalid unicode code point"),
    (
        "lone surrogate",
        '{"event_id": "\ud800"}',
        "not utf-8: surrogates not allowed at character 14",
    ),
    ("array", "[1, 2, 3]", "not a json object"),
    ("number", "42", "not a json object"),
    ("null", "null", "not a json object"),
    ("string", '"tick"', "not a json object"),
    ("no type", line("tick", type=...), "missing field type"),
    ("null type", line("tick", type=None), "missing field type"),
    ("unknown type", line("tick", type="refund"), 'unknown type "refund"; use one of signup,'),
    ("numeric type", line("tick", type=7), "type: must be a string, one of signup,"),
    ("odd type", line("tick", type='a"b\nc'), 'unknown type "a\\"b\\nc"; use one of'),
    ("long type", line("tick", type="x" * 100), f'unknown type "{"x" * 40}..."; use one of'),
    ("no event_id", line("purchase", event_id=...), "missing field event_id"),
    ("null event_id", line("purchase", event_id=None), "missing field event_id"),
    ("numeric event_id", line("purchase", event_id=17), "purchase.event_id: must be a string"),
    ("empty event_id", line("purchase", event_id=""), "purchase.event_id: must not be empty"),
    (
        "long event_id",
        line("tick", event_id="x" * 129),
        "tick.event_id: must be at most 128 characters",
    ),
    ("no customer_id", line("purchase", customer_id=...), "missing field customer_id"),
    ("null customer_id", line("action", customer_id=None), "missing field customer_id"),
    (
        "long customer_id",
        line("purchase", customer_id="c" * 129),
        "purchase.customer_id: must be at most 128",
    ),
    ("no occurred_at", line("tick", occurred_at=...), "missing field occurred_at"),
    (
        "naive instant",
        line("tick", occurred_at="2026-03-01T14:05:00"),
        "tick.occurred_at: must be an instant with an offset",
    ),
    (
        "date as instant",
        line("tick", occurred_at="2026-03-01"),
        "tick.occurred_at: must be an instant",
    ),
    (
        "no seconds",
        line("tick", occurred_at="2026-03-01T14:05+01:00"),
        "tick.occurred_at: must be an instant",
    ),
    ("epoch instant", line("tick", occurred_at=1772370300), "tick.occurred_at: must be an instant"),
    (
        "month 13",
        line("tick", occurred_at="2026-13-01T14:05:00Z"),
        "tick.occurred_at: is not a real instant",
    ),
    (
        "offset 24h",
        line("tick", occurred_at="2026-03-01T14:05:00+24:00"),
        "tick.occurred_at: is not a real instant",
    ),
    (
        "before year 1 in utc",
        line("tick", occurred_at="0001-01-01T00:30:00+01:00"),
        "tick.occurred_at: is not a real instant",
    ),
    (
        "after year 9999 in utc",
        line("tick", occurred_at="9999-12-31T23:30:00-01:00"),
        "tick.occurred_at: is not a real instant",
    ),
    (
        "bad channel",
        line("purchase", channel="shop"),
        "purchase.channel: must be one of 'pos', 'web' or 'app'",
    ),
    (
        "numeric total",
        line("purchase", total=59.9),
        'purchase.total: must be a decimal string like "59.90"',
    ),
    (
        "integer total",
        line("purchase", total=59),
        'purchase.total: must be a decimal string like "59.90"',
    ),
    (
        "exponent",
        line("purchase", total="1e3"),
        'purchase.total: must be a decimal string like "59.90"',
    ),
    (
        "plus sign",
        line("purchase", total="+1"),
        'purchase.total: must be a decimal string like "59.90"',
    ),
    (
        "bare point",
        line("purchase", total="1."),
        'purchase.total: must be a decimal string like "59.90"',
    ),
    (
        "leading point",
        line("purchase", total=".5"),
        'purchase.total: must be a decimal string like "59.90"',
    ),
    (
        "spaces",
        line("purchase", total=" 1"),
        'purchase.total: must be a decimal string like "59.90"',
    ),
    (
        "newline in money",
        line("purchase", total="1\n"),
        'purchase.total: must be a decimal string like "59.90"',
    ),
    (
        "comma",
        line("purchase", total="1,5"),
        'purchase.total: must be a decimal string like "59.90"',
    ),
    ("nan", line("purchase", total="NaN"), 'purchase.total: must be a decimal string like "59.90"'),
    (
        "arabic digits",
        line("purchase", total="١٢"),
        'purchase.total: must be a decimal string like "59.90"',
    ),
    ("negative total", line("purchase", total="-0.01"), "purchase.total: must not be negative"),
    ("no total", line("purchase", total=...), "missing field total"),
    ("null total", line("purchase", total=None), "missing field total"),
    ("no currency", line("purchase", currency=...), "missing field currency"),
    ("no order_id", line("purchase", order_id=...), "missing field order_id"),
    ("items not a list", line("purchase", items={"sku": "S"}), "purchase.items: must be a list"),
    ("item not an object", line("purchase", items=[1]), "purchase.items[0]: must be an object"),
    (
        "item without sku",
        line("purchase", items=[ITEM, {"category": "c", "quantity": 1, "unit_price": "1"}]),
        "missing field items[1].sku",
    ),
    (
        "zero quantity",
        line("purchase", items=[{**ITEM, "quantity": 0}]),
        "purchase.items[0].quantity: must be >= 1",
    ),
    (
        "float quantity",
        line("purchase", items=[{**ITEM, "quantity": 1.0}]),
        "purchase.items[0].quantity: must be an integer",
    ),
    (
        "string quantity",
        line("purchase", items=[{**ITEM, "quantity": "1"}]),
        "purchase.items[0].quantity: must be an integer",
    ),
    (
        "bool quantity",
        line("purchase", items=[{**ITEM, "quantity": True}]),
        "purchase.items[0].quantity: must be an integer",
    ),
    (
        "numeric unit_price",
        line("purchase", items=[{**ITEM, "unit_price": 3}]),
        "purchase.items[0].unit_price: must be a decimal string",
    ),
    ("zero amount", line("return", amount="0.00"), "return.amount: must be greater than 0"),
    ("negative amount", line("return", amount="-5"), "return.amount: must not be negative"),
    (
        "numeric amount",
        line("return", amount=5),
        'return.amount: must be a decimal string like "59.90"',
    ),
    ("no email", line("signup", email=...), "missing field email"),
    ("empty email", line("signup", email=""), "signup.email: must not be empty"),
    ("empty name", line("signup", name=""), "signup.name: must not be empty"),
    (
        "string newsletter",
        line("signup", newsletter="yes"),
        "signup.newsletter: must be true or false",
    ),
    (
        "numeric newsletter",
        line("signup", newsletter=1),
        "signup.newsletter: must be true or false",
    ),
    (
        "compact birth_date",
        line("signup", birth_date="19900101"),
        'signup.birth_date: must be a date string like "1990-05-17"',
    ),
    (
        "instant birth_date",
        line("signup", birth_date="1990-01-01T00:00:00Z"),
        "signup.birth_date: must be a date string",
    ),
    (
        "feb 30",
        line("signup", birth_date="1990-02-30"),
        "signup.birth_date: is not a real calendar date",
    ),
    ("numeric referred_by", line("signup", referred_by=3), "signup.referred_by: must be a string"),
    ("no referrer_id", line("referral", referrer_id=...), "missing field referrer_id"),
    (
        "both targets",
        line("redemption", points=100),
        "redemption: give exactly one of reward_id and points",
    ),
    (
        "no target",
        line("redemption", reward_id=...),
        "redemption: give exactly one of reward_id and points",
    ),
    (
        "null targets",
        line("redemption", reward_id=None, points=None),
        "redemption: give exactly one of",
    ),
    ("zero points", line("redemption", reward_id=..., points=0), "redemption.points: must be > 0"),
    (
        "string points",
        line("redemption", reward_id=..., points="100"),
        "redemption.points: must be an integer",
    ),
    (
        "float points",
        line("redemption", reward_id=..., points=100.5),
        "redemption.points: must be an integer",
    ),
    ("no action", line("action", action=...), "missing field action"),
    ("empty action", line("action", action=""), "action.action: must not be empty"),
    (
        "two errors",
        line("purchase", total=1, currency=2),
        "purchase.currency: must be a string (and 1 more)",
    ),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [row[1:] for row in INVALID], ids=[row[0] for row in INVALID]
)
def test_invalid_lines_say_why(raw: str | bytes, expected: str) -> None:
    assert reason(raw).startswith(expected)


def test_too_large_lines_are_refused_unread() -> None:
    big = line("purchase", note="x" * MAX_LINE_BYTES)
    assert reason(big).startswith(f"too large: {len(big)} bytes, the limit is {MAX_LINE_BYTES}")
    assert reason(big.encode()).startswith("too large")


def test_schemas_cover_every_type() -> None:
    assert sorted(json_schemas()) == sorted([f"{t}.json" for t in EVENT_TYPES] + ["event.json"])
    total = json_schemas()["purchase.json"]["properties"]["total"]
    assert total["type"] == "string"
    assert total["pattern"] == r"^-?[0-9]{1,12}(\.[0-9]{1,6})?$"


# --- bounds (PROGRAM.md "Bounds"): each limit, and one past it -------------------------------

MONEY_DIGITS = "must have at most 12 digits before the point and 6 after"
LONG = "x" * 1000
IN_BOUNDS: list[tuple[str, str]] = [
    # (case, line on the limit: valid)
    ("total 12 digits", line("purchase", total="999999999999")),
    ("total 12 and 6 digits", line("purchase", total="999999999999.999999")),
    ("total 6 decimals", line("purchase", total="0.000001")),
    ("unit_price 12 and 6", line("purchase", items=[{**ITEM, "unit_price": "1" * 12 + ".5"}])),
    ("amount 12 and 6 digits", line("return", amount="999999999999.999999")),
    ("quantity 1", line("purchase", items=[{**ITEM, "quantity": 1}])),
    ("quantity 1000000", line("purchase", items=[{**ITEM, "quantity": 1_000_000}])),
    ("1000 items", line("purchase", items=[ITEM] * 1000)),
    ("points 1", line("redemption", reward_id=..., points=1)),
    ("points 1000000000", line("redemption", reward_id=..., points=1_000_000_000)),
    ("id 1 character", line("purchase", customer_id="c")),
    ("id 128 characters", line("purchase", event_id="e" * 128, order_id="o" * 128)),
    ("email 1000 characters", line("signup", email=LONG, name=LONG, phone=LONG)),
    ("currency 1000 characters", line("purchase", currency=LONG)),
    ("sku 1000 characters", line("purchase", items=[{**ITEM, "sku": LONG, "category": LONG}])),
    ("action 1000 characters", line("action", action=LONG)),
    ("first instant", line("tick", occurred_at="1970-01-01T00:00:00Z")),
    ("first instant by offset", line("tick", occurred_at="1970-01-01T01:00:00+01:00")),
    ("last instant", line("tick", occurred_at="2999-12-31T23:59:59Z")),
    ("last instant by offset", line("tick", occurred_at="2999-12-31T22:59:59-01:00")),
    ("first birth_date", line("signup", birth_date="1900-01-01")),
    ("last birth_date", line("signup", birth_date="2999-12-31")),
    ("escaped backslash-u0000 is no nul", line("signup", name="a\\u0000")),
]


@pytest.mark.parametrize("raw", [row[1] for row in IN_BOUNDS], ids=[row[0] for row in IN_BOUNDS])
def test_values_on_the_bounds_are_valid(raw: str) -> None:
    decoded(raw)


BEYOND: list[tuple[str, str | bytes, str]] = [
    # (case, line one past a limit, expected reason)
    ("total 13 digits", line("purchase", total="1000000000000"), f"purchase.total: {MONEY_DIGITS}"),
    ("total 7 decimals", line("purchase", total="0.0000001"), f"purchase.total: {MONEY_DIGITS}"),
    (
        "total 13 digits by a leading zero",
        line("purchase", total="0999999999999"),
        f"purchase.total: {MONEY_DIGITS}",
    ),
    (
        "total 20000 decimals",
        line("purchase", total="1." + "1" * 20_000),
        f"purchase.total: {MONEY_DIGITS}",
    ),
    (
        "total 140000 digits",
        line("purchase", total="9" * 140_000),
        f"purchase.total: {MONEY_DIGITS}",
    ),
    (
        "negative total 13 digits",
        line("purchase", total="-1000000000000"),
        f"purchase.total: {MONEY_DIGITS}",
    ),
    (
        "unit_price 7 decimals",
        line("purchase", items=[ITEM, {**ITEM, "unit_price": "1.0000001"}]),
        f"purchase.items[1].unit_price: {MONEY_DIGITS}",
    ),
    (
        "amount 13 digits",
        line("return", amount="9999999999999"),
        f"return.amount: {MONEY_DIGITS}",
    ),
    (
        "quantity 1000001",
        line("purchase", items=[{**ITEM, "quantity": 1_000_001}]),
        "purchase.items[0].quantity: must be <= 1000000",
    ),
    (
        "quantity 1e30 digits",
        line("purchase", items=[{**ITEM, "quantity": 10**30}]),
        "purchase.items[0].quantity: must be <= 1000000",
    ),
    (
        "quantity 10000 digits",
        '{"type": "purchase", "items": [{"quantity": ' + "9" * 10_000 + "}]}",
        "not json: number out of range",
    ),
    ("1001 items", line("purchase", items=[ITEM] * 1001), "purchase.items: must have at most 1000"),
    ("points 0", line("redemption", reward_id=..., points=0), "redemption.points: must be > 0"),
    (
        "points 1000000001",
        line("redemption", reward_id=..., points=1_000_000_001),
        "redemption.points: must be <= 1000000000",
    ),
    (
        "points 2^63",
        line("redemption", reward_id=..., points=2**63),
        "redemption.points: must be <= 1000000000",
    ),
    (
        "negative points",
        line("redemption", reward_id=..., points=-(2**63)),
        "redemption.points: must be > 0",
    ),
    ("empty id", line("purchase", order_id=""), "purchase.order_id: must not be empty"),
    (
        "id 129 characters",
        line("purchase", order_id="o" * 129),
        "purchase.order_id: must be at most 128 characters",
    ),
    (
        "email 1001 characters",
        line("signup", email=LONG + "x"),
        "signup.email: must be at most 1000 characters",
    ),
    (
        "phone 1001 characters",
        line("signup", phone=LONG + "x"),
        "signup.phone: must be at most 1000 characters",
    ),
    (
        "currency 1001 characters",
        line("purchase", currency=LONG + "x"),
        "purchase.currency: must be at most 1000 characters",
    ),
    (
        "category 1001 characters",
        line("purchase", items=[{**ITEM, "category": LONG + "x"}]),
        "purchase.items[0].category: must be at most 1000 characters",
    ),
    (
        "action 1001 characters",
        line("action", action=LONG + "x"),
        "action.action: must be at most 1000 characters",
    ),
    (
        "nul in customer_id",
        line("purchase", customer_id="c\u0000"),
        "purchase.customer_id: must not contain U+0000",
    ),
    ("nul in event_id", line("tick", event_id="\u0000"), "tick.event_id: must not contain U+0000"),
    ("nul in email", line("signup", email="a\u0000@b"), "signup.email: must not contain U+0000"),
    ("nul in name", line("signup", name="\u0000"), "signup.name: must not contain U+0000"),
    ("nul in phone", line("signup", phone="1\u0000"), "signup.phone: must not contain U+0000"),
    (
        "nul in referred_by",
        line("signup", referred_by="c\u0000"),
        "signup.referred_by: must not contain U+0000",
    ),
    ("nul in currency", line("purchase", currency="EUR\u0000"), "purchase.currency: must not"),
    (
        "nul in sku",
        line("purchase", items=[ITEM, {**ITEM, "sku": "\u0000"}]),
        "purchase.items[1].sku: must not contain U+0000",
    ),
    (
        "nul in category",
        line("purchase", items=[{**ITEM, "category": "shoes\u0000"}]),
        "purchase.items[0].category: must not contain U+0000",
    ),
    ("nul in action", line("action", action="x\u0000"), "action.action: must not contain U+0000"),
    (
        "nul in reward_id",
        line("redemption", reward_id="v\u0000"),
        "redemption.reward_id: must not contain U+0000",
    ),
    ("raw nul byte", line("tick", event_id="e\u0000").replace("\\u0000", "\x00"), "not json:"),
    (
        "before 1970",
        line("tick", occurred_at="1969-12-31T23:59:59Z"),
        "tick.occurred_at: must be from 1970-01-01T00:00:00Z to 2999-12-31T23:59:59Z",
    ),
    (
        "before 1970 by offset",
        line("tick", occurred_at="1970-01-01T00:59:59+01:00"),
        "tick.occurred_at: must be from 1970-01-01T00:00:00Z",
    ),
    (
        "after 2999",
        line("tick", occurred_at="3000-01-01T00:00:00Z"),
        "tick.occurred_at: must be from 1970-01-01T00:00:00Z to 2999-12-31T23:59:59Z",
    ),
    (
        "after 2999 by a fraction",
        line("tick", occurred_at="2999-12-31T23:59:59.000001Z"),
        "tick.occurred_at: must be from",
    ),
    (
        "after 2999 by offset",
        line("tick", occurred_at="2999-12-31T23:00:00-01:00"),
        "tick.occurred_at: must be from",
    ),
    ("year 9999", line("tick", occurred_at="9999-12-31T00:00:00Z"), "tick.occurred_at: must be"),
    ("year 0001", line("tick", occurred_at="0001-01-01T00:00:00Z"), "tick.occurred_at: must be"),
    (
        "birth_date 1899",
        line("signup", birth_date="1899-12-31"),
        "signup.birth_date: must be from 1900-01-01 to 2999-12-31",
    ),
    (
        "birth_date 3000",
        line("signup", birth_date="3000-01-01"),
        "signup.birth_date: must be from 1900-01-01 to 2999-12-31",
    ),
    ("deep arrays", "[" * 100_000, "not json: recursion limit exceeded"),
    (
        "deep objects in an event",
        '{"type": "tick", "x": ' + '{"a": ' * 100_000 + "1" + "}" * 100_000 + "}",
        "not json: recursion limit exceeded",
    ),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [row[1:] for row in BEYOND], ids=[row[0] for row in BEYOND]
)
def test_values_beyond_the_bounds_say_which_field(raw: str | bytes, expected: str) -> None:
    assert reason(raw).startswith(expected)
    assert reason(raw.encode() if isinstance(raw, str) else raw).startswith(expected)


@pytest.mark.parametrize("bom", [b"\xef\xbb\xbf", "\ufeff"])
def test_a_bom_before_a_line_is_dropped(bom: bytes | str) -> None:
    raw = line("tick")
    assert decoded(bom + (raw.encode() if isinstance(bom, bytes) else raw)) == decoded(raw)


def test_a_bom_inside_a_line_is_not_dropped() -> None:
    assert reason(" \ufeff" + line("tick")).startswith("not json")


def test_schemas_carry_the_bounds() -> None:
    schemas = json_schemas()
    purchase = schemas["purchase.json"]
    item = purchase["$defs"]["Item"]["properties"]
    assert (item["quantity"]["minimum"], item["quantity"]["maximum"]) == (1, 1_000_000)
    assert purchase["properties"]["items"]["anyOf"][0]["maxItems"] == 1000
    assert purchase["properties"]["customer_id"]["maxLength"] == 128
    assert purchase["properties"]["currency"]["maxLength"] == 1000
    assert purchase["properties"]["currency"]["pattern"] == r"^[^\x00]*$"
    points = schemas["redemption.json"]["properties"]["points"]["anyOf"][0]
    assert points["maximum"] == 1_000_000_000
    birth_date = schemas["signup.json"]["properties"]["birth_date"]["anyOf"][0]
    assert "1900-01-01 to 2999-12-31" in birth_date["description"]


# --- version 2 events: the wire rules (PROGRAM.md "Details version 2 settles") --------------


def test_adjustment_fields_are_typed() -> None:
    event = decoded(line("adjustment", points=-40, reason="goodwill: late parcel"))
    assert isinstance(event, Adjustment)
    assert (event.customer_id, event.points, event.reason) == ("c1", -40, "goodwill: late parcel")
    credit = decoded(line("adjustment", points=500, channel="pos"))
    assert isinstance(credit, Adjustment)
    assert (credit.points, credit.channel) == (500, "pos")


def test_transfer_fields_are_typed() -> None:
    event = decoded(line("transfer", to_customer_id="c2", points=200))
    assert isinstance(event, Transfer)
    assert (event.customer_id, event.to_customer_id, event.points) == ("c1", "c2", 200)


@pytest.mark.parametrize(("paid", "amount"), [("88.00", "88.00"), ("0", "0"), ("-0.00", "0")])
def test_membership_fields_are_typed(paid: str, amount: str) -> None:
    event = decoded(line("membership", plan="vip", paid=paid))
    assert isinstance(event, Membership)
    assert (event.customer_id, event.plan) == ("c1", "vip")
    assert event.paid == Decimal(amount)
    assert not event.paid.is_signed()


V2_VALID: list[tuple[str, str]] = [
    # (case, line on a limit: valid)
    ("adjustment points 1", line("adjustment", points=1)),
    ("adjustment points -1", line("adjustment", points=-1)),
    ("adjustment points 10^9", line("adjustment", points=1_000_000_000)),
    ("adjustment points -10^9", line("adjustment", points=-1_000_000_000)),
    ("reason 1 character", line("adjustment", reason="x")),
    ("reason 200 characters", line("adjustment", reason="x" * 200)),
    ("reason 200 characters, not bytes", line("adjustment", reason="é" * 200)),
    ("transfer points 1", line("transfer", points=1)),
    ("transfer points 10^9", line("transfer", points=1_000_000_000)),
    ("to_customer_id 1 character", line("transfer", to_customer_id="c")),
    ("to_customer_id 128 characters", line("transfer", to_customer_id="c" * 128)),
    ("paid 0", line("membership", paid="0")),
    ("paid 12 and 6 digits", line("membership", paid="999999999999.999999")),
    ("plan 1000 characters", line("membership", plan="p" * 1000)),
]


@pytest.mark.parametrize("raw", [row[1] for row in V2_VALID], ids=[row[0] for row in V2_VALID])
def test_version_2_values_on_the_limits_are_valid(raw: str) -> None:
    decoded(raw)


NOT_ZERO = "must not be 0 (negative takes away)"
POINTS = 1_000_000_000
V2_INVALID: list[tuple[str, str, str]] = [
    # (case, raw line, the whole reason)
    (
        "adjustment points as a string",
        line("adjustment", points="40"),
        "adjustment.points: must be an integer",
    ),
    (
        "adjustment points as a float",
        line("adjustment", points=40.0),
        "adjustment.points: must be an integer",
    ),
    (
        "adjustment points as a fraction",
        line("adjustment", points=-40.5),
        "adjustment.points: must be an integer",
    ),
    (
        "adjustment points as a boolean",
        line("adjustment", points=True),
        "adjustment.points: must be an integer",
    ),
    (
        "adjustment points false",
        line("adjustment", points=False),
        "adjustment.points: must be an integer",
    ),
    ("adjustment points 0", line("adjustment", points=0), f"adjustment.points: {NOT_ZERO}"),
    (
        "adjustment points -0",
        line("adjustment").replace('"points": -40', '"points": -0'),
        f"adjustment.points: {NOT_ZERO}",
    ),
    (
        "adjustment points 10^9 + 1",
        line("adjustment", points=1_000_000_001),
        "adjustment.points: must be <= 1000000000",
    ),
    (
        "adjustment points -10^9 - 1",
        line("adjustment", points=-1_000_000_001),
        "adjustment.points: must be >= -1000000000",
    ),
    (
        "adjustment points 2^63",
        line("adjustment", points=2**63),
        "adjustment.points: must be <= 1000000000",
    ),
    (
        "adjustment points -2^63",
        line("adjustment", points=-(2**63)),
        "adjustment.points: must be >= -1000000000",
    ),
    ("adjustment without points", line("adjustment", points=...), "missing field points"),
    ("adjustment null points", line("adjustment", points=None), "missing field points"),
    ("empty reason", line("adjustment", reason=""), "adjustment.reason: must not be empty"),
    (
        "reason 201 characters",
        line("adjustment", reason="x" * 201),
        "adjustment.reason: must be at most 200 characters",
    ),
    ("numeric reason", line("adjustment", reason=5), "adjustment.reason: must be a string"),
    ("no reason", line("adjustment", reason=...), "missing field reason"),
    (
        "nul in reason",
        line("adjustment", reason="late\u0000"),
        "adjustment.reason: must not contain U+0000",
    ),
    (
        "transfer points as a string",
        line("transfer", points="200"),
        "transfer.points: must be an integer",
    ),
    (
        "transfer points as a float",
        line("transfer", points=200.0),
        "transfer.points: must be an integer",
    ),
    (
        "transfer points as a boolean",
        line("transfer", points=True),
        "transfer.points: must be an integer",
    ),
    ("transfer points 0", line("transfer", points=0), "transfer.points: must be > 0"),
    ("negative transfer", line("transfer", points=-200), "transfer.points: must be > 0"),
    (
        "transfer points 10^9 + 1",
        line("transfer", points=1_000_000_001),
        "transfer.points: must be <= 1000000000",
    ),
    ("transfer without points", line("transfer", points=...), "missing field points"),
    (
        "empty to_customer_id",
        line("transfer", to_customer_id=""),
        "transfer.to_customer_id: must not be empty",
    ),
    (
        "to_customer_id 129 characters",
        line("transfer", to_customer_id="c" * 129),
        "transfer.to_customer_id: must be at most 128 characters",
    ),
    (
        "numeric to_customer_id",
        line("transfer", to_customer_id=7),
        "transfer.to_customer_id: must be a string",
    ),
    ("no to_customer_id", line("transfer", to_customer_id=...), "missing field to_customer_id"),
    (
        "nul in to_customer_id",
        line("transfer", to_customer_id="c\u0000"),
        "transfer.to_customer_id: must not contain U+0000",
    ),
    (
        "paid as a number",
        line("membership", paid=88),
        'membership.paid: must be a decimal string like "59.90"',
    ),
    (
        "paid as a float",
        line("membership", paid=88.0),
        'membership.paid: must be a decimal string like "59.90"',
    ),
    (
        "paid with an exponent",
        line("membership", paid="8.8e1"),
        'membership.paid: must be a decimal string like "59.90"',
    ),
    ("negative paid", line("membership", paid="-0.01"), "membership.paid: must not be negative"),
    (
        "paid 13 digits",
        line("membership", paid="1000000000000"),
        f"membership.paid: {MONEY_DIGITS}",
    ),
    ("no paid", line("membership", paid=...), "missing field paid"),
    ("empty plan", line("membership", plan=""), "membership.plan: must not be empty"),
    ("numeric plan", line("membership", plan=1), "membership.plan: must be a string"),
    (
        "plan 1001 characters",
        line("membership", plan="p" * 1001),
        "membership.plan: must be at most 1000 characters",
    ),
    (
        "membership without customer_id",
        line("membership", customer_id=...),
        "missing field customer_id",
    ),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [row[1:] for row in V2_INVALID], ids=[row[0] for row in V2_INVALID]
)
def test_version_2_lines_that_break_the_wire_rules_say_why(raw: str, expected: str) -> None:
    assert reason(raw) == expected
    assert reason(raw.encode()) == expected


def test_schemas_carry_the_version_2_rules() -> None:
    schemas = json_schemas()
    adjustment = schemas["adjustment.json"]["properties"]
    assert adjustment["points"]["type"] == "integer"
    assert (adjustment["points"]["minimum"], adjustment["points"]["maximum"]) == (-POINTS, POINTS)
    assert (adjustment["reason"]["minLength"], adjustment["reason"]["maxLength"]) == (1, 200)
    transfer = schemas["transfer.json"]["properties"]
    assert (transfer["points"]["exclusiveMinimum"], transfer["points"]["maximum"]) == (0, POINTS)
    assert transfer["to_customer_id"]["maxLength"] == 128
    paid = schemas["membership.json"]["properties"]["paid"]
    assert paid["type"] == "string"
    assert paid["pattern"] == r"^-?[0-9]{1,12}(\.[0-9]{1,6})?$"
    assert ">= 0" in paid["description"]
    for name in ("adjustment.json", "transfer.json", "membership.json"):
        assert set(schemas[name]["required"]) >= {"event_id", "occurred_at", "customer_id"}


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=500)
@given(st.text())
def test_decode_never_raises_on_text(raw: str) -> None:
    assert isinstance(decode(raw), (Invalid, *EVENT_CLASSES.values()))


@settings(max_examples=500)
@given(st.binary())
def test_decode_never_raises_on_bytes(raw: bytes) -> None:
    decode(raw)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
field_names = st.sampled_from(
    sorted(
        {key for base in BASE.values() for key in base}
        | {
            "event_id",
            "occurred_at",
            "channel",
            "items",
            "points",
            "name",
            "birth_date",
            "newsletter",
        }
    )
)
wire_values = st.one_of(
    json_values,
    st.sampled_from(["", "0", "-1", "1.5", "1e3", AT, "2026-03-01", "pos", "c1", "x" * 129]),
    st.lists(st.fixed_dictionaries({}, optional={k: json_values for k in ITEM}), max_size=2),
)


@settings(max_examples=1000)
@given(
    st.one_of(st.sampled_from(EVENT_TYPES), json_values),
    st.dictionaries(field_names, wire_values, max_size=6),
)
def test_decode_never_raises_on_near_miss_events(type_: Any, changes: dict[str, Any]) -> None:
    base = BASE.get(type_, {}) if isinstance(type_, str) else {}
    event = {"event_id": "e1", "type": type_, "occurred_at": AT, **base, **changes}
    result = decode(json.dumps(event))
    if isinstance(result, Invalid):
        assert result.reason and "\n" not in result.reason
    else:
        assert result.type == type_


@given(
    st.decimals(min_value=0, max_value=10**12 - 1, places=2, allow_nan=False, allow_infinity=False)
)
def test_plain_decimal_money_round_trips(amount: Decimal) -> None:
    event = decoded(line("purchase", total=f"{amount:f}"))
    assert isinstance(event, Purchase)
    assert event.total == amount


# --- built in Python (the engine turns a signup's extras into events) -------------------------


def test_events_can_be_built_from_python_values() -> None:
    berlin = datetime.fromisoformat(AT)
    referral = Referral(
        type="referral", event_id="e1", occurred_at=berlin, customer_id="c2", referrer_id="c1"
    )
    assert referral.occurred_at == datetime(2026, 3, 1, 13, 5, tzinfo=UTC)
    assert referral.occurred_at.tzinfo is UTC
    purchase = Purchase(
        type="purchase",
        event_id="e2",
        occurred_at=berlin,
        customer_id="c1",
        order_id="o1",
        currency="EUR",
        total=Decimal("12.50"),
        items=(Item(sku="S", category="c", quantity=1, unit_price=Decimal("12.50")),),
    )
    assert purchase.total == Decimal("12.50")
    signup = Signup(
        type="signup",
        event_id="e3",
        occurred_at=berlin,
        customer_id="c1",
        email="a@b",
        birth_date=date(1990, 1, 2),
    )
    assert signup.birth_date == date(1990, 1, 2)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("occurred_at", datetime(2026, 3, 1, 14, 5)),
        ("total", Decimal("-1")),
        ("total", Decimal("NaN")),
        ("total", 12.5),
        ("total", Decimal("1E+12")),
        ("total", Decimal("0.0000001")),
        ("occurred_at", datetime(3000, 1, 1, tzinfo=UTC)),
        ("occurred_at", datetime(1969, 12, 31, 23, 59, tzinfo=UTC)),
    ],
)
def test_python_values_keep_the_wire_rules(field: str, value: Any) -> None:
    """Values built in Python are held to the wire's rules and bounds too."""
    fields: dict[str, Any] = {
        "type": "purchase",
        "event_id": "e1",
        "occurred_at": datetime(2026, 3, 1, tzinfo=UTC),
        "customer_id": "c1",
        "order_id": "o1",
        "currency": "EUR",
        "total": Decimal("1"),
        field: value,
    }
    with pytest.raises(ValueError, match=field):
        Purchase.model_validate(fields)


# Values at and beyond the edges of each field's common form (decode's strict pass).
EDGES: dict[str, list[Any]] = {
    "money": ["0", "-0", "-0.00", "-1", "1", "0.000001", "999999999999.999999", "1000000000000",
              "1.0000000", ".5", "+1", "1e3", " 1", "١", "NaN", "", 5, None],
    "instant": ["2026-03-01T14:05:00Z", "2026-03-01t14:05:00z", "2026-03-01 14:05:00+01:00",
                "2026-03-01T14:05:00", "2026-03-01T14:05:00.123456789+05:45",
                "2026-03-01T14:05:00+00:00", "2026-03-01T14:05:00-00:00",
                "1970-01-01T00:30:00+01:00", "2999-12-31T23:59:59-00:01",
                "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-02-29T00:00:00Z",
                "2026-03-01T24:00:00Z", "2026-03-01T14:05:00+24:00", "2026-03-01T14:05:00+01:60",
                1772370300],
    "date": ["1990-05-17", "1900-01-01", "1899-12-31", "3000-01-01", "1990-02-29", "19900517"],
    "channel": ["app", None, "WEB"],
    "newsletter": [True, None, 0],
    "items": [None, [], [dict(ITEM, unit_price="-0.00")], [dict(ITEM, unit_price="-1")]],
}  # fmt: skip
EDGE_FIELDS = {"total": "money", "amount": "money", "paid": "money", "occurred_at": "instant",
               "birth_date": "date", "channel": "channel", "newsletter": "newsletter",
               "items": "items"}  # fmt: skip


def _edge_lines() -> list[bytes]:
    lines = [
        raw if isinstance(raw, bytes) else raw.encode(errors="surrogatepass")
        for _, raw, *_ in INVALID
    ]
    lines += corpus(15, 3000)
    for type_ in EVENT_TYPES:
        for field, kind in EDGE_FIELDS.items():
            lines += [line(type_, **{field: value}).encode() for value in EDGES[kind]]
    return lines


def test_the_strict_pass_accepts_only_what_the_rules_accept_alike() -> None:
    """decode tries the common forms strictly first: each event so made is the lax rules' own."""
    strict = 0
    for raw in _edge_lines():
        try:
            fast = events._EVENT.validate_json(raw, strict=True)
        except ValidationError:
            continue
        strict += 1
        slow = events._EVENT.validate_json(raw)
        assert (repr(fast), fast.model_fields_set) == (repr(slow), slow.model_fields_set), raw
        assert fast == slow
    assert strict > 1000
