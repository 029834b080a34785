"""Goodwill corrections from the support console: the form's idempotency key and CSRF token,
and the `adjustment` event a filled form makes.

Each rendered form gets a random id; its event id is made from it, so a double
click (or a resend after a timeout) posts the same event twice and it applies
once. The form carries an HMAC of the customer and the form id keyed by the
agent's session secret (the console cookie, HttpOnly: a page of another site
can neither read it nor compute the token), checked on post: a synchronizer
token that needs no server state, so any server of a fleet accepts it. The
SameSite=Strict cookie and the browser's Sec-Fetch-Site header are checked too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from loyalty_ledger import events as ev

EVENT_ID_PREFIX = "console-"
FORM_ID_BYTES = 18  # 24 URL-safe characters: never drawn twice
BODY_BYTES_MAX = 8192  # the form: a customer id, 200 characters of reason, encoded
_POINTS = re.compile(r"[+-]?[0-9]{1,10}")
_TOKEN_KIND = b"loyalty-console-correction"
# Sec-Fetch-Site values of a form posted from the console itself; browsers that send no
# such header still have the token and the SameSite cookie to stop a forged post.
SAME_SITE_FETCHES = frozenset({"same-origin", "none"})


@dataclass(frozen=True, slots=True)
class Form:
    """What a rendered correction form carries besides what the agent types."""

    customer_id: str
    form_id: str
    token: str

    @property
    def event_id(self) -> str:
        return EVENT_ID_PREFIX + self.form_id


def new_form(session_secret: str, customer_id: str) -> Form:
    """A form for `customer_id` with a fresh id, signed for this session."""
    form_id = secrets.token_urlsafe(FORM_ID_BYTES)
    return Form(customer_id, form_id, token(session_secret, customer_id, form_id))


def token(session_secret: str, customer_id: str, form_id: str) -> str:
    message = b"\0".join((_TOKEN_KIND, _utf8(customer_id), _utf8(form_id)))
    return hmac.new(_utf8(session_secret), message, hashlib.sha256).hexdigest()


def genuine(session_secret: str, form: Form) -> bool:
    """Whether `form` was rendered by the console for this session (constant time)."""
    if not form.form_id or len(form.form_id) > 64:
        return False
    expected = token(session_secret, form.customer_id, form.form_id)
    return hmac.compare_digest(expected, form.token)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # ids from a URL may hold anything


def adjustment(form: Form, points: str, reason: str, at: datetime) -> bytes | str:
    """The event's bytes, or why the typed values are not a correction (one line)."""
    points, reason = points.strip(), reason.strip()
    if not _POINTS.fullmatch(points):
        return "points: must be a whole number, like 200 or -50"
    if not reason:
        return "reason: say why (1 to 200 characters); the statement shows it"
    event = {
        "event_id": form.event_id, "type": "adjustment", "occurred_at": at.isoformat(),
        "customer_id": form.customer_id, "points": int(points), "reason": reason,
    }  # fmt: skip
    raw = json.dumps(event, ensure_ascii=False).encode("utf-8", "surrogatepass")
    decoded = ev.decode(raw)  # the pipeline's own check: an invalid form is never posted
    return decoded.reason if isinstance(decoded, ev.Invalid) else raw
