"""The server's Prometheus metrics (`GET /metrics`), in a registry of its own per app, and the
ASGI middleware that counts and times every request and writes its access log line.

Routes are labelled by their template (`/v1/customers/{customer_id}`), never by the
path: a path holds customer ids, which are not for logs or label sets.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loyalty_ledger import log
from loyalty_ledger.pipeline import Outcome

_LATENCY_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_EVENTS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


class Metrics:
    """Every metric the server exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "loyalty_http_requests", "HTTP requests answered, by route and status",
            ["method", "route", "status"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "loyalty_http_request_seconds", "HTTP request latency, by route",
            ["method", "route"], buckets=_LATENCY_S, registry=self.registry,
        )  # fmt: skip
        self.events = Counter(
            "loyalty_events", "Events posted, by outcome", ["outcome"], registry=self.registry
        )
        self.batch_events = Histogram(
            "loyalty_batch_events", "Events per committed group (embedded mode)",
            buckets=_BATCH_EVENTS, registry=self.registry,
        )  # fmt: skip
        self.commit_seconds = Histogram(
            "loyalty_commit_seconds",
            "From a group's start to its commit and projection (embedded mode)",
            buckets=_LATENCY_S, registry=self.registry,
        )  # fmt: skip

    def committed(self, events: int, seconds: float, outcomes: Sequence[Outcome]) -> None:
        """A group committed: its size, how long it took, its outcomes (the writer thread)."""
        self.batch_events.observe(events)
        self.commit_seconds.observe(seconds)
        counted: dict[str, int] = {}
        for outcome in outcomes:
            counted[outcome.status] = counted.get(outcome.status, 0) + 1
        for status, n in counted.items():
            self.events.labels(status).inc(n)


class Observed:
    """ASGI middleware: metrics and one structlog line per request (no PII: no path, no
    query, no body; the API key's name, which is not a person's)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.logger = log.get("http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._record(scope, status[0], time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, elapsed_s: float) -> None:
        route = _route(scope)
        method = scope["method"]
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.latency.labels(method, route).observe(elapsed_s)
        state: dict[str, Any] = scope.get("state", {})
        self.logger.info(
            "request", method=method, route=route, status=status,
            duration_ms=round(elapsed_s * 1000, 2), key=state.get("key_name"),
        )  # fmt: skip


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"
