"""batch_rows: the snapshot text a batch writes loads back to the state it was made from."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

from loyalty_ledger.engine.state import (
    CustomerState,
    Lot,
    Order,
    Pending,
    from_snapshot,
    to_snapshot,
)
from loyalty_ledger.pipeline.batch_rows import _json

AT = datetime(2025, 2, 25, 15, 44, 21, 123456, tzinfo=UTC)


def _state() -> CustomerState:
    spend = [(AT, Decimal("12.50")), (AT, Decimal("1.25E+1"))]
    return CustomerState(
        "kundé-ü\u2028😀", version=7, clock=AT, ticks_seen=3, enrolled=True,
        signed_up_on=date(2024, 3, 1), birth_date=date(1974, 12, 23), referrer_id="r\"1\\",
        tier="silver", debt=5, lots_made=2, earned=10**15, redeemed=1,
        lots=[Lot(7, AT, 1), Lot(3, None, 2)],
        orders={"ord-ß": Order(Decimal("3.20"), Decimal(0), 3, 0)},
        spend=spend, spend_total=Decimal("25.0"), actions={"a": 1}, stamps={"s": 2},
        birthday_years=[2024], redemption_ids={"rd-2", "rd-1"}, adjusted=-4,
        pending=[Pending(AT, 1, "ord-ß", 9)], pending_made=1, campaigns={"c": 1},
        membership=("gold", AT),
    )  # fmt: skip


def test_a_snapshot_loads_back_to_its_state_and_means_what_json_wrote() -> None:
    state = _state()
    text = _json(to_snapshot(state))
    assert json.loads(text) == json.loads(json.dumps(to_snapshot(state)))
    assert from_snapshot(state.customer_id, json.loads(text)) == state


def test_what_orjson_refuses_is_written_as_json_wrote_it() -> None:
    snapshot = {"v": 2**70, "tier": "\ud800"}  # an int beyond 64 bits, a lone surrogate
    assert _json(snapshot) == json.dumps(snapshot, separators=(",", ":"))
