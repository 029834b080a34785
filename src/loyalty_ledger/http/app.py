"""The FastAPI app of `loyalty serve`: its routes, its errors as HTTP answers, its OpenAPI
document (the event models' schemas, as in `schemas/`), and what it closes on shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool

from loyalty_ledger import events as ev
from loyalty_ledger.errors import Conflict, LoyaltyError, Unavailable
from loyalty_ledger.http import console, events, reads
from loyalty_ledger.http.metrics import Observed
from loyalty_ledger.http.server import Server

API_VERSION = "1"


def create_app(server: Server) -> FastAPI:
    """The app over `server`; the server's writer and pool close when the app shuts down."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await server.open()
        yield
        await server.close()

    app = FastAPI(
        title="loyalty-ledger", version=API_VERSION, lifespan=lifespan,
        description="The till's and the web shop's way in: post events, answered after "
        "commit; read customers, statements, rewards and the program.",
    )  # fmt: skip
    app.state.server = server
    app.include_router(events.router)
    app.include_router(reads.router)
    app.include_router(console.router)
    _operations(app, server)
    app.add_exception_handler(LoyaltyError, _loyalty_error)
    app.add_middleware(Observed, metrics=server.metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _operations(app: FastAPI, server: Server) -> None:
    @app.get("/healthz", tags=["operations"], response_class=PlainTextResponse)
    async def healthz() -> str:
        """Liveness: the process answers."""
        return "ok\n"

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        """Readiness: the database answers, and the writer (in Kafka mode: the broker)."""
        problems: dict[str, str] = {}
        try:
            async with server.areading() as conn:
                await conn.execute("SELECT 1")
        except Exception as e:  # any failure is "not ready", with its kind
            problems["database"] = type(e).__name__
        why = await run_in_threadpool(server.writes.not_ready)  # Kafka mode asks the broker
        if why is not None:
            problems[server.writes.mode] = why
        body = {"ready": not problems, "mode": server.writes.mode, "problems": problems}
        return JSONResponse(body, 200 if not problems else 503)

    @app.get("/metrics", tags=["operations"])
    async def metrics() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _loyalty_error(request: Request, error: Exception) -> JSONResponse:
    """Errors meant for users: 503 for a server that cannot be reached, 409 for a conflict,
    400 for the rest; the message is the one line the command line would print."""
    status = 503 if isinstance(error, Unavailable) else 409 if isinstance(error, Conflict) else 400
    return JSONResponse({"detail": str(error)}, status)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the event models' schemas among its components."""
    if app.openapi_schema is None:
        document = get_openapi(title=app.title, version=app.version,
                               description=app.description, routes=app.routes)  # fmt: skip
        schema = TypeAdapter(ev.Event).json_schema(ref_template="#/components/schemas/{model}")
        components = document.setdefault("components", {}).setdefault("schemas", {})
        components.update(schema.pop("$defs", {}))
        components["Event"] = schema
        app.openapi_schema = document
    return app.openapi_schema
