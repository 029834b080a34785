"""`loyalty serve`: the HTTP API on uvicorn over one database, in embedded (single-writer) mode.

The server is the one writer of the ledger while it runs (it holds the writer
lock, as a file ingest does): its group-commit thread owns the pipeline, and a
pool of connections serves the reads. uvicorn's SIGTERM/SIGINT handling stops
taking connections and lets the requests in flight finish; then the writer
commits what is queued and the pool closes.
"""

from __future__ import annotations

from dataclasses import dataclass

from loyalty_ledger import log
from loyalty_ledger.engine import compile_rules
from loyalty_ledger.generations import programs
from loyalty_ledger.http.app import create_app
from loyalty_ledger.http.metrics import Metrics
from loyalty_ledger.http.server import ProgramInForce, Server
from loyalty_ledger.runtime.group_commit import EVENTS_MAX, LINGER_MS, GroupCommit
from loyalty_ledger.store import locks
from loyalty_ledger.store.db import Connection, Database, use_schema

READ_CONNECTIONS = 8


@dataclass(frozen=True, slots=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    group_events_max: int = EVENTS_MAX
    group_linger_ms: float = LINGER_MS
    read_connections: int = READ_CONNECTIONS
    graceful_s: float = 30.0  # how long a shutdown waits for requests in flight


def serve(conn: Connection, settings: ServeSettings, program_source: str | None,
          program_origin: str = "program") -> None:  # fmt: skip
    """Serve until SIGTERM or SIGINT; `conn` becomes the writer's."""
    import uvicorn

    with locks.one_file_writer(conn):
        app = create_app(build_server(conn, settings, program_source, program_origin))
        log.get("serve").info("serving", host=settings.host, port=settings.port,
                              mode="embedded")  # fmt: skip
        uvicorn.run(
            app, host=settings.host, port=settings.port, log_config=None, access_log=False,
            timeout_graceful_shutdown=int(settings.graceful_s), server_header=False,
        )  # fmt: skip


def build_server(conn: Connection, settings: ServeSettings, program_source: str | None,
                 program_origin: str = "program") -> Server:  # fmt: skip
    """The app's state: the program in force, the read pool and the writer on `conn`."""
    from psycopg_pool import ConnectionPool

    program = programs.adopt(conn, program_source, program_origin)
    live = programs.live_program(conn)
    assert live is not None  # adopted just now
    metrics = Metrics()
    database = Database.of(conn)
    schema = database.schema

    def configure(read: Connection) -> None:
        if schema is not None:
            use_schema(read, schema)

    pool: ConnectionPool[Connection] = ConnectionPool(
        database.conninfo(), kwargs={"autocommit": True}, configure=configure,
        min_size=1, max_size=settings.read_connections, open=True, name="reads",
    )  # fmt: skip
    writes = GroupCommit(
        conn, compile_rules(program), events_max=settings.group_events_max,
        linger_ms=settings.group_linger_ms, observe=metrics.committed,
    )  # fmt: skip
    return Server(pool, ProgramInForce(program, live[0], live[1]), writes, metrics)
