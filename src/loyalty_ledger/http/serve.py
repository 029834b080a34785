"""`loyalty serve`: the HTTP API on uvicorn over one database, in one of two modes.

Embedded (no Kafka): the server's group-commit thread owns the pipeline and
writes each group under the writer lock, as a file ingest writes its run.
Kafka (LOYALTY_KAFKA_BOOTSTRAP): it publishes to the inputs topic and answers
when the consumer group has committed (kafka_writes); any number of servers
may run. Either way a pool of connections serves the reads.

uvicorn's SIGTERM/SIGINT handling stops taking connections and lets the
requests in flight finish; then the writer commits what is queued and the pool
closes."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from loyalty_ledger import log
from loyalty_ledger.errors import LoyaltyError, UserError
from loyalty_ledger.generations import amendments, programs
from loyalty_ledger.http.app import create_app
from loyalty_ledger.http.metrics import Metrics
from loyalty_ledger.http.server import ProgramInForce, Server, Writes
from loyalty_ledger.kafka.settings import KafkaSettings
from loyalty_ledger.runtime.group_commit import EVENTS_MAX, LINGER_MS, GroupCommit
from loyalty_ledger.runtime.kafka_writes import ANSWER_WAIT_S, KafkaWrites
from loyalty_ledger.store.db import Connection, Database, sibling, use_schema

READ_CONNECTIONS = 8


@dataclass(frozen=True, slots=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    group_events_max: int = EVENTS_MAX
    group_linger_ms: float = LINGER_MS
    read_connections: int = READ_CONNECTIONS
    graceful_s: float = 30.0  # how long a shutdown waits for requests in flight
    kafka: KafkaSettings | None = None  # Kafka mode: publish, and wait for the consumers
    group: str = "loyalty"  # the consumer group whose commits answer (Kafka mode)
    answer_wait_s: float = ANSWER_WAIT_S  # then 202 (Kafka mode)


class CannotListen(UserError):
    """The host and port to serve on cannot be bound (taken, or not this machine's)."""


def listening(host: str, port: int) -> socket.socket:
    """A socket bound to `host`:`port` and listening; port 0 lets the system choose.

    Bound by the command before it opens the database, so a taken port is one line and
    exit 2 at once rather than uvicorn's exit 3 after the program is adopted; and the
    port chosen for 0 is the one the "serving" log line names."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise CannotListen(
            f"cannot listen on {host}:{port}: {e.strerror or e}: choose another --port or "
            "--host (or stop what holds it)"
        ) from None
    return sock


def serve(conn: Connection, sock: socket.socket, settings: ServeSettings,
          program_source: str | None, program_origin: str = "program") -> None:  # fmt: skip
    """Serve on `sock` (from `listening`) until SIGTERM or SIGINT; `conn` becomes the
    writer's."""
    import uvicorn

    server = build_server(conn, settings, program_source, program_origin)
    config = uvicorn.Config(
        create_app(server), log_config=log.stdlib_config(), access_log=False,
        timeout_graceful_shutdown=int(settings.graceful_s), server_header=False,
    )  # fmt: skip
    log.get("serve").info("serving", host=settings.host, port=sock.getsockname()[1],
                          mode=server.writes.mode)  # fmt: skip
    with _stopped_is_done():
        uvicorn.Server(config).run(sockets=[sock])
    if server.writes.fatal is not None:  # the writer stopped the server: say why, exit 2
        raise server.writes.fatal


@contextmanager
def _stopped_is_done() -> Iterator[None]:
    """SIGTERM and SIGINT end the server gracefully, and then the command: exit 0.

    uvicorn handles them while it serves, and afterwards raises the signal again for
    the handlers it found; these are those handlers, and they ignore it, so the
    command returns normally (closing the database and the writer lock) instead of
    dying of the signal (-15)."""
    ignored = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in ignored.items():
            signal.signal(sig, handler)


def _stop_serving(why: LoyaltyError) -> None:
    """The writer cannot go on (a promotion, a lost database): stop gracefully, as SIGTERM
    does; `serve` then raises `why` (one line, exit 2) and a supervisor starts it again."""
    log.get("serve").error("writer_stopped", reason=str(why))
    os.kill(os.getpid(), signal.SIGTERM)


def _ignore(sig: int, frame: FrameType | None) -> None:
    """A signal raised again after the graceful shutdown it already caused."""


def build_server(conn: Connection, settings: ServeSettings, program_source: str | None,
                 program_origin: str = "program") -> Server:  # fmt: skip
    """The app's state: the program in force, the read pool and the writer on `conn`."""
    from psycopg_pool import ConnectionPool

    program = programs.adopt(conn, program_source, program_origin)
    count, history = amendments.load_history(conn, program)
    live = programs.live_program(conn)
    assert live is not None  # adopted just now
    metrics = Metrics()
    database = Database.of(conn)
    schema = database.schema

    def configure(read: Connection) -> None:
        if schema is not None:
            use_schema(read, schema)

    pool: ConnectionPool[Connection] = ConnectionPool(
        database.conninfo("console"), kwargs={"autocommit": True}, configure=configure,
        min_size=1, max_size=4, open=True, name="reads",  # the console's pages
    )  # fmt: skip
    writes: Writes
    if settings.kafka is None:
        writes = GroupCommit(
            conn, history, program=program, amendments=count,
            events_max=settings.group_events_max,
            linger_ms=settings.group_linger_ms, observe=metrics.committed, on_fatal=_stop_serving,
        )  # fmt: skip
    else:
        writes = KafkaWrites(sibling(conn, "publisher"), settings.kafka, settings.group,
                             settings.answer_wait_s)  # fmt: skip
    return Server(pool, ProgramInForce(program, live[0], live[1]), writes, metrics, database,
                  settings.read_connections)  # fmt: skip
