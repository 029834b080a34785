"""What the app holds for its lifetime: the read pool, the program in force, the writer, the
metrics; and the writer's interface, which the embedded and the Kafka modes both provide."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Protocol

from psycopg import AsyncConnection, sql
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from loyalty_ledger.errors import LoyaltyError
from loyalty_ledger.http.metrics import Metrics
from loyalty_ledger.program import Program
from loyalty_ledger.runtime.group_commit import Answers
from loyalty_ledger.store.db import Connection, Database


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
    """The app's state. Reads go through `areading` (psycopg's async connections on the
    event loop: a thread hop per request cost more than the whole read); the console's
    pages, a few per minute, through the blocking `reading`."""

    pool: ConnectionPool[Connection]
    program: ProgramInForce
    writes: Writes
    metrics: Metrics
    database: Database  # where the async pool connects (it opens with the event loop)
    read_connections: int = 8
    body_bytes_max: int = 1_048_576  # 1 MiB
    events_max: int = 1_000  # per request
    apool: AsyncConnectionPool[AsyncConnection[TupleRow]] | None = None

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A blocking connection of the read pool, on the live generation."""
        with self.pool.connection() as conn:
            yield conn

    @asynccontextmanager
    async def areading(self) -> AsyncIterator[AsyncConnection[TupleRow]]:
        """An async connection of the read pool, on the live generation."""
        assert self.apool is not None, "the app's lifespan opens the pool"
        async with self.apool.connection() as conn:
            yield conn

    async def open(self) -> None:
        """Open the async pool, on the running event loop (the app's startup)."""
        schema = self.database.schema

        async def configure(conn: AsyncConnection[TupleRow]) -> None:
            if schema is not None:
                await conn.execute(
                    sql.SQL("SET search_path TO {}, public").format(sql.Identifier(schema))
                )

        self.apool = AsyncConnectionPool(
            self.database.conninfo("reads"), kwargs={"autocommit": True}, configure=configure,
            min_size=1, max_size=self.read_connections, open=False, name="async-reads",
        )  # fmt: skip
        await self.apool.open()

    async def close(self) -> None:
        self.writes.close()  # graceful: the requests already queued are committed first
        if self.apool is not None:
            await self.apool.close()
        self.pool.close()
