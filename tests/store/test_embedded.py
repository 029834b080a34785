"""The embedded PostgreSQL server starts, restarts, attaches, and dies with its parent."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
import sqlalchemy

from loyalty_ledger.store import embedded

if TYPE_CHECKING:
    from conftest import PgServer

CHILD = """
import sys
import threading
from pathlib import Path
from loyalty_ledger.store import embedded
server = embedded.start(Path(sys.argv[1]), fsync=False)
print(server.process.pid, flush=True)
sys.stdin.read()
"""


def _gone(pid: int) -> bool:
    # an exited server whose new parent has not reaped it yet is a zombie: count it as gone
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


def _version(server: embedded.Server) -> str:
    with psycopg.connect(server.conninfo()) as conn:
        row = conn.execute("select version()").fetchone()
    assert row is not None
    return str(row[0])


def test_start_connect_stop(tmp_path: Path) -> None:
    root = tmp_path / "ll"
    with embedded.running(root, fsync=False) as server:
        assert server.process is not None
        assert _version(server).startswith("PostgreSQL 18")
        engine = sqlalchemy.create_engine(server.url)
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("select current_database()")).scalar() == "loyalty"
        engine.dispose()
        assert embedded.status(root) is not None
        assert (root / "postgres.log").is_file()
    assert server.process.returncode is not None
    assert embedded.status(root) is None


def test_restart_keeps_data(tmp_path: Path) -> None:
    with (
        embedded.running(tmp_path, fsync=False) as server,
        psycopg.connect(server.conninfo()) as conn,
    ):
        conn.execute("create table kept (n int)")
        conn.execute("insert into kept values (42)")
    with (
        embedded.running(tmp_path, fsync=False) as server,
        psycopg.connect(server.conninfo()) as conn,
    ):
        assert conn.execute("select n from kept").fetchone() == (42,)


def test_server_dies_with_parent(tmp_path: Path) -> None:
    src = str(Path(embedded.__file__).parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line.strip().isdigit(), child.communicate(timeout=10)[1].decode()
    postmaster = int(line)
    assert not _gone(postmaster)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=10)
    assert _wait_gone(postmaster), f"postmaster {postmaster} outlived its parent"
    # and the data dir is immediately usable again
    with embedded.running(tmp_path, fsync=False) as server:
        assert _version(server).startswith("PostgreSQL 18")


def test_long_cwd_path_uses_short_socket_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path / ("d" * 100) / ("e" * 100)
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    with embedded.running(fsync=False) as server:
        try:
            assert len(str(server.data_dir / "run" / ".s.PGSQL.5432")) > 107
            assert len(str(server.socket_dir)) < 40
            assert _version(server).startswith("PostgreSQL 18")
            status = embedded.status()
            assert status is not None and status.socket_dir == server.socket_dir
        finally:
            embedded.stop(server)
            shutil.rmtree(server.socket_dir, ignore_errors=True)


def test_detached_server_is_attached_not_stopped(tmp_path: Path) -> None:
    detached = embedded.start_detached(tmp_path)
    try:
        assert detached.process is None
        attached = embedded.start(tmp_path, fsync=False)
        assert attached.process is None
        embedded.stop(attached)  # no-op: `loyalty db stop` owns it
        assert _version(attached).startswith("PostgreSQL 18")
    finally:
        assert embedded.stop_detached(tmp_path)
    assert embedded.status(tmp_path) is None
    assert not embedded.stop_detached(tmp_path)


def test_missing_binaries_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOYALTY_PG_BINDIR", str(tmp_path / "nowhere"))
    with pytest.raises(embedded.EmbeddedError, match="binaries not found") as err:
        embedded.start(tmp_path)
    assert "\n" not in str(err.value)


def test_initdb_failure_names_the_cause(tmp_path: Path) -> None:
    (tmp_path / "pgdata").mkdir()
    (tmp_path / "pgdata" / "stray").write_text("not a cluster")
    with pytest.raises(embedded.EmbeddedError, match=r"initdb failed.*not empty") as err:
        embedded.start(tmp_path)
    assert "\n" not in str(err.value)


def test_pg_server_fixture_serves_postgresql(pg_server: PgServer) -> None:
    with pg_server.connect() as conn:
        row = conn.execute("show server_version_num").fetchone()
    assert row is not None and int(row[0]) >= 180000


def test_start_waits_for_a_lingering_server(tmp_path: Path) -> None:
    embedded.start_detached(tmp_path)
    info = (tmp_path / "pgdata" / "postmaster.pid").read_text().split()
    running = embedded.status(tmp_path)
    assert running is not None
    client = psycopg.connect(running.conninfo())
    # smart shutdown waits for the client, so the old server holds the lock files meanwhile
    os.kill(int(info[0]), signal.SIGTERM)
    closer = threading.Timer(1.5, client.close)
    closer.start()
    try:
        with embedded.running(tmp_path, fsync=False) as server:
            assert server.process is not None
            assert _version(server).startswith("PostgreSQL 18")
    finally:
        closer.join()
    assert "lock file" in (tmp_path / "postgres.log").read_text()


def test_start_waits_when_the_server_found_is_shutting_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race a quick restart meets: the pid file still said "ready" when we looked, but
    the server refuses connections because it is shutting down."""
    embedded.start_detached(tmp_path)
    stale = embedded.status(tmp_path)
    assert stale is not None
    pid = int((tmp_path / "pgdata" / "postmaster.pid").read_text().split()[0])
    client = psycopg.connect(stale.conninfo())
    os.kill(pid, signal.SIGTERM)  # smart shutdown: it waits for the client meanwhile
    while embedded.status(tmp_path) is not None:
        time.sleep(0.02)
    real_status = embedded.status
    looks: list[Path] = []

    def status_as_it_was(root: Path = Path(".loyalty")) -> embedded.Server | None:
        looks.append(root)
        return stale if len(looks) == 1 else real_status(root)

    monkeypatch.setattr(embedded, "status", status_as_it_was)
    closer = threading.Timer(1.0, client.close)
    closer.start()
    try:
        with embedded.running(tmp_path, fsync=False) as server:
            assert server.process is not None
            assert _version(server).startswith("PostgreSQL 18")
    finally:
        closer.join()
    assert len(looks) >= 2
