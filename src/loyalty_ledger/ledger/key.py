"""The ledger key: the secret the hash chain and its anchors are MACed with, kept outside the
database so that its owner cannot forge them.

Where it comes from, first found wins: LOYALTY_LEDGER_KEY (hex, or else base64; at least
32 bytes), the file named by LOYALTY_LEDGER_KEY_FILE (the same text), or ./.loyalty/ledger.key,
generated (mode 0600) on first use. Whoever holds both the key and the database can rewrite
history undetected, so a shop keeps a copy of the key elsewhere and, ideally, the key itself
off the database's machine. The anchors (signed heads of each chain) go to LOYALTY_ANCHOR_FILE,
else ./.loyalty/anchors.jsonl.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from loyalty_ledger import log
from loyalty_ledger.errors import UserError

ENV_KEY = "LOYALTY_LEDGER_KEY"
ENV_KEY_FILE = "LOYALTY_LEDGER_KEY_FILE"
ENV_ANCHOR_FILE = "LOYALTY_ANCHOR_FILE"
DEFAULT_KEY_FILE = Path(".loyalty", "ledger.key")
DEFAULT_ANCHOR_FILE = Path(".loyalty", "anchors.jsonl")
KEY_BYTES_MIN = 32
KEY_ID_BYTES = 8
_KEY_ID_LABEL = b"loyalty-ledger key id"
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")


class LedgerKeyError(UserError):
    """No usable ledger key (unreadable file, bad text, too short), or an anchor file that
    cannot be read or written. The message says which, and what to do."""


@dataclass(frozen=True, slots=True)
class LedgerKey:
    secret: bytes = field(repr=False)
    origin: str  # where it came from, for messages: never the key itself

    @property
    def key_id(self) -> str:
        """Names the key without revealing it: verify tells "another key" from "a forgery"."""
        return hmac.digest(self.secret, _KEY_ID_LABEL, "sha256")[:KEY_ID_BYTES].hex()

    def mac(self, data: bytes) -> str:
        return hmac.digest(self.secret, data, "sha256").hex()


def parse(text: str, origin: str) -> LedgerKey:
    """Hex if the text is hex digits only (64 or more of them), else base64 (either alphabet)."""
    text = text.strip()
    if _HEX.match(text):
        secret = bytes.fromhex(text)
    else:
        try:
            secret = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise LedgerKeyError(
                f"the ledger key in {origin} is neither hex nor base64: generate one with "
                "`python -c 'import secrets; print(secrets.token_hex(32))'`"
            ) from None
    if len(secret) < KEY_BYTES_MIN:
        raise LedgerKeyError(
            f"the ledger key in {origin} has {len(secret)} bytes, fewer than {KEY_BYTES_MIN}: "
            "use 64 hex digits or more"
        )
    return LedgerKey(secret, origin)


_cache: dict[tuple[str | None, str | None, str], LedgerKey] = {}


def current() -> LedgerKey:
    """The key, from the environment or the key file (generated if none); read once each
    way it is named, so the writer pays for it once a process."""
    text, path = os.environ.get(ENV_KEY), os.environ.get(ENV_KEY_FILE)
    where = (text, path, os.getcwd())
    found = _cache.get(where)
    if found is None:
        if text:
            found = parse(text, ENV_KEY)
        elif path:
            found = _read(Path(path), f"{ENV_KEY_FILE} ({path})")
        else:
            found = _read_or_make(DEFAULT_KEY_FILE)
        _cache[where] = found
    return found


def anchor_file() -> Path:
    return Path(os.environ.get(ENV_ANCHOR_FILE) or DEFAULT_ANCHOR_FILE)


def _read(path: Path, origin: str) -> LedgerKey:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise LedgerKeyError(f"ledger key file {origin} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LedgerKeyError(f"cannot read ledger key file {origin}: {e}") from None
    return parse(text, origin)


def _read_or_make(path: Path) -> LedgerKey:
    """The default key file; made on first use, atomically: two processes starting at once
    agree on one key (the loser of the link reads the winner's)."""
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(secrets.token_hex(KEY_BYTES_MIN) + "\n")
            try:
                os.link(draft, path)
                log.get("ledger-key").warning(
                    "generated a ledger key: keep a copy away from the database (and set "
                    f"{ENV_KEY_FILE} to it); its holder can rewrite the ledger undetected",
                    key_file=str(path.resolve()),
                )
            except FileExistsError:
                pass
            finally:
                draft.unlink()
        except OSError as e:
            raise LedgerKeyError(f"cannot create the ledger key file {path}: {e}") from None
    return _read(path, str(path))
