"""Internal commands on the wire (topic loyalty.internal), each for the customer's owner:
a referrer's credit, and a transfer's credit with the lot parts it carries."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from loyalty_ledger.engine import Command, ReferrerCredit, TransferCredit
from loyalty_ledger.events import Invalid

REFERRER_CREDIT = "referrer_credit"
TRANSFER_CREDIT = "transfer_credit"
COMMAND_TYPE = REFERRER_CREDIT  # the first kind; kept for readers of older code and data
COMMAND_TYPES = (REFERRER_CREDIT, TRANSFER_CREDIT)


def type_of(command: Command) -> str:
    return REFERRER_CREDIT if isinstance(command, ReferrerCredit) else TRANSFER_CREDIT


def encode(command: Command) -> bytes:
    body: dict[str, Any] = {
        "command_id": command.command_id,
        "type": type_of(command),
        "customer_id": command.owner_id,
        "occurred_at": command.occurred_at.isoformat(),
    }
    if command.decided_at is not None and command.decided_at != command.occurred_at:
        # The instant whose program version decided the cause (a late event's is its
        # customer's clock); absent, the occurred_at: commands from before amendments read so.
        body["decided_at"] = command.decided_at.isoformat()
    if isinstance(command, ReferrerCredit):
        body["referee_id"] = command.referee_id
    else:
        body["giver_id"] = command.giver_id
        body["parts"] = [
            [points, expires_at.isoformat() if expires_at else None]
            for points, expires_at in command.parts
        ]
    return json.dumps(body, separators=(",", ":")).encode()


def decode(raw: bytes) -> Command | Invalid:
    """Never raises: a command we cannot read is dead-lettered like any input."""
    try:
        body: Any = json.loads(raw)
        kind = body.get("type") if isinstance(body, dict) else None
        if kind not in COMMAND_TYPES:
            return Invalid(f"not a command: type must be one of {', '.join(COMMAND_TYPES)}")
        at = _instant(body["occurred_at"])
        decided_at = _instant(body["decided_at"]) if "decided_at" in body else at
        if kind == REFERRER_CREDIT:
            return ReferrerCredit(
                str(body["command_id"]), str(body["customer_id"]), str(body["referee_id"]), at,
                decided_at,
            )  # fmt: skip
        parts = tuple(_part(part) for part in body["parts"])
        return TransferCredit(
            str(body["command_id"]), str(body["customer_id"]), str(body["giver_id"]), parts, at,
            decided_at,
        )  # fmt: skip
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return Invalid(f"unreadable command: {e}")


def _instant(text: object) -> datetime:
    at = datetime.fromisoformat(str(text))
    if at.tzinfo is None:
        raise ValueError("command instant has no offset")
    return at


def _part(part: Any) -> tuple[int, datetime | None]:
    points, expires_at = part
    if type(points) is not int or points <= 0:
        raise ValueError("a transfer part's points must be a positive integer")
    return points, None if expires_at is None else _instant(expires_at)
