"""A POST body split into its events' raw bytes, each exactly as the client sent it.

An input's bytes are what the inbox keeps and hashes (a retry with the same body
is a duplicate with the same hash), so the items of a JSON array are cut out of
the body, never parsed and dumped again (a float would lose digits).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from loyalty_ledger.errors import UserError

_DECODER = json.JSONDecoder()
_SPACE = " \t\n\r"


class MalformedBody(UserError):
    """The body is not JSON; the message is the parser's, with the position."""


class Item(NamedTuple):
    raw: bytes  # the item's bytes as sent: what the pipeline decodes and the inbox keeps
    value: Any  # parsed, to look at its type before it is sent (the scope it needs)


def split(body: bytes) -> list[Item]:
    """One object, or an array of anything (each item becomes one input, valid or not)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedBody(f"the body is not UTF-8: {e.reason} at byte {e.start}") from None
    at = _skip(text, 0)
    if at < len(text) and text[at] == "[":
        return _array(text, at + 1)
    value, end = _value(text, at)
    if _skip(text, end) != len(text):
        raise MalformedBody(f"extra data after the JSON value at char {_skip(text, end)}")
    return [Item(text[at:end].encode(), value)]


def _array(text: str, at: int) -> list[Item]:
    items: list[Item] = []
    at = _skip(text, at)
    if at < len(text) and text[at] == "]":
        end = at + 1
    else:
        while True:
            value, end = _value(text, at)
            items.append(Item(text[at:end].encode(), value))
            at = _skip(text, end)
            if at < len(text) and text[at] == ",":
                at = _skip(text, at + 1)
                continue
            if at < len(text) and text[at] == "]":
                end = at + 1
                break
            raise MalformedBody(f"expecting ',' or ']' at char {at}")
    if _skip(text, end) != len(text):
        raise MalformedBody(f"extra data after the JSON array at char {_skip(text, end)}")
    return items


def _value(text: str, at: int) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(text, at)
    except json.JSONDecodeError as e:
        raise MalformedBody(f"{e.msg} at char {e.pos}") from None
    except RecursionError:
        raise MalformedBody("nested too deeply") from None


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in _SPACE:
        at += 1
    return at
