"""Stored values made safe for a terminal: every character that could move the cursor, clear the
screen, split a TSV column or reorder text is written as an escape instead.

Inputs are hostile: an id, a reason or a raw line may hold ESC sequences, tabs, newlines,
bidirectional overrides or lone surrogates (which would also crash a UTF-8 stdout). Every
human-facing print of a stored value goes through `printable` (or `printable_bytes` for raw
bytes), so one place decides what reaches a terminal. A backslash is left as it is: the
output stays readable, and nothing a backslash spells can act on a terminal.
"""

from __future__ import annotations

import re

# C0 (tab and newline included), DEL, C1; line and paragraph separators; the bidirectional
# embeddings, overrides and isolates; lone surrogates (from JSON "\ud800" escapes).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(found: re.Match[str]) -> str:
    char = found.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object) -> str:
    """`str(value)` with control and other unsafe characters escaped (`\\x1b`, `\\t`, `\\u202e`)."""
    text = value if isinstance(value, str) else str(value)
    return _UNSAFE.sub(_escape, text)


def printable_bytes(raw: bytes) -> str:
    """Raw input bytes as text: UTF-8 where it is, `\\xNN` for each byte that is not, and
    unsafe characters escaped as by `printable`."""
    return printable(raw.decode("utf-8", errors="backslashreplace"))
