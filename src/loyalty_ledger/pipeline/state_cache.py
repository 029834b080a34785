"""The customer state cache of a pipeline, the batch overlay over it, and erasure invalidation.

A pipeline is the only writer of the customers it owns while it runs, so it
keeps their states (and each one's next due instant) in memory; the snapshots
in `customer_state` are the truth on restart. Only owned customers are cached:
another owner may change the others meanwhile. A batch's decided states stay in
its overlay (`Book`) until the batch is sent, so a batch decided again starts
from the cache as it was.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from loyalty_ledger.engine import CustomerState
from loyalty_ledger.engine.state import from_snapshot
from loyalty_ledger.pipeline.admit import Decoded, findable, named_in
from loyalty_ledger.pipeline.types import Routing
from loyalty_ledger.store import reads
from loyalty_ledger.store.db import Connection

# Past this the least recently decided states are evicted (their snapshots hold them):
# correctness never needs the cache, and a bounded one bounds the process's memory
# (benchmarks/ingest.py --customers 1000000 prints the peak).
CACHE_CUSTOMERS_MAX = 100_000


class Book(Mapping[str, CustomerState]):
    """The batch's decided states over the cache; `get` is hot (a ChainMap's is slow)."""

    __slots__ = ("cache", "overlay")

    def __init__(self, overlay: dict[str, CustomerState], cache: dict[str, CustomerState]) -> None:
        self.overlay = overlay
        self.cache = cache

    def get(self, key: str, default: Any = None) -> Any:
        state = self.overlay.get(key)
        return state if state is not None else self.cache.get(key, default)

    def __getitem__(self, key: str) -> CustomerState:
        state = self.get(key)
        if state is None:
            raise KeyError(key)
        return state  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return key in self.overlay or key in self.cache

    def __iter__(self) -> Iterator[str]:
        yield from self.overlay
        yield from (k for k in self.cache if k not in self.overlay)

    def __len__(self) -> int:
        return len(self.overlay) + sum(1 for k in self.cache if k not in self.overlay)


class StateCache:
    """Owned customers' states and next due instants, as the database has them after the
    batches sent so far. `states` and `due` keep their identity: readers may hold them."""

    __slots__ = ("_erased_after", "conn", "due", "routing", "states")

    def __init__(self, conn: Connection | None, routing: Routing) -> None:
        """`conn` None: a preview's store, empty, so nothing is evicted (no snapshot would
        hold it: the bound does not apply) and no erasure concerns it (it writes nothing)."""
        self.conn = conn
        self.routing = routing
        self.states: dict[str, CustomerState] = {}
        self.due: dict[str, datetime | None] = {}
        self._erased_after = datetime.min.replace(tzinfo=UTC)  # the cache starts empty

    def forget(self, streams: Iterable[str] | None = None) -> None:
        """Drop cached states (of these streams): another owner may change them from now on."""
        if streams is None:
            self.states.clear()
            self.due.clear()
            return
        gone = set(streams)
        for customer_id in [c for c in self.states if self.routing.stream_of(c) in gone]:
            del self.states[customer_id]
            self.due.pop(customer_id, None)

    def forget_erased(self) -> None:
        """Cached states of members erased since the last batch hold PII: reload them.

        The batch write scrubs stored snapshots of erased members as well, so a
        batch decided just before an erasure commits cannot write it back.
        """
        if self.conn is None:
            return
        erased, self._erased_after = reads.erased_since(self.conn, self._erased_after)
        for customer_id in erased:
            self.states.pop(customer_id, None)
            self.due.pop(customer_id, None)

    def preload(self, items: Iterable[Decoded]) -> None:
        """Load every customer these inputs may touch, referrers included, in two queries."""
        wanted: set[str] = set()
        for item in items:
            wanted.update(named_in(item))
        owns = self.routing.owns
        wanted = {c for c in findable(wanted) if owns(c)}
        self.load(wanted - self.states.keys())
        referrers = {
            s.referrer_id for c in wanted
            if (s := self.states.get(c)) is not None and s.referrer_id and not s.referral_settled
        }  # fmt: skip
        self.load({r for r in referrers - self.states.keys() if owns(r)})

    def load(self, customer_ids: set[str]) -> None:
        """Read these customers' snapshots into the cache (those that have one)."""
        if self.conn is None:
            return
        for customer_id, state, due in reads.snapshots(self.conn, customer_ids):
            self.states[customer_id] = from_snapshot(customer_id, state)
            self.due[customer_id] = due

    def merge(
        self, overlay: Mapping[str, CustomerState], due: Mapping[str, datetime | None]
    ) -> None:
        """A sent batch's states join the cache as its most recent; past the bound, the
        least recent go, never the batch's own: it may not have committed yet (one batch is
        in flight at most), while every other state has, so what goes, the snapshots hold."""
        states = self.states
        for customer_id, state in overlay.items():
            states.pop(customer_id, None)  # to the end: the order is that of recent use
            states[customer_id] = state
        self.due.update(due)
        if self.conn is None:
            return
        excess = len(states) - max(CACHE_CUSTOMERS_MAX, len(overlay))
        if excess > 0:
            for customer_id in list(itertools.islice(states, excess)):
                del states[customer_id]
                self.due.pop(customer_id, None)

    def book(self, overlay: dict[str, CustomerState]) -> Book:
        """`overlay` (a batch's decided states) over the cache."""
        return Book(overlay, self.states)
