"""`loyalty serve`'s single writer: HTTP requests grouped into one pipeline batch each, answered
once that batch has committed and the projections have caught up with it.

One thread owns the pipeline and takes the writer lock for each group (so an
erasure or a redrive is never locked out by a running server); a request waits
in a queue until the thread takes it into a group: up to `events_max` events,
or what arrived within `linger_ms` of the group's first request. While a group
commits, the next one gathers, so a busy till fleet costs one commit per
group, not per request (group commit). A request is never split, and the
inputs of a group keep their arrival order.

Each API key is a source of its own (`http:<key name>`) whose positions count
its inputs; they commit with the batch, like a file's line number, so every
input, and the key that sent it, is in the inbox or the dead letters for good."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from loyalty_ledger import log
from loyalty_ledger.admin import customer_card
from loyalty_ledger.engine import History, Rules
from loyalty_ledger.errors import Conflict, LoyaltyError, Unavailable
from loyalty_ledger.generations import amendments
from loyalty_ledger.pipeline import Outcome, Pipeline
from loyalty_ledger.program import Program
from loyalty_ledger.projectors import runner
from loyalty_ledger.sources.address import SourceAddress, SourceKind
from loyalty_ledger.sources.line import Line
from loyalty_ledger.store import locks
from loyalty_ledger.store.batch import Position, ProgramAmended, write_positions
from loyalty_ledger.store.db import Connection, StoreUnavailable

EVENTS_MAX = 1_000  # a group's events: larger groups pay more latency than they save
LINGER_MS = 2  # how long a group's first request waits for company


class WriterStopped(Unavailable):
    """The server is shutting down, or its writer failed: send the request again later."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One input's outcome; for a duplicate, also the first outcome of its event id."""

    outcome: Outcome
    first_status: str | None = None  # accepted | rejected, from the inbox (duplicates)
    first_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Answers:
    """A request's answers, input by input, and the read model of each customer it names,
    as committed with its group."""

    answers: tuple[Answer, ...]
    customers: dict[str, dict[str, Any]]


@dataclass(slots=True)
class _Request:
    raws: Sequence[bytes]
    source: str
    future: Future[Answers] = field(default_factory=Future)


Observe = Callable[[int, float, Sequence[Outcome]], None]  # events, commit seconds, outcomes

_STOP = object()


class GroupCommit:
    """The writer thread of `loyalty serve` in embedded mode; `submit` from any thread."""

    mode = "embedded"
    answer_wait_s: float | None = None  # a request always gets its answer: after commit

    def __init__(
        self,
        conn: Connection,
        rules: Rules | History,
        *,
        program: Program | None = None,
        amendments: int | None = None,
        events_max: int = EVENTS_MAX,
        linger_ms: float = LINGER_MS,
        observe: Observe | None = None,
        on_fatal: Callable[[LoyaltyError], None] | None = None,
    ) -> None:
        self.conn = conn  # the writer's own: it holds the writer lock
        self.events_max = events_max
        self.linger_s = linger_ms / 1000
        self.observe = observe
        self.on_fatal = on_fatal  # the writer cannot go on: e.g. stop the server
        self.fatal: LoyaltyError | None = None
        # With `program` (the original of the generation's history), a group refused because
        # the program was amended meanwhile is decided again under the new history.
        self._program = program
        self._pipeline = Pipeline(
            conn, rules, after_commit=runner.catch_up, amendments=amendments
        )
        self._positions = _http_positions(conn)
        self._epoch = -1  # the writer epoch of the last group: none yet
        self._queue: queue.SimpleQueue[_Request | object] = queue.SimpleQueue()
        self._stopping = False
        self._logger = log.get("serve")
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()  # last: the thread uses every attribute above

    def submit(self, raws: Sequence[bytes], key_name: str) -> Future[Answers]:
        """Queue one request's inputs; the future holds their answers after commit."""
        request = _Request(raws, SourceAddress.http(key_name).format())
        if self._stopping:
            request.future.set_running_or_notify_cancel()
            request.future.set_exception(WriterStopped("the server is shutting down"))
        else:
            self._queue.put(request)
        return request.future

    def not_ready(self) -> str | None:
        if self._stopping:
            return "shutting down"
        return None if self._thread.is_alive() else "the writer thread stopped"

    def close(self) -> None:
        """Finish every request queued so far, then stop (a graceful shutdown)."""
        self._stopping = True
        self._queue.put(_STOP)
        self._thread.join()
        self._pipeline.close()

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            assert isinstance(first, _Request)
            group, stop = self._gather(first)
            # A request whose client went away before its group began is not applied; once
            # begun, it cannot be cancelled: its answer is set whether anyone waits or not.
            group = [r for r in group if r.future.set_running_or_notify_cancel()]
            if group:
                self._as_the_writer(group)
        while True:  # requests that raced the stop: refused, never left hanging
            late = self._queue.get_nowait() if not self._queue.empty() else None
            if late is None:
                return
            if isinstance(late, _Request) and late.future.set_running_or_notify_cancel():
                late.future.set_exception(WriterStopped("the server is shutting down"))

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        """`first` and what joins it within the linger, up to `events_max` events."""
        group, events = [first], len(first.raws)
        deadline = time.monotonic() + self.linger_s
        while events < self.events_max:
            try:
                left_s = deadline - time.monotonic()
                more = self._queue.get(timeout=left_s) if left_s > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if more is _STOP:
                return group, True
            assert isinstance(more, _Request)
            group.append(more)
            events += len(more.raws)
        return group, False

    def _as_the_writer(self, group: list[_Request]) -> None:
        """Commit `group` holding the writer lock, taken group by group: an erasure, a
        redrive or a file ingest gets its turn between two groups. If one ran since the
        last group, what the pipeline cached (states, positions) may be stale: dropped."""
        try:
            epoch = locks.take_writer(self.conn)
        except Exception as e:
            self._failed(group, e)
            return
        try:
            if epoch != self._epoch + 1:
                self._pipeline.forget()
                self._positions = _http_positions(self.conn)
            self._epoch = epoch
            self._commit(group)
        finally:
            with contextlib.suppress(Exception):  # a lost connection released it already
                locks.release_writer(self.conn)

    def _commit(self, group: list[_Request]) -> None:
        positions = dict(self._positions)
        lines = []
        for request in group:
            for raw in request.raws:
                positions[request.source] = position = positions.get(request.source, 0) + 1
                lines.append(Line(request.source, position, raw))
        changed = [Position(s, n, 0, "") for s, n in positions.items()
                   if self._positions.get(s) != n]  # fmt: skip
        started = time.perf_counter()
        try:
            self._process(lines, changed)
        except Exception as e:  # nothing of the group committed (its transaction was undone)
            self._failed(group, e)
            return
        self._positions = positions
        outcomes = list(self._pipeline.written)
        if self.observe is not None:
            self.observe(len(lines), time.perf_counter() - started, outcomes)
        try:
            firsts = _first_outcomes(self.conn, outcomes)
            customers = _read_models(self.conn, outcomes)
        except Exception as e:  # committed, unanswered: a retry gets the first outcomes
            self._failed(group, e)
            return
        _answer(group, outcomes, firsts, customers)

    def _process(self, lines: list[Line], changed: list[Position]) -> None:
        try:
            self._pipeline.process(lines, partial(write_positions, positions=changed))
        except ProgramAmended:
            if self._program is None:
                raise
            self._logger.info("program_amended")
            count, history = amendments.load_history(self.conn, self._program)
            with contextlib.suppress(ProgramAmended):
                self._pipeline.close()
            self._pipeline = Pipeline(
                self.conn, history, after_commit=runner.catch_up, amendments=count
            )
            self._pipeline.process(lines, partial(write_positions, positions=changed))

    def _failed(self, group: Sequence[_Request], error: Exception) -> None:
        """Fail the group's requests (a retry is safe: event ids are idempotency keys). A lost
        database or a promotion stops the writer for good: the server then stops, to be
        started again on the database and generation as they are now."""
        self._logger.error("group_failed", events=sum(len(r.raws) for r in group),
                           error=type(error).__name__)  # fmt: skip
        if isinstance(error, Conflict):
            self.fatal = error
        elif self.conn.broken or self.conn.closed:
            self.fatal = StoreUnavailable("lost the database connection: start the server again")
        if self.fatal is not None:
            failure: LoyaltyError = WriterStopped(
                f"the server is stopping ({self.fatal}): send the request again once it is back"
            )
        elif isinstance(error, Unavailable):
            failure = error
        else:
            failure = WriterStopped("the ledger could not commit this request: send it again")
        for request in group:
            request.future.set_exception(failure)
        if self.fatal is not None and self.on_fatal is not None:
            self.on_fatal(self.fatal)


def _answer(
    group: Sequence[_Request],
    outcomes: Sequence[Outcome],
    firsts: dict[str, tuple[str, str | None]],
    customers: dict[str, dict[str, Any]],
) -> None:
    assert len(outcomes) == sum(len(r.raws) for r in group)
    at = 0
    for request in group:
        mine = outcomes[at : at + len(request.raws)]
        at += len(request.raws)
        answers = tuple(_with_first(o, firsts) for o in mine)
        named = {o.customer_id for o in mine if o.customer_id is not None}
        request.future.set_result(
            Answers(answers, {c: customers[c] for c in sorted(named) if c in customers})
        )


def _with_first(outcome: Outcome, firsts: dict[str, tuple[str, str | None]]) -> Answer:
    if outcome.status != "duplicate" or outcome.event_id not in firsts:
        return Answer(outcome)
    status, reason = firsts[outcome.event_id]
    return Answer(outcome, status, reason)


def _first_outcomes(
    conn: Connection, outcomes: Sequence[Outcome]
) -> dict[str, tuple[str, str | None]]:
    """event_id -> the first outcome of each duplicate's event id, and its customer."""
    ids = [o.event_id for o in outcomes if o.status == "duplicate" and o.event_id is not None]
    if not ids:
        return {}
    rows = conn.execute(
        "SELECT event_id, outcome, reason FROM inbox WHERE event_id = ANY(%s)", (ids,)
    ).fetchall()
    return {event_id: (status, reason) for event_id, status, reason in rows}


def _read_models(conn: Connection, outcomes: Sequence[Outcome]) -> dict[str, dict[str, Any]]:
    """The `customers` read model of every customer the group named, as just projected."""
    named = sorted({o.customer_id for o in outcomes if o.customer_id is not None})
    if not named:
        return {}
    return customer_card.read_models(conn, named)


def _http_positions(conn: Connection) -> dict[str, int]:
    """Each API key's inputs so far (the HTTP sources' positions)."""
    rows = conn.execute(
        "SELECT source, position FROM source_positions WHERE source LIKE %s",
        (f"{SourceKind.http}:%",),
    ).fetchall()
    return {source: int(position) for source, position in rows}
