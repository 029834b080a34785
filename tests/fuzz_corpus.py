"""A seeded corpus of hostile input lines: every mutation kind a hostile producer tries.

`corpus(seed, n)` returns raw lines (bytes, no terminator). Every kind appears; the valid
lines among them are real events of the example program, so the ledger grows too.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

MIB = 1024 * 1024
CUSTOMERS = [f"c{i}" for i in range(40)]


def _valid(rng: random.Random, n: int) -> dict[str, Any]:
    customer = rng.choice(CUSTOMERS)
    at = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z"
    kind = rng.choice(["signup", "purchase", "purchase", "purchase", "return", "redemption",
                       "action", "referral", "tick"])  # fmt: skip
    body: dict[str, Any] = {"event_id": f"f{n}", "type": kind, "occurred_at": at}
    if kind != "tick":
        body["customer_id"] = customer
    if kind == "signup":
        body.update(email=f"{customer}@example.org", birth_date="1990-02-28", newsletter=True)
    elif kind == "purchase":
        price = f"{rng.randint(0, 300)}.{rng.randint(0, 99):02d}"
        body.update(order_id=f"o{rng.randint(0, 60)}", currency="EUR", total=price,
                    items=[{"sku": "s", "category": rng.choice(["shoes", "coffee", "x"]),
                            "quantity": rng.randint(1, 3), "unit_price": price}])  # fmt: skip
    elif kind == "return":
        body.update(order_id=f"o{rng.randint(0, 60)}", amount=f"{rng.randint(1, 200)}.00")
    elif kind == "redemption":
        body.update(redemption_id=f"r{n}", points=rng.randint(1, 800))
    elif kind == "action":
        body.update(action=rng.choice(["newsletter_subscribed", "review_written", "nope"]))
    elif kind == "referral":
        body.update(referrer_id=rng.choice(CUSTOMERS))
    return body


def _dump(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def _string_field(body: dict[str, Any], rng: random.Random) -> str:
    return rng.choice([k for k, v in body.items() if isinstance(v, str) and k != "type"])


# Each mutation: (rng, a valid event, its line number) -> a raw line.
Mutation = Callable[[random.Random, dict[str, Any], int], bytes]


def _raw_nul(rng: random.Random, body: dict[str, Any], n: int) -> bytes:
    raw = _dump(body)
    at = rng.randrange(len(raw) + 1)
    return raw[:at] + b"\x00" + raw[at:]


def _escaped_nul(rng: random.Random, body: dict[str, Any], n: int) -> bytes:
    key = rng.choice(["customer_id", "event_id", "email", "order_id", "action", "currency"])
    if key not in body:
        key = _string_field(body, rng)
    body[key] = body[key] + "\u0000x"
    return _dump(body)


def _invalid_utf8(rng: random.Random, body: dict[str, Any], n: int) -> bytes:
    raw = _dump(body)
    at = rng.randrange(len(raw) + 1)
    return (
        raw[:at] + rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80"]) + raw[at:]
    )


def _lone_surrogate(rng: random.Random, body: dict[str, Any], n: int) -> bytes:
    key = _string_field(body, rng)
    return _dump(body).replace(f'"{key}": "'.encode(), f'"{key}": "\\ud800'.encode(), 1)


def _bom(rng: random.Random, body: dict[str, Any], n: int) -> bytes:
    return b"\xef\xbb\xbf" + _dump(body)


def _near_mib(rng: random.Random, body: dict[str, Any], n: int) -> bytes:
    body["padding"] = ""
    size = len(_dump(body))
    body["padding"] = "p" * (MIB + rng.choice([-1, 0, 1]) - size)
    return _dump(body)


def _nested(rng: random.Random, body: dict[str, Any], n: int) -> bytes:
    depth = rng.choice([100, 1000, 20_000])
    key = rng.choice(["items", "total", "extra", "customer_id"])
    opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
    raw = _dump({k: v for k, v in body.items() if k != key})
    return raw[:-1] + f', "{key}": '.encode() + opener * depth + b"1" + closer * depth + b"}"


def _huge_number(rng: random.Random, body: dict[str, Any], n: int) -> bytes:
    choice = rng.randrange(8)
    if choice == 0:
        body["total"] = "9" * rng.choice([13, 19, 30, 140_000])
    elif choice == 1:
        body["total"] = "1." + "1" * rng.choice([7, 20_000])
    elif choice == 2:
        body["points"] = int("9" * rng.choice([10, 19, 30]))
    elif choice == 3:
        body["items"] = [{"sku": "s", "category": "c", "quantity": 10**30, "unit_price": "1"}]
    elif choice == 4:
        return _dump(body)[:-1] + b', "total": 1e400}'
    elif choice == 5:
        body["total"] = "5000000000000000000"
    elif choice == 6:
        body["items"] = [{"sku": "s", "category": "c", "quantity": 1, "unit_price": "1"}] * 1001
    else:
        body["total"] = rng.choice(["-0", "0.0000001", "-1", "+1", "1e3", "NaN", "Infinity"])
    return _dump(body)


def _far_date(rng: random.Random, body: dict[str, Any], n: int) -> bytes:
    key = rng.choice(["occurred_at", "occurred_at", "birth_date"])
    instants = ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z",
                "3000-01-01T00:00:00Z", "2999-12-31T23:59:59-23:59", "1970-01-01T00:00:00+00:01",
                "2025-02-30T00:00:00Z", "2025-01-01T24:00:00Z"]  # fmt: skip
    dates = ["0001-01-01", "9999-12-31", "1899-12-31", "3000-01-01", "2024-02-30"]
    body[key] = rng.choice(dates if key == "birth_date" else instants)
    return _dump(body)


def _keys(rng: random.Random, body: dict[str, Any], n: int) -> bytes:
    raw = _dump(body)
    extra = rng.choice([
        b', "unknown": {"deep": [1, 2, 3]}',
        b', "type": "tick"',
        b', "customer_id": "other"',
        b', "event_id": "f0"',
        b', "\x1b[2J": "\t"',
    ])  # fmt: skip
    return raw[:-1] + extra + b"}"


def _control(rng: random.Random, body: dict[str, Any], n: int) -> bytes:
    key = rng.choice(["customer_id", "event_id", "order_id"])
    if key not in body:
        key = _string_field(body, rng)
    body[key] = body[key] + rng.choice(["\x1b[2J", "\t", "\r", "\x7f", "\u009b", "\u202e"])
    return _dump(body)


def _broken(rng: random.Random, body: dict[str, Any], n: int) -> bytes:
    raw = bytearray(_dump(body))
    choice = rng.randrange(4)
    if choice == 0:
        return bytes(raw[: rng.randrange(1, len(raw))])
    if choice == 1:
        for _ in range(rng.randint(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return bytes(raw).replace(b"\n", b" ")
    if choice == 2:
        return rng.choice([b"[]", b"null", b"42", b'"x"', b"{}", b"\xef\xbb\xbf", b"\r", b"\t\t"])
    return json.dumps([body]).encode()


def _wrong_types(rng: random.Random, body: dict[str, Any], n: int) -> bytes:
    key = rng.choice(list(body))
    body[key] = rng.choice([None, True, 1.5, [], {}, "", " ", 0, -1])
    return _dump(body)


MUTATIONS: dict[str, Mutation] = {
    "raw_nul": _raw_nul,
    "escaped_nul": _escaped_nul,
    "invalid_utf8": _invalid_utf8,
    "lone_surrogate": _lone_surrogate,
    "bom": _bom,
    "near_mib": _near_mib,
    "nested": _nested,
    "huge_number": _huge_number,
    "far_date": _far_date,
    "keys": _keys,
    "control": _control,
    "broken": _broken,
    "wrong_types": _wrong_types,
}
_HEAVY = {"near_mib"}  # a few of these are plenty: each is a MiB


def corpus(seed: int, count: int) -> list[bytes]:
    """`count` lines: half valid events, half mutated, every mutation kind at least twice."""
    rng = random.Random(seed)
    kinds = sorted(MUTATIONS)
    lines: list[bytes] = []
    heavy = 0
    for n in range(count):
        body = _valid(rng, n)
        if n < 2 * len(kinds):
            kind = kinds[n % len(kinds)]
        elif rng.random() < 0.5:
            lines.append(_dump(body))
            continue
        else:
            kind = rng.choice(kinds)
            if kind in _HEAVY:
                heavy += 1
                if heavy > 4:
                    kind = "broken"
        lines.append(MUTATIONS[kind](rng, body, n))
    return lines


def non_blank(data: bytes) -> int:
    """Inputs in a JSON Lines file, counted as the file source counts them."""
    return sum(1 for line in data.split(b"\n") if line.rstrip(b"\r\n").strip())
