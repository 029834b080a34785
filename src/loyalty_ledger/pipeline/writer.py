"""The background writer and projector threads, each on a sibling connection of its own.

The writer writes one batch at a time while the pipeline decides the next; after
each commit it starts the projections' catch-up (`after_commit`) on the
projector thread, overlapped with the next write (the database's work, mostly).
One catch-up at most is in flight, so the projections trail the ledger by one
batch at most, and by none once `wait_projected` returns. Threads and
connections start with the first batch.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from loyalty_ledger.store import batch as store_batch
from loyalty_ledger.store.batch import Batch, InputRefused
from loyalty_ledger.store.db import Connection, sibling

AfterCommit = Callable[[Connection], object]


class Writer:
    """Writes batches in order, on a connection beside `conn`, and projects after each."""

    def __init__(self, conn: Connection, after_commit: AfterCommit | None) -> None:
        self.conn = conn
        self.after_commit = after_commit
        self._executor: ThreadPoolExecutor | None = None
        self._writer_conn: Connection | None = None
        self._in_flight: Future[None] | None = None
        self._projector: ThreadPoolExecutor | None = None
        self._projector_conn: Connection | None = None
        self._projecting: Future[object] | None = None

    def submit(self, batch: Batch) -> None:
        """Write `batch` on the writer thread; the one before must have been finished."""
        assert self._in_flight is None
        if self._executor is None:
            self._writer_conn = sibling(self.conn, "writer")
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="ledger-writer")
        self._in_flight = self._executor.submit(self._write, batch)

    def finish(self) -> bool:
        """Until the batch in flight is written (False: there was none); raises what its
        write raised, InputRefused when one of its inputs is to blame."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None:
            return False
        in_flight.result()
        return True

    def wait_projected(self) -> None:
        """Until the projections caught up with the last commit; raises what the catch-up
        raised. Call with no batch in flight."""
        projecting, self._projecting = self._projecting, None
        if projecting is not None:
            projecting.result()

    def write_now(self, batch: Batch) -> None:
        """Write `batch` here and now, on the writer's connection (its thread is idle)."""
        store_batch.write(self._connection(), batch)
        self._projected()

    def trial(self, batch: Batch) -> InputRefused | None:
        """Write `batch` in a transaction that is rolled back: what refused it, if anything."""
        return store_batch.trial(self._connection(), batch)

    def close(self) -> None:
        for executor in (self._executor, self._projector):
            if executor is not None:
                executor.shutdown()
        for conn in (self._writer_conn, self._projector_conn):
            if conn is not None:
                conn.close()

    def _connection(self) -> Connection:
        conn = self._writer_conn
        assert conn is not None  # a batch was submitted before
        return conn

    def _write(self, batch: Batch) -> None:
        store_batch.write(self._connection(), batch)
        self._projected()

    def _projected(self) -> None:
        """Start the catch-up of what just committed, after the one before finished."""
        if self.after_commit is None:
            return
        previous, self._projecting = self._projecting, None
        if previous is not None:
            previous.result()
        if self._projector is None:
            self._projector_conn = sibling(self.conn, "projector")
            self._projector = ThreadPoolExecutor(1, thread_name_prefix="projector")
        assert self._projector_conn is not None
        self._projecting = self._projector.submit(self.after_commit, self._projector_conn)
