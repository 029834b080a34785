"""Anchors: a generation's chain head (last seq, entries up to it, its hash) MACed with the
ledger key and kept outside the database, one JSON line each.

The writer appends one to the anchor file after every batch that commits entries; `loyalty
ledger anchor` prints one to file elsewhere. `verify` then needs the ledger to still hold
every anchored seq with the anchored hash and exactly as many entries up to it, so a deleted
tail or a rewritten chain shows even where the chain itself would check.
"""

from __future__ import annotations

import hmac
import json
import os
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loyalty_ledger.ledger.key import LedgerKey, LedgerKeyError

FORMAT = "loyalty-anchor/1"


@dataclass(frozen=True, slots=True)
class Anchor:
    generation: str
    chain_id: str  # the ledger's: anchors of other ledgers in the same file are not its
    seq: int  # the head's seq; 0: an empty ledger
    entries: int  # ledger rows up to and including it
    hash: str  # the head's chain hash, hex
    keyed_from: int  # the generation's first keyed seq (before it: the legacy chain)
    key_id: str  # of the key it was chained and signed with
    at: str  # when, RFC 3339 UTC

    def line(self, key: LedgerKey) -> str:
        """One JSON line, MACed: the MAC covers every other field, in a canonical form."""
        body = {"format": FORMAT, **asdict(self)}
        return json.dumps({**body, "mac": key.mac(_canonical(body))}) + "\n"


@dataclass(frozen=True, slots=True)
class Filed:
    anchor: Anchor
    where: str  # FILE:LINE


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def append(path: Path, anchor: Anchor, key: LedgerKey) -> None:
    """One write on an O_APPEND file: lines of concurrent writers never interleave."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, anchor.line(key).encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise LedgerKeyError(
            f"cannot write the anchor file {path} ({e}); the batch committed: fix the file "
            "(or set LOYALTY_ANCHOR_FILE) and go on"
        ) from None


def read(path: Path, key: LedgerKey, *, missing_ok: bool) -> tuple[list[Filed], list[Filed | str]]:
    """The anchors in `path` whose MAC checks, and what does not check: a bad line's place
    (`FILE:LINE: why`), or an anchor signed with another key."""
    try:
        with path.open(encoding="utf-8", errors="replace") as lines:
            text = lines.read()
    except FileNotFoundError:
        if missing_ok:
            return [], []
        raise LedgerKeyError(f"anchor file {str(path)!r} not found") from None
    except OSError as e:
        raise LedgerKeyError(f"cannot read anchor file {str(path)!r}: {e}") from None
    good: list[Filed] = []
    bad: list[Filed | str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        found = _parse(line, key)
        if isinstance(found, str):
            bad.append(f"{where}: {found}")
        elif found.key_id != key.key_id:
            bad.append(Filed(found, where))
        else:
            good.append(Filed(found, where))
    return good, bad


def _parse(line: str, key: LedgerKey) -> Anchor | str:
    """The anchor on this line, or why it is not one."""
    try:
        body = json.loads(line)
    except ValueError:
        return "not a JSON anchor line"
    names = {f.name for f in fields(Anchor)}
    if not isinstance(body, dict) or set(body) != names | {"format", "mac"}:
        return "not an anchor (its fields are not an anchor's)"
    mac = body.pop("mac")
    if body.get("format") != FORMAT:
        return f"not an anchor of format {FORMAT}"
    try:
        anchor = Anchor(**{name: body[name] for name in names})
    except TypeError:
        return "not an anchor"
    numbers = ("seq", "entries", "keyed_from")
    texts = ("generation", "chain_id", "hash", "key_id", "at")
    if not (
        all(type(getattr(anchor, f)) is int for f in numbers)
        and all(type(getattr(anchor, f)) is str for f in texts)
        and type(mac) is str
    ):
        return "not an anchor (a field has the wrong type)"
    if anchor.key_id == key.key_id and not hmac.compare_digest(mac, key.mac(_canonical(body))):
        return "its MAC does not check: the line was changed after it was signed"
    return anchor
