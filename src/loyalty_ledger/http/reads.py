"""Reads: a customer's card and statement, the rewards catalogue and the program in force.

Read-your-writes: a write is answered only after its batch committed and the
projections caught up with it, so a read sent after the answer shows the write.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from loyalty_ledger.admin import customer_card, statement
from loyalty_ledger.http.auth import Reader, server_of

router = APIRouter(prefix="/v1", tags=["reads"])


@router.get("/customers/{customer_id}")
async def get_customer(
    customer_id: str,
    request: Request,
    key: Reader,
    as_of: Annotated[datetime | None, Query(description="instant for `expiring` (now)")] = None,
) -> JSONResponse:
    """The read model of the customer (every field of `loyalty export customers`), the next
    tier and the spend missing to it, the points expiring in the next 30 days and the
    rewards affordable now."""
    if as_of is not None and as_of.tzinfo is None:
        raise HTTPException(422, "as_of needs an offset, like 2025-01-01T00:00:00Z")
    server = server_of(request)
    at = as_of or datetime.now(UTC)
    async with server.areading() as conn:
        cursor = await conn.execute(
            customer_card.CARD, customer_card.card_parameters(customer_id, at)
        )
        row = await cursor.fetchone()
    try:
        card = customer_card.card_of(row, customer_id, server.program.program, at)
    except customer_card.UnknownCustomer as e:
        raise HTTPException(404, str(e)) from None
    return JSONResponse(card)  # JSON values already: FastAPI's encoder would walk it again


@router.get("/customers/{customer_id}/statement")
async def get_statement(
    customer_id: str,
    request: Request,
    key: Reader,
    after: Annotated[int, Query(ge=0, description="the cursor: `next` of the page before")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    kind: Annotated[list[str] | None, Query(description="only these entry kinds")] = None,
    cause: Annotated[list[str] | None, Query(description="only these causes")] = None,
) -> JSONResponse:
    """The customer's ledger entries with their causes, oldest first, paged by cursor; the
    balance after each entry is the ledger's, whatever the filter."""
    params = statement.page_parameters(customer_id, after, limit, kinds=kind or (),
                                       causes=cause or ())  # fmt: skip
    async with server_of(request).areading() as conn:
        cursor = await conn.execute(
            "SELECT 1 FROM customer_state WHERE customer_id = %s", (customer_id,)
        )
        if await cursor.fetchone() is None:
            raise HTTPException(404, f"no customer {customer_id!r}: check the id "
                                     "(ids are case-sensitive)")  # fmt: skip
        rows = await (await conn.execute(statement.PAGE, params)).fetchall()
    page = statement.page_of(rows, limit)
    return JSONResponse({
        "customer_id": customer_id,
        "entries": [statement.entry_json(e) for e in page.entries],
        "next": page.next,
    })  # fmt: skip


@router.get("/rewards")
async def get_rewards(request: Request, key: Reader) -> dict[str, Any]:
    """The rewards catalogue of the program in force."""
    return customer_card.catalogue(server_of(request).program.program)


# Version 2's sections, as the program in force has them (null or [] when unused).
_VERSION_2_SECTIONS = ("pending", "campaigns", "memberships", "transfers")


@router.get("/program")
async def get_program(request: Request, key: Reader) -> dict[str, Any]:
    """The program in force: its name, hash, currency, time zone and TOML text, and its
    version 2 sections read (pending points, campaigns, membership plans, transfers)."""
    held = server_of(request).program
    section = held.program.program
    return {
        "name": section.name, "hash": held.hash, "currency": section.currency,
        "timezone": section.timezone, "toml": held.source,
        **held.program.model_dump(mode="json", include=set(_VERSION_2_SECTIONS)),
    }  # fmt: skip
