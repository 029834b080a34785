"""What the app holds for its lifetime: the read pool, the program in force, the writer, the
metrics; and the writer's interface, which the embedded and the Kafka modes both provide."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from psycopg_pool import ConnectionPool

from loyalty_ledger.errors import LoyaltyError
from loyalty_ledger.http.metrics import Metrics
from loyalty_ledger.program import Program
from loyalty_ledger.runtime.group_commit import Answers
from loyalty_ledger.store.db import Connection


class Writes(Protocol):
    """Where posted events go: `submit` answers after commit (or not within the wait)."""

    mode: str  # embedded | kafka
    fatal: LoyaltyError | None  # why the writer stopped for good (the server stops), or None
    answer_wait_s: float | None  # None: answers always come (embedded); else 202 after it

    def submit(self, raws: Sequence[bytes], key_name: str) -> Future[Answers]: ...

    def not_ready(self) -> str | None:
        """None when ready to take writes, else why not (for /readyz)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ProgramInForce:
    program: Program
    hash: str
    source: str  # the TOML as stored


@dataclass(slots=True)
class Server:
    pool: ConnectionPool[Connection]
    program: ProgramInForce
    writes: Writes
    metrics: Metrics
    body_bytes_max: int = 1_048_576  # 1 MiB
    events_max: int = 1_000  # per request

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection of the read pool, on the live generation."""
        with self.pool.connection() as conn:
            yield conn
