"""Internal commands on the wire (topic loyalty.internal): a referrer's credit for its owner."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from loyalty_ledger.engine import ReferrerCredit
from loyalty_ledger.events import Invalid

COMMAND_TYPE = "referrer_credit"


def encode(command: ReferrerCredit) -> bytes:
    body = {
        "command_id": command.command_id,
        "type": COMMAND_TYPE,
        "customer_id": command.referrer_id,
        "referee_id": command.referee_id,
        "occurred_at": command.occurred_at.isoformat(),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def decode(raw: bytes) -> ReferrerCredit | Invalid:
    """Never raises: a command we cannot read is dead-lettered like any input."""
    try:
        body: Any = json.loads(raw)
        if not isinstance(body, dict) or body.get("type") != COMMAND_TYPE:
            return Invalid(f"not a {COMMAND_TYPE} command")
        at = datetime.fromisoformat(body["occurred_at"])
        if at.tzinfo is None:
            return Invalid("command occurred_at has no offset")
        return ReferrerCredit(
            str(body["command_id"]), str(body["customer_id"]), str(body["referee_id"]), at
        )
    except (ValueError, KeyError, TypeError) as e:
        return Invalid(f"unreadable command: {e}")
