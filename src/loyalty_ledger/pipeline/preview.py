"""A pipeline that writes nothing: each batch decided as a re-run decides it, its rows handed
to a caller's sink instead of the store (`loyalty rerun --preview`).

The same parts as `Pipeline` (admit, the state cache, the tick streams, the
batch's rows), on a store taken as empty: nothing is committed, so there is
nothing to read back, and every state stays in memory (no snapshot is made, so
none may be evicted). What is left out is exactly the writing: the inbox, the
ledger and its hash chain, the snapshots and the projections' catch-up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from loyalty_ledger.engine import History, Rules
from loyalty_ledger.pipeline import collector
from loyalty_ledger.pipeline.batch_rows import BatchRows
from loyalty_ledger.pipeline.state_cache import StateCache
from loyalty_ledger.pipeline.tick_streams import TickStreams
from loyalty_ledger.pipeline.types import PREVIEW, Counts, Routing
from loyalty_ledger.sources.line import Line
from loyalty_ledger.store import reads
from loyalty_ledger.store.batch import Batch
from loyalty_ledger.store.db import Connection

Sink = Callable[[Batch], object]


def _no_position(_conn: Connection) -> None:
    return None  # nothing is written, so no source position is either


class Preview:
    """Decides batches in order on in-memory states; `sink` gets each batch's rows."""

    def __init__(self, rules: Rules | History, routing: Routing, sink: Sink) -> None:
        collector.tune()
        self.sink = sink
        self._cache = StateCache(None, routing)
        streams = TickStreams(None, routing)
        self._rows = BatchRows(None, rules, routing, PREVIEW, self._cache, streams)
        # Every event id decided so far: in a stored pipeline the inbox holds them.
        self._seen: dict[str, reads.Known] = {}

    def submit(self, lines: Sequence[Line]) -> Counts:
        """Decide one batch on the states of every batch before it; hand its rows to the sink."""
        work = self._rows.decide(lines, _no_position, self._seen)
        self._cache.merge(work.overlay, work.due)
        self._seen.update((k, v) for k, v in work.seen.items() if k in work.ids)
        self.sink(work.batch)
        return work.counts
