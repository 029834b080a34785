"""The batch loop shared by every source: decode, dedupe, decide, write one transaction per batch.

A pipeline is the only writer of the customers it owns while it runs (a file
ingest holds the writer lock; a consumer owns its partitions, fenced by its
owner epoch), so it caches their state in memory (state_cache); the snapshots
in `customer_state` are the truth on restart. Decided states stay in a batch
overlay until the batch is sent, so a failed write leaves the cache as the
database has it. Its parts: admit (decode, dedupe, misroute), state_cache,
tick_streams (the streams' clocks), batch_rows (a batch's rows) and writer (the
writer and projector threads); this module wires them.

No input can stop a source (no poison pill): when the database refuses a batch
because of one input's value (store.batch.InputRefused), the shortest refused
prefix of the batch, each decided afresh from what committed and written in a
transaction that is rolled back, ends at that input; it becomes a dead letter
of the same batch with the database's reason, and the batch is decided and
written again, with its own source position (refusals). The happy path pays nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from loyalty_ledger.engine import History, Rules
from loyalty_ledger.pipeline import collector
from loyalty_ledger.pipeline.admit import Decoded
from loyalty_ledger.pipeline.batch_rows import BatchRows
from loyalty_ledger.pipeline.refusals import Rewrite, Sent
from loyalty_ledger.pipeline.state_cache import CACHE_CUSTOMERS_MAX, StateCache
from loyalty_ledger.pipeline.tick_streams import TickStreams
from loyalty_ledger.pipeline.types import (
    LIVE,
    RERUN,
    Counts,
    OneStream,
    Outcome,
    Routing,
    Target,
)
from loyalty_ledger.pipeline.writer import AfterCommit, Writer
from loyalty_ledger.sources.line import Line
from loyalty_ledger.store import reads
from loyalty_ledger.store.batch import InputRefused, RecordPosition
from loyalty_ledger.store.db import Connection

__all__ = [
    "CACHE_CUSTOMERS_MAX", "LIVE", "RERUN", "Counts", "Decoded", "OneStream", "Outcome",
    "Pipeline", "Routing", "Target",
]  # fmt: skip


class Pipeline:
    """Decides and writes the batches of one source; `target` says for which generation."""

    def __init__(
        self,
        conn: Connection,
        rules: Rules | History,
        routing: Routing | None = None,
        after_commit: AfterCommit | None = None,
        *,
        target: Target = LIVE,
        amendments: int | None = None,
    ) -> None:
        """`amendments`: how many amendments the history `rules` holds; each batch commits
        only while the generation still has that many (store.batch: ProgramAmended).
        None: not checked (a re-run's candidate has no amendments of its own)."""
        collector.tune()
        self.conn = conn  # reads; batches are written on a second connection, in order
        self.rules = rules
        self.routing: Routing = routing or OneStream()
        self.target = target
        self._cache = StateCache(conn, self.routing)
        self.cache = self._cache.states  # the same dict, for good: tests look into it
        self._streams = TickStreams(conn, self.routing)
        self._rows = BatchRows(
            conn, rules, self.routing, target, self._cache, self._streams, amendments
        )
        # e.g. the projections' catch-up: after each commit, on a connection of its own
        self._writer = Writer(conn, after_commit)
        self._rewrite = Rewrite(self._rows, self._writer, self.forget)
        self._sent: Sent | None = None  # the batch in flight
        self._in_flight_seen: dict[str, reads.Known] = {}
        # What the last batch written answered, input by input (as written: after a refusal,
        # the refused input is "invalid" with the database's reason).
        self.written: Sequence[Outcome] = ()

    def process(self, lines: Sequence[Line], record_position: RecordPosition) -> Counts:
        """Decide and write one batch in one transaction; returns what happened to its inputs.

        `record_position` runs inside that transaction: the source's offsets
        commit with the effects, or neither does.
        """
        counts = self.submit(lines, record_position)
        counts.add(self.wait())
        return counts

    def submit(self, lines: Sequence[Line], record_position: RecordPosition) -> Counts:
        """Decide a batch, then write it on the writer thread while the caller reads the next.

        The batch's states join the cache before it commits, so the next batch
        is decided on top of them; if a write fails, `wait` (or the next
        `submit`) raises, the cache is dropped and nothing after that batch
        is written. One batch at most is in flight. The counts returned
        include any correction of the batch before (see `wait`).
        """
        try:
            work = self._rows.decide(lines, record_position, self._in_flight_seen)
            late = self._wait_write()
            if late is not None:  # decided on states of the batch before that did not commit
                work = self._rows.decide(lines, record_position, self._in_flight_seen)
        except BaseException:
            self.forget()  # catch-ups touched cached states in place: start over from the database
            raise
        self._cache.merge(work.overlay, work.due)
        self._in_flight_seen = {k: v for k, v in work.seen.items() if k in work.ids}
        self._sent = Sent(lines, record_position, work.counts, work.outcomes)
        self._writer.submit(work.batch)
        counts = Counts()
        counts.add(work.counts)
        if late is not None:
            counts.add(late)
        return counts

    def wait(self) -> Counts:
        """Until the batch in flight is committed and the projections have caught up with it;
        raises what its write or the catch-up raised. Returns the correction to the counts of
        that batch when an input was refused and dead-lettered (zero counts otherwise)."""
        late = self._wait_write()
        self._writer.wait_projected()  # the writer is idle now
        return late or Counts()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._writer.close()

    def forget(self, streams: Iterable[str] | None = None) -> None:
        """Drop cached state (of these streams): another owner may change it from now on."""
        if streams is not None:
            streams = set(streams)
        self._cache.forget(streams)
        self._streams.forget(streams)

    def _wait_write(self) -> Counts | None:
        """None, or the batch in flight was refused for an input and is now written without
        it (the cache is empty then): the correction to its counts."""
        sent, self._sent = self._sent, None
        try:
            if self._writer.finish():
                assert sent is not None
                self.written = sent.outcomes
            return None
        except InputRefused as e:
            if not self.target.dead_letters_refused:  # see Target: fails as it always did
                self._in_flight_seen = {}
                self.forget()
                raise e.__cause__ or e from None
            refused = e
        except BaseException:
            self._in_flight_seen = {}
            self.forget()
            raise
        assert sent is not None
        self._in_flight_seen = {}
        try:
            late, self.written = self._rewrite(sent, refused)
            return late
        finally:
            self.forget()  # every trial decided on the cache: start over from the database
