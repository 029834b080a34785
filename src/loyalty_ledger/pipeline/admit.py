"""Admit one input to a batch, or say why not, as a value: Admitted | DeadLetter | Duplicate.

An input is a dead letter when it cannot be decoded or arrived on a tick stream
its customer does not belong to (a misroute); a duplicate when its event id was
used before (in the database, the batch in flight or earlier in this batch);
else it is admitted and its id joins `seen`. No I/O: the caller looks the ids
up first (`findable` says which it can).
"""

from __future__ import annotations

import hashlib
from collections.abc import MutableMapping
from typing import NamedTuple

from loyalty_ledger import events as ev
from loyalty_ledger.engine import COMMAND_CLASSES, Command
from loyalty_ledger.pipeline import commands
from loyalty_ledger.pipeline.types import Routing
from loyalty_ledger.sources.line import Line
from loyalty_ledger.store.batch import DeadLetter
from loyalty_ledger.store.batch import Duplicate as DuplicateRow
from loyalty_ledger.store.reads import Known
from loyalty_ledger.text import printable

__all__ = ["Admitted", "DeadLetter", "Decoded", "Duplicate", "admit", "decode"]

Decoded = ev.Event | Command | ev.Invalid


class Admitted(NamedTuple):
    """A valid input seen for the first time, with what its rows need."""

    item: ev.Event | Command
    event_id: str
    customer_id: str | None  # None for a tick
    body_hash: bytes  # sha256 of the raw input


class Duplicate(NamedTuple):
    """An input whose event id was used before: counted, nothing else of it is written."""

    # None: the very input that used it, read again (an offset reset): no row, one input.
    row: DuplicateRow | None


_READ_AGAIN = Duplicate(None)


def decode(line: Line) -> Decoded:
    return commands.decode(line.raw) if line.command else ev.decode(line.raw)


def admit(
    line: Line, item: Decoded, seen: MutableMapping[str, Known], routing: Routing
) -> Admitted | DeadLetter | Duplicate:
    """What `item`, decoded from `line`, is to the batch; an admitted one's id joins `seen`."""
    if isinstance(item, ev.Invalid):
        why: str | None = item.reason
        customer_id = None
    else:
        customer_id = customer_of(item)
        why = misrouted(line, customer_id, routing)
    if why is not None:
        # Escaped: a reason may quote the input (a NUL or a lone surrogate would be refused).
        return DeadLetter(line.source, line.position, line.raw, printable(why))
    assert not isinstance(item, ev.Invalid)
    body_hash = hashlib.sha256(line.raw).digest()
    event_id = event_id_of(item)
    known = seen.get(event_id)
    if known is not None:
        if (known.source, known.position) == (line.source, line.position):
            return _READ_AGAIN
        return Duplicate(
            DuplicateRow(line.source, line.position, event_id, known.body_hash == body_hash)
        )
    seen[event_id] = Known(body_hash, line.source, line.position)
    return Admitted(item, event_id, customer_id, body_hash)


def misrouted(line: Line, customer_id: str | None, routing: Routing) -> str | None:
    """Why an input for `customer_id` cannot be decided on `line`'s stream, or None."""
    if customer_id is None or routing.stream_of(customer_id) == line.stream:
        return None
    return (
        f"misrouted: customer {customer_id!r} belongs to {routing.stream_of(customer_id)}"
        f", not {line.stream}; key messages by customer_id with the murmur2 partitioner"
    )


def event_id_of(item: ev.Event | Command) -> str:
    return item.command_id if isinstance(item, COMMAND_CLASSES) else item.event_id


def customer_of(item: ev.Event | Command) -> str | None:
    if isinstance(item, COMMAND_CLASSES):
        return item.owner_id
    return None if isinstance(item, ev.Tick) else item.customer_id


# The input types that may name a customer besides their own (named_in): what links two
# customers' decisions. A preview decides unlinked customers in separate processes.
LINKING_TYPES: tuple[str, ...] = ("signup", "referral", "transfer")


def named_in(item: Decoded) -> list[str]:
    """Customer ids an input names: its customer and any referrer or transfer recipient."""
    if isinstance(item, ev.Invalid | ev.Tick):
        return []
    if isinstance(item, COMMAND_CLASSES):
        return [item.owner_id]
    named = [item.customer_id]
    if isinstance(item, ev.Signup) and item.referred_by:
        named.append(item.referred_by)
    elif isinstance(item, ev.Referral):
        named.append(item.referrer_id)
    elif isinstance(item, ev.Transfer):
        named.append(item.to_customer_id)
    return named


def findable(ids: set[str]) -> set[str]:
    """The ids the database can hold. One with a NUL or a lone surrogate was never stored
    (the driver refuses to send it), so it is not looked up; the write refuses its row, and
    it becomes a dead letter. One scan of them all when none is such (nearly always)."""
    joined = "".join(ids)
    if "\x00" not in joined and (joined.isascii() or _encodes(joined)):
        return ids
    return {i for i in ids if "\x00" not in i and _encodes(i)}


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
