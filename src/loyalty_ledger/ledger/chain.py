"""The ledger's hash chain: each entry's keyed hash covers its columns and its predecessor's
hash, so changing, removing or inserting an entry breaks every hash after it.

Pure: the key comes from ledger/key.py, the rows from the store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

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
    return "".join(map(_field, values)).encode()


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
    mac, field, join = _Hmac(key).digest, _field, "".join
    for values in entries:
        prev = mac(prev, join(map(field, values)).encode())
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
