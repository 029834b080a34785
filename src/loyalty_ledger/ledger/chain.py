"""The ledger's hash chain: each entry's keyed hash covers its columns and its predecessor's
hash, so changing, removing or inserting an entry breaks every hash after it.

Pure: the key comes from ledger/key.py, the rows from the store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from loyalty_ledger.ledger.entries import COLUMNS, Kind

GENESIS = bytes(32)  # the predecessor of a ledger's first entry
_NONE = "\x00"  # absent, in the legacy encoding
_SEP = "\x1f"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_BLOCK_BYTES = 64  # sha256's block: HMAC's pads are this long


def _canonical(value: object) -> str:
    kind = type(value)  # exact types first: this runs for every column of every entry
    if kind is str:
        return value  # type: ignore[return-value]
    if value is None:
        return _NONE
    if kind is int:
        return str(value)
    if isinstance(value, datetime):
        return str((value - _EPOCH) // _MICROSECOND)  # the instant, whatever the zone
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")  # 12.50, 12.5 and 1.25E+1 are one amount
    return str(value)  # a Kind: its value


def _field(value: object) -> str:
    """One column, length-prefixed: `<chars>:<text>`, or `-` for NULL (no length starts so);
    no text a column holds can move a boundary between two columns."""
    if value is None:  # first: most of an entry's columns are NULL
        return "-"
    if type(value) is str:
        return f"{len(value)}:{value}"
    text = _canonical(value)
    return f"{len(text)}:{text}"


def encode(values: tuple[object, ...]) -> bytes:
    """An entry's COLUMNS, unambiguously: two different entries never encode alike."""
    return _text(values, {}).encode()


def _instant_field(value: datetime, seen: dict[datetime, str]) -> str:
    text = seen[value] = _field(value)
    return text


def _text(values: tuple[object, ...], seen: dict[datetime, str]) -> str:
    """`"".join(map(_field, values))`, with the Entry's column types inlined: a third fewer
    Python calls per entry on the writer thread, which shares the GIL with the deciding one.
    Each column takes the inline form only for the exact type COLUMNS give it; any other
    value goes through `_field`, so the text is the same for every input, of any types.
    `seen` memoizes instants (an event's entries share its occurred_at), UTC ones only: two
    equal UTC datetimes are one instant, but two in one zone compare by wall time, fold aside."""
    if len(values) != len(COLUMNS):  # a tuple of another shape: correct, just slower
        return "".join(map(_field, values))
    c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13 = values
    field = _field
    return "".join((
        f"{len(c0)}:{c0}" if type(c0) is str else field(c0),
        f"{len(s)}:{s}" if type(c1) is int and (s := str(c1)) else field(c1),
        _KIND_FIELDS[c2] if type(c2) is Kind else field(c2),
        (seen.get(c3) or _instant_field(c3, seen))
        if type(c3) is datetime and c3.tzinfo is UTC else field(c3),
        f"{len(c4)}:{c4}" if type(c4) is str else field(c4),
        f"{len(s)}:{s}" if type(c5) is int and (s := str(c5)) else field(c5),
        "-" if c6 is None else field(c6),
        "-" if c7 is None else f"{len(c7)}:{c7}" if type(c7) is str else field(c7),
        "-" if c8 is None else f"{len(c8)}:{c8}" if type(c8) is str else field(c8),
        "-" if c9 is None else f"{len(c9)}:{c9}" if type(c9) is str else field(c9),
        "-" if c10 is None else f"{len(c10)}:{c10}" if type(c10) is str else field(c10),
        "-" if c11 is None else f"{len(c11)}:{c11}" if type(c11) is str else field(c11),
        "-" if c12 is None else f"{len(c12)}:{c12}" if type(c12) is str else field(c12),
        "-" if c13 is None
        else (seen.get(c13) or _instant_field(c13, seen))
        if type(c13) is datetime and c13.tzinfo is UTC else field(c13),
    ))  # fmt: skip


_KIND_FIELDS = {kind: _field(kind) for kind in Kind}


class _Hmac:
    """HMAC-SHA256 under one key with the pads hashed once (RFC 2104): per entry this is two
    hash copies, a third of `hmac.digest`'s cost, which sets up the key every call."""

    __slots__ = ("inner", "outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK_BYTES:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK_BYTES, b"\0")
        self.inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self.outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, prev: bytes, body: bytes) -> bytes:
        inner = self.inner.copy()
        inner.update(prev)
        inner.update(body)
        outer = self.outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def keyed_hash(key: bytes, prev: bytes, values: tuple[object, ...]) -> bytes:
    """HMAC-SHA256(key, predecessor's hash || the entry's encoding): changing, removing or
    inserting an entry breaks every hash after it, and only the key's holder can mend them."""
    return _Hmac(key).digest(prev, encode(values))


def keyed_hasher(key: bytes) -> Callable[[bytes, tuple[object, ...]], bytes]:
    """`keyed_hash` under one key, its pads hashed once: for checking a whole chain."""
    mac = _Hmac(key).digest
    return lambda prev, values: mac(prev, encode(values))


def keyed_chain(key: bytes, prev: bytes, entries: Iterable[tuple[object, ...]]) -> list[bytes]:
    """The keyed hashes of `entries`, in order, after the entry whose hash is `prev`."""
    hashes = []
    mac, text = _Hmac(key).digest, _text
    seen: dict[datetime, str] = {}  # one batch's instants: a few tens of thousands at most
    for values in entries:
        prev = mac(prev, text(values, seen).encode())
        hashes.append(prev)
    return hashes


def chain_start(key: bytes, prev: bytes, chain_id: str) -> bytes:
    """What a generation's first keyed entry chains on: its predecessor's hash (GENESIS, or
    the last legacy entry's) MACed with the generation's chain id, so the id cannot be
    changed to disown the anchors without breaking the chain."""
    return _Hmac(key).digest(prev, b"loyalty-chain:" + chain_id.encode())


def legacy_chain_hash(prev: bytes, values: tuple[object, ...]) -> bytes:
    """The chain before keys: sha256(predecessor's hash || COLUMNS joined by \\x1f). Only
    `verify` uses it, for entries written before migration 0005; anyone can recompute it."""
    body = _SEP.join(_canonical(v) for v in values).encode()
    return hashlib.sha256(prev + body).digest()
