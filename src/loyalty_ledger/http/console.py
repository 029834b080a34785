"""The support console at `/console`: server-rendered pages where a support agent signs in
with a `support` (or `admin`) key, looks a customer up, reads the card and the statement, and
adds a goodwill correction (an `adjustment` event, through the same writer as the API's).

The key travels in an HttpOnly, SameSite=Strict cookie scoped to `/console`, checked against
the database on every page (so a revoked key is out at once); a correction form also carries
a token signed with it (http/corrections.py). Every value rendered is escaped
(customer ids may hold any character); the pages load nothing from elsewhere (a strict
Content-Security-Policy says so) and never read the members table, so they show no PII.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from loyalty_ledger import events as ev
from loyalty_ledger.admin import customer_card, statement
from loyalty_ledger.admin.api_keys import ApiKey, Scope, authenticate
from loyalty_ledger.errors import LoyaltyError
from loyalty_ledger.http import corrections, events
from loyalty_ledger.http.auth import CONSOLE_COOKIE, key_of, server_of
from loyalty_ledger.http.server import Server
from loyalty_ledger.ledger.entries import BALANCE_SIGN
from loyalty_ledger.program import Program
from loyalty_ledger.store.db import Connection

router = APIRouter(prefix="/console", include_in_schema=False)

PAGE_SIZE = 25  # statement entries per page: one laptop screen, give or take
SIGN_IN_BODY_MAX = 4096  # bytes: a form with one key in it
_HOME = "/console"

# Pages carry customer data: never cached, never framed, never leaking the URL (ids in it).
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_ASSET_TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
_ASSETS: dict[str, bytes] = {
    item.name: item.read_bytes()
    for item in resources.files("loyalty_ledger.http").joinpath("console_assets").iterdir()
    if any(item.name.endswith(suffix) for suffix in _ASSET_TYPES)
}

# What each ledger kind means to an agent reading a statement.
_KIND_LABELS = {
    "enrolled": "Enrolled", "signed_up": "Signed up", "credit": "Points earned",
    "debt_settled": "Debt settled", "redemption": "Redeemed", "reversal": "Points reversed",
    "expiry": "Points expired", "order_placed": "Order placed",
    "refund_applied": "Refund applied", "spend_lapsed": "Spend left the tier window",
    "tier_changed": "Tier changed", "reward_issued": "Reward issued", "referred": "Referred",
    "referral_settled": "Referral settled", "referral_qualified": "Referral qualified",
    "rejected": "Rejected", "pending_created": "Points pending",
    "pending_matured": "Pending points matured", "pending_cancelled": "Pending points cancelled",
    "campaign_applied": "Campaign applied", "adjustment_credit": "Goodwill correction",
    "adjustment_debit": "Correction (points taken)", "transfer_out": "Points given",
    "transfer_in": "Points received", "membership_started": "Membership started",
    "membership_renewed": "Membership renewed", "membership_ended": "Membership ended",
}  # fmt: skip
# What the agent should know about an adjustment's rejection, by its PROGRAM.md reason.
_REFUSALS = {
    "insufficient_points": "the customer has fewer points available than that to take away",
    "not_enrolled": "the customer is not enrolled",
    "points_limit": "a point total of the customer would pass the limit of 10^15",
}


def _esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _customer_href(customer_id: str, **query: Any) -> str:
    """The customer page's URL (unescaped: callers escape it into the attribute)."""
    params = {k: v for k, v in query.items() if v not in (None, "", 0)}
    tail = f"?{urlencode(params, doseq=True)}" if params else ""
    return f"{_HOME}/customers/{quote(customer_id, safe='')}{tail}"


# ------------------------------------------------------------------ who is signed in


def _cookie_key(request: Request) -> ApiKey | None:
    """The live key of the console cookie (never a Bearer header), or None."""
    if not request.cookies.get(CONSOLE_COOKIE):
        return None
    try:
        return key_of(request, None)
    except HTTPException:  # unknown or revoked: as good as signed out
        return None


def _agent(request: Request) -> ApiKey:
    """A dependency: the signed-in agent's key; anyone else is sent to the sign-in page."""
    key = _cookie_key(request)
    if key is None or not key.scope.allows(Scope.support):
        raise HTTPException(303, "sign in first", headers={"Location": _HOME})
    return key


Agent = Annotated[ApiKey, Depends(_agent)]


# ------------------------------------------------------------------ routes


@router.get("/assets/{name}")
def asset(name: str) -> Response:
    """The console's stylesheet and icon, from the package (no CDN, no build step)."""
    body = _ASSETS.get(name)
    if body is None:
        raise HTTPException(404, "no such asset")
    media_type = next(t for suffix, t in _ASSET_TYPES.items() if name.endswith(suffix))
    headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
    return Response(body, media_type=media_type, headers=headers)


@router.get("")
def home(request: Request) -> Response:
    """The look-up form when signed in; else the sign-in form (403 for a too-small key)."""
    server = server_of(request)
    key = _cookie_key(request)
    if key is None:
        return _sign_in_page(server)
    if not key.scope.allows(Scope.support):
        return _too_small(server, key)
    body = _lookup_form() + _hint("Customer ids are case-sensitive, as the till sends them.")
    return _page(server, "Look a customer up", body, key)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    """Check the key of the form; on success the cookie, and back to the console (303)."""
    server = server_of(request)
    fields = await _form_fields(request, SIGN_IN_BODY_MAX)
    if fields is None:
        return _sign_in_page(server, "That form is too large to be a key.", 413)
    secret = fields.get("key", "").strip()
    key = await run_in_threadpool(_authenticate, server, secret)
    if key is None:
        return _sign_in_page(server, "That key is unknown or revoked: check it and try again.",
                             401)  # fmt: skip
    request.state.key_name = key.name  # the access log names the key, never the key itself
    if not key.scope.allows(Scope.support):
        return _too_small(server, key)
    done = RedirectResponse(_HOME, 303)
    done.set_cookie(
        CONSOLE_COOKIE, secret, path=_HOME, httponly=True, samesite="strict",
        secure=request.url.scheme == "https",
    )  # fmt: skip
    return done


def _authenticate(server: Server, secret: str) -> ApiKey | None:
    with server.reading() as conn:
        return authenticate(conn, secret)


@router.post("/sign-out")
def sign_out() -> Response:
    """Forget the cookie (always allowed: it only ever signs someone out)."""
    done = RedirectResponse(_HOME, 303)
    done.delete_cookie(CONSOLE_COOKIE, path=_HOME, httponly=True, samesite="strict")
    return done


@router.get("/customers")
def lookup(request: Request, key: Agent, id: str = "") -> Response:
    """The look-up form's target: on to the customer's page."""
    if not id.strip():
        return RedirectResponse(_HOME, 303)
    return RedirectResponse(_customer_href(id.strip()), 303)


@router.get("/customers/{customer_id:path}")
def customer(
    customer_id: str,
    request: Request,
    key: Agent,
    after: Annotated[int, Query(ge=0)] = 0,
    cause: Annotated[list[str] | None, Query()] = None,
    correction: str = "",
) -> Response:
    """The customer's card, the correction form (and the outcome of the `correction` just
    sent), then the statement: paged by `after`, filtered by `cause`."""
    causes = [c for c in cause or () if c]
    form = corrections.new_form(_session(request), customer_id)
    return _customer_page(server_of(request), key, _Correction(form, notice=correction),
                          after, causes)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Correction:
    """The correction panel: its form, what the agent typed (kept when it is sent back), and
    the event id whose outcome to show or an error in the typed values."""

    form: corrections.Form
    points: str = ""
    reason: str = ""
    notice: str = ""  # an event id sent from this console
    error: str = ""


def _customer_page(
    server: Server, key: ApiKey, correction: _Correction, after: int = 0,
    causes: Sequence[str] = (), status: int = 200,
) -> Response:  # fmt: skip
    customer_id = correction.form.customer_id
    with server.reading() as conn:
        try:
            card = customer_card.card(conn, customer_id, server.program.program, datetime.now(UTC))
        except customer_card.UnknownCustomer:
            return _unknown(server, key, customer_id)
        counts = statement.causes(conn, customer_id)
        page = statement.page(conn, customer_id, after, PAGE_SIZE, causes=causes)
        sent = _sent(conn, customer_id, correction.notice) if correction.notice else None
    program = server.program.program
    zone = ZoneInfo(program.program.timezone)
    currency = program.program.currency
    body = "".join((
        _lookup_form(customer_id),
        _card_html(card, currency, zone, program),
        _correction_html(correction, sent),
        _statement_html(customer_id, page, counts, causes, after, zone),
    ))  # fmt: skip
    return _page(server, f"Customer {customer_id}", body, key, status)


@router.post("/corrections")
async def correct(request: Request, key: Agent) -> Response:
    """A goodwill correction: the form's adjustment event through the writer, then back to
    the customer's page (303) showing its outcome; a sent-again form applies once."""
    server = server_of(request)
    if request.headers.get("sec-fetch-site", "same-origin") not in corrections.SAME_SITE_FETCHES:
        return _refused(server, key, "That form came from another site: nothing was changed.")
    fields = await _form_fields(request, corrections.BODY_BYTES_MAX)
    if fields is None:
        return _refused(server, key, "That form is too large to be a correction.", 413)
    form = corrections.Form(fields.get("customer_id", ""), fields.get("form_id", ""),
                            fields.get("token", ""))  # fmt: skip
    if not corrections.genuine(_session(request), form):
        return _refused(server, key, "That form was not made for this session (signed out "
                        "since?): open the page again. Nothing was changed.")  # fmt: skip
    typed = _Correction(form, fields.get("points", ""), fields.get("reason", ""))
    made = corrections.adjustment(form, typed.points, typed.reason, datetime.now(UTC))
    if isinstance(made, str):
        return await run_in_threadpool(
            _customer_page, server, key, replace(typed, error=made), status=422
        )
    try:
        answers = await events.apply(server, [made], key)
    except LoyaltyError as e:  # nothing applied, or applied once: the same form may go again
        error = f"The ledger could not take it now ({e}): send it again, it applies once."
        return await run_in_threadpool(
            _customer_page, server, key, replace(typed, error=error), status=503
        )
    if answers is not None and answers.answers[0].outcome.status == "invalid":
        error = answers.answers[0].outcome.reason or "invalid"
        return await run_in_threadpool(
            _customer_page, server, key, replace(typed, error=error), status=422
        )
    done = _customer_href(form.customer_id, correction=form.event_id)
    return RedirectResponse(f"{done}#correction", 303)


def _session(request: Request) -> str:
    """The signed-in agent's session secret (the cookie the Agent dependency checked)."""
    return request.cookies.get(CONSOLE_COOKIE, "")


async def _form_fields(request: Request, limit: int) -> dict[str, str] | None:
    """An urlencoded form's fields (the first of each name); None when over `limit` bytes."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def _refused(server: Server, key: ApiKey, message: str, status: int = 403) -> Response:
    body = (
        '<section class="panel narrow notice"><h1>Not applied</h1>'
        f'<p class="error" role="alert">{_esc(message)}</p>'
        f'<p><a class="button quiet" href="{_HOME}">Back to the console</a></p></section>'
    )
    return _page(server, "Not applied", body, key, status)


def _unknown(server: Server, key: ApiKey, customer_id: str) -> Response:
    body = _lookup_form(customer_id) + (
        '<section class="panel notice"><h2>No such customer</h2>'
        f"<p>No enrolled customer has the id <code>{_esc(customer_id)}</code>. Ids are "
        "case-sensitive and exactly as the till or the shop sent them; a customer who has "
        "not signed up yet has no card.</p></section>"
    )
    return _page(server, "No such customer", body, key, 404)


# ------------------------------------------------------------------ pages


def _page(server: Server, title: str, body: str, key: ApiKey | None, status: int = 200) -> Response:
    """The layout around `body` (already escaped HTML)."""
    program = server.program.program.program
    who = (
        f'<form method="post" action="{_HOME}/sign-out" class="who">'
        f'<span>Signed in as <b>{_esc(key.name)}</b> <span class="scope">{_esc(key.scope)}'
        '</span></span><button type="submit" class="quiet">Sign out</button></form>'
        if key is not None else ""
    )  # fmt: skip
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)} · {_esc(program.name)} support</title>
<link rel="stylesheet" href="{_HOME}/assets/console.css">
<link rel="icon" href="{_HOME}/assets/icon.svg" type="image/svg+xml">
</head><body>
<header class="bar"><a class="brand" href="{_HOME}"><img src="{_HOME}/assets/icon.svg" alt="">
<span>{_esc(program.name)}</span> <small>support console</small></a>{who}</header>
<main>{body}</main>
<footer>Program <code>{_esc(server.program.hash[:12])}</code> · {_esc(program.currency)} ·
times in {_esc(program.timezone)} · no personal data is shown here</footer>
</body></html>"""
    return HTMLResponse(document, status, headers=_HEADERS)


def _sign_in_page(server: Server, message: str | None = None, status: int = 200) -> Response:
    error = f'<p class="error" role="alert">{_esc(message)}</p>' if message else ""
    body = f"""<section class="panel narrow"><h1>Sign in</h1>
<p>Paste an API key with the <b>support</b> or <b>admin</b> scope
(<code>loyalty api-keys create NAME --scope support</code>).</p>{error}
<form method="post" action="{_HOME}/sign-in" class="stack">
<label for="key">API key</label>
<input id="key" name="key" type="password" autocomplete="off" required autofocus
 placeholder="ll_…" spellcheck="false">
<button type="submit">Sign in</button></form></section>"""
    return _page(server, "Sign in", body, None, status)


def _too_small(server: Server, key: ApiKey) -> Response:
    body = f"""<section class="panel narrow notice"><h1>Not for this key</h1>
<p>The key <b>{_esc(key.name)}</b> has the scope <b>{_esc(key.scope)}</b>; the console needs
<b>support</b> or <b>admin</b>. Ask an administrator for a support key.</p>
<form method="post" action="{_HOME}/sign-out"><button type="submit">Use another key</button>
</form></section>"""
    return _page(server, "Not allowed", body, None, 403)


def _lookup_form(customer_id: str = "") -> str:
    return f"""<form method="get" action="{_HOME}/customers" class="lookup" role="search">
<label for="id">Customer id</label>
<input id="id" name="id" value="{_esc(customer_id)}" required spellcheck="false"
 autocomplete="off" placeholder="e.g. anna">
<button type="submit">Look up</button></form>"""


def _hint(text: str) -> str:
    return f'<p class="hint">{_esc(text)}</p>'


# ------------------------------------------------------------------ the card


def _card_html(card: dict[str, Any], currency: str, zone: ZoneInfo, program: Program) -> str:
    """Balance, tier and progress, expiring points, affordable rewards; pending points and the
    membership where the program has them; orders, revenue and every points total."""

    def money(value: object) -> str:
        return _money(value, currency)

    expiring = card["expiring"]
    lots = "".join(
        f"<li><b>{_int(lot['points'])}</b> on {_esc(_when(lot['expires_at'], zone))}</li>"
        for lot in expiring["lots"]
    )
    rewards = "".join(
        f'<li><span class="reward">{_esc(r["id"])}</span> <span class="muted">'
        f"{_int(r['cost'])} points</span></li>"
        for r in card["rewards_affordable"]
    )
    figures = _figures([
        ("Orders", _int(card["orders"])), ("Net revenue", money(card["net_revenue"])),
        ("Gross revenue", money(card["gross_revenue"])), ("Refunded", money(card["refunded"])),
        ("Average order", money(card["aov"])),
        ("First purchase", _esc(_when(card["first_purchase_at"], zone))),
        ("Last purchase", _esc(_when(card["last_purchase_at"], zone))),
        ("Referrals qualified", _int(card["referrals_qualified"])),
        ("Earned", _int(card["earned"])), ("Redeemed", _int(card["redeemed"])),
        ("Reversed", _int(card["reversed"])), ("Expired", _int(card["expired"])),
        ("Adjusted", _signed(card["adjusted"])),
        ("Transferred in", _int(card["transferred_in"])),
        ("Transferred out", _int(card["transferred_out"])),
        ("Membership fees", money(card["membership_fees"])),
    ])  # fmt: skip
    issued = "".join(f'<span class="tag">{_esc(r)}</span>' for r in card["rewards"] or ())
    return f"""<section class="card">
<div class="tile balance"><h2>Balance</h2><p class="big" data-testid="balance">
{_int(card["balance"])}</p><p class="muted">points available now</p></div>
<div class="tile">{_tier_html(card, currency)}</div>
<div class="tile"><h2>Expiring in {_int(expiring["days"])} days</h2>
<p class="big {"warn" if expiring["points"] else ""}">{_int(expiring["points"])}</p>
{f'<ul class="plain">{lots}</ul>' if lots else '<p class="muted">nothing expires soon</p>'}
</div>
<div class="tile"><h2>Can redeem now</h2>
{f'<ul class="plain">{rewards}</ul>' if rewards else '<p class="muted">no reward yet</p>'}
</div>{_pending_html(card, zone, program)}{_membership_html(card, currency, zone, program)}
</section>
<section class="panel"><h2>Orders and points</h2>{figures}
<p class="issued"><span class="muted">Rewards issued</span> {issued or "none yet"}</p></section>"""


def _pending_html(card: dict[str, Any], zone: ZoneInfo, program: Program) -> str:
    """Points waiting out the return window, and the next to mature (with `[pending]`)."""
    if program.pending is None and not card["pending"]:
        return ""
    nxt = card["next_maturity"]
    then = (
        f'<p data-testid="next-maturity">next: <b>{_int(nxt["points"])}</b> on '
        f"{_esc(_when(nxt['matures_at'], zone))}</p>"
        if nxt is not None else '<p class="muted">nothing is waiting</p>'
    )  # fmt: skip
    return f"""
<div class="tile"><h2>Pending</h2><p class="big" data-testid="pending">{_int(card["pending"])}
</p><p class="muted">points waiting out the return window</p>{then}</div>"""


def _membership_html(card: dict[str, Any], currency: str, zone: ZoneInfo, program: Program) -> str:
    """The active plan and its end, and what each plan costs this customer now (a till's
    question), with `[[memberships]]`."""
    if not program.memberships and card["membership"] is None:
        return ""
    held = (
        f'<p class="big tier" data-testid="membership">{_esc(card["membership"])}</p>'
        f'<p class="muted">until {_esc(_when(card["membership_ends_at"], zone))}</p>'
        if card["membership"] is not None
        else '<p class="big tier" data-testid="membership">none</p>'
    )  # fmt: skip
    prices = "".join(
        f'<li data-plan="{_esc(plan["id"])}"><span class="reward">{_esc(plan["id"])}</span> '
        f"{_money(plan['price'], currency)}"
        + (f' <span class="muted">instead of {_money(plan["fee"], currency)}</span>'
           if plan["price"] != plan["fee"] else "")
        + "</li>"
        for plan in card["membership_prices"]
    )  # fmt: skip
    return f"""
<div class="tile wide"><h2>Membership</h2>{held}
{f'<h2 class="sub">Price now</h2><ul class="plain">{prices}</ul>' if prices else ""}</div>"""


def _tier_html(card: dict[str, Any], currency: str) -> str:
    tier = card["tier"]
    spend = card["qualifying_spend"]
    above = card["next_tier"]
    head = f'<h2>Tier</h2><p class="big tier">{_esc(tier or "none")}</p>'
    if above is None:
        top = "top tier" if tier else "this program has no tiers"
        return head + f'<p class="muted">{top} · spend {_money(spend, currency)}</p>'
    target = float(above["min_spend"]) or 1.0
    progress = min(float(spend or 0), target)
    return head + (
        f'<progress max="{target:.2f}" value="{progress:.2f}"></progress>'
        f"<p>{_money(above['missing_spend'], currency)} more qualifying spend to "
        f"<b>{_esc(above['name'])}</b></p>"
        f'<p class="muted">{_money(spend, currency)} of {_money(above["min_spend"], currency)}'
        "</p>"
    )


def _figures(pairs: Sequence[tuple[str, str]]) -> str:
    """Label and value pairs (values already escaped) as a definition grid."""
    cells = "".join(f"<div><dt>{_esc(label)}</dt><dd>{value}</dd></div>" for label, value in pairs)
    return f'<dl class="figures">{cells}</dl>'


# ------------------------------------------------------------------ the statement


def _statement_html(
    customer_id: str, page: statement.Page, counts: dict[str, int], causes: Sequence[str],
    after: int, zone: ZoneInfo,
) -> str:  # fmt: skip
    """The filter chips, the entries with the balance after each, and the pager."""
    chips = [_chip("All causes", _customer_href(customer_id), not causes)]
    chips += [
        _chip(f"{name} · {n}", _customer_href(customer_id, cause=name), list(causes) == [name])
        for name, n in counts.items()
    ]
    rows = "".join(_entry_row(entry, zone) for entry in page.entries) or (
        '<tr><td colspan="4" class="muted">No entries here.</td></tr>'
    )
    pager = []
    if after:
        first = _customer_href(customer_id, cause=list(causes))
        pager.append(f'<a class="button quiet" href="{_esc(first)}">← First page</a>')
    if page.next is not None:
        later = _customer_href(customer_id, cause=list(causes), after=page.next)
        pager.append(f'<a class="button" rel="next" href="{_esc(later)}">Next page →</a>')
    return f"""<section class="panel"><div class="heading"><h2>Statement</h2>
<p class="muted">oldest first · {PAGE_SIZE} a page · the balance after each entry counts every
entry, whatever the filter</p></div>
<nav class="chips" aria-label="Filter by cause">{"".join(chips)}</nav>
<table class="statement"><thead><tr><th>When</th><th>What</th>
<th class="num">Points</th><th class="num">Balance after</th></tr></thead>
<tbody>{rows}</tbody></table>
<nav class="pager">{"".join(pager)}</nav></section>"""


def _chip(label: str, href: str, current: bool) -> str:
    here = ' aria-current="page" class="chip on"' if current else ' class="chip"'
    return f'<a{here} href="{_esc(href)}">{_esc(label)}</a>'


def _entry_row(entry: statement.Entry, zone: ZoneInfo) -> str:
    row = entry.row
    kind = row.kind
    details = [
        ("cause", row.cause), (_REF_LABELS.get(kind, "ref"), row.ref), ("reward", row.reward),
        ("reason", row.reason), (_AMOUNT_LABELS.get(kind, "amount"), row.amount),
        ("tier", f"{row.tier_from or '—'} → {row.tier_to}" if row.tier_to else None),
        ("pending", f"{row.points:,}" if kind in _PENDING_KINDS else None),
        (_INSTANT_LABELS.get(kind, ""),
         _when(row.expires_at, zone) if kind in _INSTANT_LABELS else None),
    ]  # fmt: skip
    tags = "".join(
        f'<span class="tag{" cause" if name == "cause" else ""}">{_esc(name)}: {_esc(value)}'
        "</span>"
        for name, value in details if value is not None
    )  # fmt: skip
    moving = kind in BALANCE_SIGN
    sign = "up" if entry.points > 0 else "down" if entry.points < 0 else ""
    points = f"{entry.points:+,}" if moving else "—"
    label = _KIND_LABELS.get(kind, kind)
    source = f" · {row.event_type}" if row.event_type else ""
    return (
        f'<tr class="kind-{_esc(kind)}" data-seq="{row.seq}" data-cause="{_esc(row.cause)}">'
        f'<td class="when">{_esc(_when(row.occurred_at, zone))}</td>'
        f"<td><b>{_esc(label)}</b> {tags}"
        f'<div class="event muted">event {_esc(row.event_id)}{_esc(source)}</div></td>'
        f'<td class="num points {sign}">{_esc(points)}</td>'
        f'<td class="num{"" if moving else " muted"}">{entry.balance:,}</td></tr>'
    )


# What an entry's `ref`, `amount` and `expires_at` are, by kind (ledger/entries.py).
_REF_LABELS = {
    **dict.fromkeys(("order_placed", "refund_applied", "reversal", "pending_created",
                     "pending_matured", "pending_cancelled"), "order"),
    "transfer_out": "to", "transfer_in": "from", "campaign_applied": "campaign",
    **dict.fromkeys(("membership_started", "membership_renewed", "membership_ended"), "plan"),
}  # fmt: skip
_AMOUNT_LABELS = {
    "campaign_applied": "extra points", "membership_started": "paid",
    "membership_renewed": "paid",
}  # fmt: skip
_INSTANT_LABELS = {
    "expiry": "lot expired", "pending_created": "matures", "transfer_in": "expires",
    "membership_started": "until", "membership_renewed": "until", "membership_ended": "ended",
}  # fmt: skip
_PENDING_KINDS = frozenset({"pending_created", "pending_matured", "pending_cancelled"})


# ------------------------------------------------------------------ corrections


@dataclass(frozen=True, slots=True)
class _Sent:
    """A correction sent from the console, as the inbox has it (None: not applied yet)."""

    outcome: str | None
    reason: str | None = None  # a rejection's
    points: int = 0
    why: str = ""  # the agent's reason


def _sent(conn: Connection, customer_id: str, event_id: str) -> _Sent:
    row = conn.execute(
        "SELECT outcome, reason, raw FROM inbox WHERE event_id = %s AND customer_id = %s "
        "AND event_type = 'adjustment'", (event_id, customer_id),
    ).fetchone()  # fmt: skip
    if row is None:
        return _Sent(None)
    body = json.loads(row[2])  # valid: the pipeline admitted it
    return _Sent(row[0], row[1], int(body["points"]), str(body["reason"]))


def _correction_html(correction: _Correction, sent: _Sent | None) -> str:
    """The outcome of the correction just sent, if any, and a form with a new id."""
    form = correction.form
    notice = "" if sent is None else _sent_html(sent)
    if correction.error:
        notice = f'<p class="error" role="alert">{_esc(correction.error)}</p>'
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{_esc(value)}">'
        for name, value in (("customer_id", form.customer_id), ("form_id", form.form_id),
                            ("token", form.token))
    )  # fmt: skip
    return f"""<section class="panel" id="correction"><div class="heading">
<h2>Goodwill correction</h2><p class="muted">a new ledger entry with your reason: positive
points are added, negative ones taken away</p></div>{notice}
<form method="post" action="{_HOME}/corrections" class="row">{hidden}
<label for="points">Points <input id="points" name="points" type="number" step="1"
 min="-{ev.POINTS_MAX}" max="{ev.POINTS_MAX}" required placeholder="e.g. 200"
 value="{_esc(correction.points)}"></label>
<label for="reason" class="grow">Reason <input id="reason" name="reason" required
 minlength="1" maxlength="{ev.REASON_LENGTH_MAX}" placeholder="e.g. late delivery, order A-1042"
 value="{_esc(correction.reason)}" spellcheck="true"></label>
<button type="submit">Add correction</button></form></section>"""


def _sent_html(sent: _Sent) -> str:
    if sent.outcome is None:
        return ('<p class="note" role="status">Sent; not applied yet. Reload this page in a '
                "moment to see it in the statement.</p>")  # fmt: skip
    what = f"{sent.points:+,} points ({_esc(sent.why)})"
    if sent.outcome == "accepted":
        return f'<p class="done" role="status">Correction applied: {what}.</p>'
    why = _REFUSALS.get(sent.reason or "", sent.reason)
    return (f'<p class="error" role="alert">Correction of {what} refused: '
            f"<b>{_esc(sent.reason)}</b>, {_esc(why)}.</p>")  # fmt: skip


# ------------------------------------------------------------------ values


def _signed(value: object) -> str:
    """A signed points total (an adjustment's sum): + before what was added."""
    return _esc(f"{int(value):+,}") if isinstance(value, int) and value else _int(value)


def _int(value: object) -> str:
    return _esc(f"{int(value):,}") if isinstance(value, int | str) and str(value) else "—"


def _money(value: object, currency: str) -> str:
    if value is None:
        return "—"
    return _esc(f"{value} {currency}")


def _when(value: datetime | str | None, zone: ZoneInfo) -> str:
    """An instant in the program's time zone, to the minute (unescaped)."""
    if value is None:
        return "—"
    instant = datetime.fromisoformat(value) if isinstance(value, str) else value
    return instant.astimezone(zone).strftime("%Y-%m-%d %H:%M")
