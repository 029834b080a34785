"""admit: one input to a batch, as a value. No database: `seen` stands for the looked-up ids."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from loyalty_ledger import events as ev
from loyalty_ledger.engine import ReferrerCredit
from loyalty_ledger.pipeline import OneStream, commands
from loyalty_ledger.pipeline.admit import (
    Admitted,
    DeadLetter,
    Duplicate,
    admit,
    decode,
    findable,
    misrouted,
    named_in,
)
from loyalty_ledger.sources.line import Line
from loyalty_ledger.store.batch import Duplicate as DuplicateRow
from loyalty_ledger.store.reads import Known

AT = "2024-03-01T10:00:00+00:00"


def _raw(**fields: object) -> bytes:
    body = {"event_id": "e1", "type": "purchase", "occurred_at": AT, "channel": "pos",
            "customer_id": "c1", "order_id": "o1", "currency": "EUR", "total": "10.00"}  # fmt: skip
    body.update(fields)
    return json.dumps(body).encode()


@dataclass(frozen=True)
class ByPrefix:
    """Customers whose id starts with "a" are on stream "s0", the others on "s1"."""

    def stream_of(self, customer_id: str) -> str:
        return "s0" if customer_id.startswith("a") else "s1"

    def owns(self, customer_id: str) -> bool:
        return self.stream_of(customer_id) == "s0"


def _admit(line: Line, seen: dict[str, Known] | None = None, routing: object = None) -> object:
    return admit(line, decode(line), {} if seen is None else seen, routing or OneStream())


def test_a_new_valid_input_is_admitted_and_its_id_joins_seen() -> None:
    line = Line("file:x", 1, _raw())
    seen: dict[str, Known] = {}
    got = _admit(line, seen)
    digest = hashlib.sha256(line.raw).digest()
    assert isinstance(got, Admitted)
    assert (got.event_id, got.customer_id, got.body_hash) == ("e1", "c1", digest)
    assert isinstance(got.item, ev.Purchase)
    assert seen == {"e1": Known(digest, "file:x", 1)}


def test_a_tick_is_admitted_without_a_customer() -> None:
    got = _admit(Line("file:x", 1, json.dumps({"event_id": "t1", "type": "tick",
                                                "occurred_at": AT}).encode()))  # fmt: skip
    assert isinstance(got, Admitted)
    assert got.customer_id is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(b"{not json", "not json"), (_raw(total="-1"), "total"), (b"\xff\xfe", "")],
)
def test_an_undecodable_input_is_a_dead_letter_with_its_reason(raw: bytes, reason: str) -> None:
    seen: dict[str, Known] = {}
    got = _admit(Line("file:x", 7, raw), seen)
    assert isinstance(got, DeadLetter)
    assert (got.source, got.position, got.raw) == ("file:x", 7, raw)
    assert reason in got.reason.lower()
    assert seen == {}


def test_a_dead_letters_reason_is_printable_whatever_the_input_quotes() -> None:
    got = _admit(Line("file:x", 1, b'{"type": "\\u0000"}'))
    assert isinstance(got, DeadLetter)
    assert "\x00" not in got.reason


def test_an_id_seen_before_with_the_same_body_is_a_duplicate_of_the_same_body() -> None:
    raw = _raw()
    seen = {"e1": Known(hashlib.sha256(raw).digest(), "file:x", 1)}
    got = _admit(Line("file:y", 5, raw), seen)
    assert isinstance(got, Duplicate)  # tuples of another type could compare equal
    assert got == Duplicate(DuplicateRow("file:y", 5, "e1", True))
    assert seen["e1"].source == "file:x"  # the first use stays the known one


def test_an_id_seen_before_with_another_body_is_a_duplicate_of_another_body() -> None:
    seen = {"e1": Known(b"other", "file:x", 1)}
    got = _admit(Line("file:x", 2, _raw()), seen)
    assert isinstance(got, Duplicate)
    assert got == Duplicate(DuplicateRow("file:x", 2, "e1", False))


def test_the_same_input_read_again_is_a_duplicate_without_a_row() -> None:
    raw = _raw()
    seen = {"e1": Known(hashlib.sha256(raw).digest(), "kafka:t:0", 9)}
    got = _admit(Line("kafka:t:0", 9, raw), seen)
    assert isinstance(got, Duplicate) and got.row is None


def test_an_id_twice_in_one_batch_is_admitted_once() -> None:
    seen: dict[str, Known] = {}
    first, again = (_admit(Line("file:x", n, _raw()), seen) for n in (1, 2))
    assert isinstance(first, Admitted) and isinstance(again, Duplicate)
    assert again == Duplicate(DuplicateRow("file:x", 2, "e1", True))


def test_a_misrouted_input_is_a_dead_letter_naming_both_streams() -> None:
    got = _admit(Line("kafka:t:1", 3, _raw(customer_id="a7"), "s1"), routing=ByPrefix())
    assert isinstance(got, DeadLetter)
    assert got.reason.startswith("misrouted: customer 'a7' belongs to s0, not s1")
    assert isinstance(
        _admit(Line("kafka:t:0", 3, _raw(customer_id="a7"), "s0"), routing=ByPrefix()), Admitted
    )


def test_a_tick_is_never_misrouted() -> None:
    assert misrouted(Line("kafka:t:1", 1, b"", "s1"), None, ByPrefix()) is None


def test_a_command_is_decoded_as_one_and_routed_by_its_referrer() -> None:
    at = datetime(2024, 3, 1, tzinfo=UTC)
    raw = commands.encode(ReferrerCredit("k1", "a1", "c9", at))
    line = Line("kafka:internal:0", 1, raw, "s0", command=True)
    got = admit(line, decode(line), {}, ByPrefix())
    assert isinstance(got, Admitted)
    assert (got.event_id, got.customer_id) == ("k1", "a1")
    wrong = Line("kafka:internal:1", 1, raw, "s1", command=True)
    assert isinstance(admit(wrong, decode(wrong), {}, ByPrefix()), DeadLetter)
    assert isinstance(decode(Line("file:x", 1, raw)), ev.Invalid)  # not a PROGRAM.md event


def test_named_in_lists_the_customer_and_any_referrer() -> None:
    signup = ev.decode(json.dumps({"event_id": "e", "type": "signup", "occurred_at": AT,
                                   "channel": "pos", "customer_id": "c1", "email": "a@b.c",
                                   "referred_by": "c2"}))  # fmt: skip
    assert named_in(signup) == ["c1", "c2"]
    assert named_in(ev.Invalid("x")) == []
    assert named_in(ev.decode(_raw())) == ["c1"]


def test_findable_leaves_out_ids_the_database_cannot_hold() -> None:
    ids = {"e1", "é2"}
    assert findable(ids) is ids  # nearly always: no copy
    assert findable({"e1", "bad\x00", "lone\ud800"}) == {"e1"}
