"""`POST /v1/events` (one event or a list, answered after commit) and `GET /v1/events/{id}`.

Every item of a body is one input, as a line of a file is: an item that is not
a valid event is dead-lettered with its reason and the others still apply, in
order. A body that is not JSON at all is dead-lettered whole (422). The event's
own `event_id` is the idempotency key: a retry gets the first outcome back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from loyalty_ledger.admin import customer_card
from loyalty_ledger.admin.api_keys import ApiKey, Scope
from loyalty_ledger.http import body
from loyalty_ledger.http.auth import Poster, server_of
from loyalty_ledger.http.server import Server
from loyalty_ledger.runtime.group_commit import Answer, Answers

router = APIRouter(prefix="/v1", tags=["events"])

# The scope each event type needs beyond `pos` (what a till or a web shop sends): a
# goodwill correction is a support agent's, a tick an operator's.
_SCOPE_OF_TYPE = {"adjustment": Scope.support, "tick": Scope.admin}


class FirstOutcome(BaseModel):
    outcome: Literal["accepted", "rejected"]
    reason: str | None


class EventResult(BaseModel):
    """One posted item's fate; `balance` and `tier` are the customer's just after it."""

    index: int
    event_id: str | None
    customer_id: str | None
    outcome: Literal["accepted", "rejected", "duplicate", "invalid"]
    reason: str | None = None  # the PROGRAM.md rejection reason, or why the item is invalid
    balance: int | None = None
    tier: str | None = None
    first: FirstOutcome | None = None  # a duplicate's: the outcome its event id had first


class PostAnswer(BaseModel):
    """The answer to a POST: each item's result, and the read model of every customer named,
    as committed (every field of `loyalty export customers`); a transfer's recipient as read
    just after."""

    results: list[EventResult]
    customers: dict[str, dict[str, Any]]


class Pending(BaseModel):
    """202: published, not yet applied within the wait; each event's URL answers later."""

    status: Literal["pending"] = "pending"
    events: list[str]


_AT = "2026-03-07T11:00:00+01:00"
# One example per kind of body in /docs, among them version 2's events.
_EXAMPLES: dict[str, dict[str, Any]] = {
    "purchase": {"summary": "a purchase", "value": {
        "event_id": "till-berlin-000123", "type": "purchase", "occurred_at": _AT,
        "customer_id": "anna", "order_id": "A-1042", "currency": "EUR", "total": "59.90",
        "channel": "pos"}},
    "adjustment": {"summary": "a goodwill correction (scope support)", "value": {
        "event_id": "console-2b7Yx", "type": "adjustment", "occurred_at": _AT,
        "customer_id": "anna", "points": 200, "reason": "late delivery, order A-1042"}},
    "transfer": {"summary": "points given to another member", "value": {
        "event_id": "web-88121", "type": "transfer", "occurred_at": _AT,
        "customer_id": "anna", "to_customer_id": "ben", "points": 300}},
    "membership": {"summary": "a paid plan bought or renewed", "value": {
        "event_id": "web-88122", "type": "membership", "occurred_at": _AT,
        "customer_id": "anna", "plan": "vip", "paid": "88.00"}},
}  # fmt: skip

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"oneOf": [
            {"$ref": "#/components/schemas/Event"},
            {"type": "array", "items": {"$ref": "#/components/schemas/Event"}, "maxItems": 1000},
        ]}, "examples": _EXAMPLES}},
    }
}  # fmt: skip


@router.post(
    "/events",
    response_model=PostAnswer,
    openapi_extra=_BODY_DOC,
    responses={202: {"model": Pending}, 413: {}, 422: {"model": PostAnswer}},
)
async def post_events(request: Request, key: Poster) -> JSONResponse:
    """Apply events in order; answered once they are committed (or 202 in Kafka mode after
    the wait). All items invalid (or the body not JSON): 422."""
    server = server_of(request)
    raw = await _read_body(request, server.body_bytes_max)
    try:
        items = body.split(raw)
    except body.MalformedBody as e:
        await apply(server, [raw], key)  # dead-lettered, as a bad line of a file is
        raise HTTPException(422, f"malformed JSON: {e}") from None
    if len(items) > server.events_max:
        raise HTTPException(413, f"{len(items)} events in one body; send at most "
                                 f"{server.events_max} per request")  # fmt: skip
    _check_scopes(items, key)
    answers = await apply(server, [item.raw for item in items], key)
    if answers is None:
        ids = [i for i in (_event_id(item.value) for item in items) if i is not None]
        return JSONResponse(Pending(events=[f"/v1/events/{i}" for i in ids]).model_dump(), 202)
    results = [_result(i, item.value, a, answers.customers)
               for i, (item, a) in enumerate(zip(items, answers.answers, strict=True))]  # fmt: skip
    status = 422 if results and all(r.outcome == "invalid" for r in results) else 200
    customers = await _with_recipients(server, items, results, answers.customers)
    answer = PostAnswer(results=results, customers=customers)
    return JSONResponse(answer.model_dump(), status)


async def apply(server: Server, raws: Sequence[bytes], key: ApiKey) -> Answers | None:
    """The answers after commit; None when the writer's wait ran out (Kafka mode). The
    events go the one way every input goes: the writer's pipeline, as `key`'s source."""
    future = asyncio.wrap_future(server.writes.submit(raws, key.name))
    # asyncio.wait, not wait_for: a wait that runs out must not cancel the write.
    done, _ = await asyncio.wait({future}, timeout=server.writes.answer_wait_s)
    return future.result() if done else None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the body is over {limit} bytes; split it")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"the body is over {limit} bytes; split it")
            chunks.append(chunk)
    except ClientDisconnect:  # nothing was applied, and nobody is left to answer
        raise HTTPException(499, "the client closed the request") from None
    return b"".join(chunks)


async def _with_recipients(
    server: Server, items: Sequence[body.Item], results: Sequence[EventResult],
    customers: dict[str, dict[str, Any]],
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """`customers` and the read model of each accepted transfer's recipient, which the writer
    does not answer with (it names the input's own customer only)."""
    recipients = sorted({
        found for item, result in zip(items, results, strict=True)
        if result.outcome == "accepted" and _field(item.value, "type") == "transfer"
        and (found := _field(item.value, "to_customer_id")) is not None
        and found not in customers
    })  # fmt: skip
    if not recipients:
        return customers
    async with server.areading() as conn:
        cursor = await conn.execute(customer_card.READ_MODELS, (recipients,))
        read = customer_card.read_models_of(await cursor.fetchall())
    return dict(sorted({**customers, **read}.items()))


def _check_scopes(items: Sequence[body.Item], key: ApiKey) -> None:
    """403 before anything applies when an item needs more than the key's scope."""
    for item in items:
        kind = _field(item.value, "type")
        needed = _SCOPE_OF_TYPE.get(kind) if kind is not None else None
        if kind is not None and needed is not None and not key.scope.allows(needed):
            article = "an" if kind.startswith(tuple("aeiou")) else "a"
            raise HTTPException(
                403, f"{article} {kind} event needs scope {needed.value}; key {key.name!r} has "
                f"{key.scope.value}"
            )  # fmt: skip


def _event_id(value: Any) -> str | None:
    return _field(value, "event_id")


def _field(value: Any, name: str) -> str | None:
    """A string field of an item, even an invalid one (to tell the client which it was)."""
    found = value.get(name) if isinstance(value, dict) else None
    return found if isinstance(found, str) else None


def _result(
    index: int, value: Any, answer: Answer, customers: dict[str, dict[str, Any]]
) -> EventResult:
    o = answer.outcome
    result = EventResult(
        index=index, event_id=o.event_id or _event_id(value),
        customer_id=o.customer_id or _field(value, "customer_id"),
        outcome=o.status, reason=o.reason, balance=o.balance, tier=o.tier,
    )  # fmt: skip
    if o.status == "duplicate" and answer.first_status is not None:
        result.first = FirstOutcome(outcome=answer.first_status, reason=answer.first_reason)
        now = customers.get(o.customer_id or "")
        if now is not None:  # a duplicate changed nothing: the customer as they are
            result.balance, result.tier = now["balance"], now["tier"]
    return result


class EventOutcome(BaseModel):
    event_id: str
    outcome: Literal["accepted", "rejected"]
    reason: str | None
    type: str
    customer_id: str | None
    source: str  # where it arrived: http:<key name>, kafka:<topic>:<partition>, file:<path>


@router.get("/events/{event_id}", response_model=EventOutcome,
            responses={404: {"description": "not applied (yet)"}})  # fmt: skip
async def get_event(event_id: str, request: Request, key: Poster) -> EventOutcome:
    """The outcome of an event already applied, from any input path; 404 until it is."""
    async with server_of(request).areading() as conn:
        cursor = await conn.execute(
            "SELECT outcome, reason, event_type, customer_id, source FROM inbox "
            "WHERE event_id = %s", (event_id,)
        )  # fmt: skip
        row = await cursor.fetchone()
    if row is None:
        raise HTTPException(404, f"event {event_id!r} is not applied (yet)")
    return EventOutcome(event_id=event_id, outcome=row[0], reason=row[1], type=row[2],
                        customer_id=row[3], source=row[4])  # fmt: skip
