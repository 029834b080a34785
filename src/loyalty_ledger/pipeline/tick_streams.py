"""Tick-stream clocks: each stream's ticks so far, a customer's catch-up, who a tick is due for.

A customer's state counts the ticks of its stream it has seen (`ticks_seen`).
Ticks it was not due for change nothing but its clock, so they are folded in
lazily, when an input next touches it (`catch_up`); a tick decides only the
customers due by its instant (`due_now`), found by their next due instant in
the batch, the cache (its next-due index) and the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from loyalty_ledger.engine import CustomerState
from loyalty_ledger.pipeline.state_cache import StateCache
from loyalty_ledger.pipeline.types import Routing
from loyalty_ledger.store import reads
from loyalty_ledger.store.db import Connection


class TickStreams:
    """The ticks of each stream this pipeline has decided on, read once from the database."""

    __slots__ = ("_ticks", "conn", "routing")

    def __init__(self, conn: Connection | None, routing: Routing) -> None:
        """`conn` None: a preview's store, empty: no tick before its first."""
        self.conn = conn
        self.routing = routing
        self._ticks: dict[str, list[datetime]] = {}

    def ticks(self, stream: str) -> list[datetime]:
        """The instants of `stream`'s ticks, in order; a decided tick is appended here."""
        ticks = self._ticks.get(stream)
        if ticks is None:
            stored = [] if self.conn is None else reads.ticks(self.conn, stream)
            ticks = self._ticks[stream] = stored
        return ticks

    def forget(self, streams: Iterable[str] | None = None) -> None:
        """Drop (these) streams' ticks: another owner may add to them from now on."""
        if streams is None:
            self._ticks.clear()
            return
        for stream in streams:
            self._ticks.pop(stream, None)

    def catch_up(self, state: CustomerState | None, customer_id: str) -> None:
        """Fold ticks this customer was not due for into its clock: nothing else can change.

        In place, on the cache too: a later reload from the snapshot folds the
        same ticks in again, and a failed batch empties the cache.
        """
        if state is None:
            return
        ticks = self.ticks(self.routing.stream_of(customer_id))
        if state.ticks_seen >= len(ticks):
            return
        clock = max(ticks[state.ticks_seen :])
        state.ticks_seen = len(ticks)
        if state.clock is None or clock > state.clock:
            state.clock = clock

    def due_now(
        self,
        cache: StateCache,
        overlay: Mapping[str, CustomerState],
        overlay_due: Mapping[str, datetime | None],
        stream: str,
        at: datetime,
    ) -> list[CustomerState]:
        """Customers of `stream` a tick at `at` may change: due in the batch (its `overlay`
        and their `overlay_due`), the cache or the database."""
        mine = self.routing.stream_of
        due_stored = [] if self.conn is None else reads.due_customers(self.conn, at)
        stored = [c for c in due_stored if mine(c) == stream]
        cache.load({c for c in stored if c not in cache.states and c not in overlay})
        due: dict[str, CustomerState] = {}
        for customer_id, when in overlay_due.items():
            if when is not None and when <= at and mine(customer_id) == stream:
                due[customer_id] = overlay[customer_id]
        for customer_id, when in cache.due.items():
            fresh = customer_id not in overlay_due  # else its overlay state was looked at above
            if fresh and when is not None and when <= at and mine(customer_id) == stream:
                due[customer_id] = cache.states[customer_id]
        return list(due.values())
