"""A real `loyalty serve` in a subprocess for the HTTP tests, with a key of every scope."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import psycopg
import pytest

from conftest import PgServer, twin_database
from loyalty_ledger.admin import api_keys
from loyalty_ledger.store.db import psycopg_url
from support import LOYALTY, example_program_v1_file

READY_TIMEOUT_S = 30.0
T = TypeVar("T")


@dataclass
class Served:
    """A running server: its base URL, its process and a key of each scope."""

    url: str
    process: subprocess.Popen[bytes]
    keys: dict[str, str]  # scope -> key
    log_path: Path

    def client(self, scope: str = "admin", timeout_s: float = 30.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=timeout_s,
            headers={"Authorization": f"Bearer {self.keys[scope]}"},
        )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        """Signal the server and wait for it; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout_s)


def make_keys(database_url: str) -> dict[str, str]:
    """A key of every scope, named after it."""
    with psycopg.connect(psycopg_url(database_url), autocommit=True) as conn:
        return {
            scope.value: api_keys.create(conn, f"test-{scope.value}", scope)[1]  # type: ignore[arg-type]
            for scope in api_keys.Scope
        }


@contextmanager
def served(
    database_url: str,
    program: Path | None,
    log_dir: Path,
    *,
    keys: dict[str, str] | None = None,
    args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Iterator[Served]:
    """`loyalty serve` on a port the system chose, over `database_url`, ready; stopped
    afterwards."""
    keys = keys if keys is not None else make_keys(database_url)
    command = [LOYALTY, "serve", "--port", "0", *args]
    if program is not None:
        command += ["--program", str(program)]
    server = spawn(command, {"LOYALTY_DATABASE_URL": database_url, **(env or {})},
                   log_dir / f"serve-{uuid.uuid4().hex[:8]}.log", keys)  # fmt: skip
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()
        server.process.wait(30)


def spawn(command: Sequence[str], env: dict[str, str], log_path: Path,
          keys: dict[str, str]) -> Served:  # fmt: skip
    """`command` (a `loyalty serve --port 0`) started and ready: the server on the port its
    log names. Port 0, not a port probed free beforehand: two servers started at once (or a
    client's ephemeral port) could take a probed port between the probe and the bind, and a
    test would then talk to another test's server."""
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )  # fmt: skip
    server = Served("", process, keys, log_path)
    try:
        server.url = f"http://127.0.0.1:{_serving_port(server)}"
        wait_ready(server)
    except BaseException:
        process.kill()
        process.wait(30)
        raise
    return server


def _serving_port(server: Served) -> int:
    """The port the server's "serving" log line names."""
    return _waited(server, "serving", lambda: _logged_port(server.log()))


def wait_ready(server: Served) -> None:
    """Until /readyz answers 200."""
    _waited(server, "ready", lambda: _ready(server.url) or None)


def _logged_port(log: str) -> int | None:
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line being written, or not the log's
            continue
        if record.get("event") == "serving":
            port: int = record["port"]
            return port
    return None


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _waited(server: Served, what: str, probe: Callable[[], T | None]) -> T:
    """What `probe` gives once it gives something; fails with the server's log if the
    server exits first or READY_TIMEOUT_S pass."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            code = server.process.returncode
            raise AssertionError(f"loyalty serve exited {code}:\n{server.log()}")
        found = probe()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"loyalty serve not {what} in {READY_TIMEOUT_S} s:\n{server.log()}")


@contextmanager
def module_server(
    pg_server: PgServer, template_db: str, log_dir: Path, program: Path
) -> Iterator[tuple[Served, str]]:
    """One server over a database of its own, for a test module's tests to share; the
    server and its URL. Its ledger anchors go beside its log."""
    anchors = {"LOYALTY_ANCHOR_FILE": str(log_dir / "anchors.jsonl")}
    with twin_database(pg_server, template_db) as url, \
            served(url, program, log_dir, env=anchors) as server:  # fmt: skip
        yield server, url


@pytest.fixture(scope="module", name="shared")
def shared_examples_server(
    pg_server: PgServer, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Served, str]]:
    """A module's `shared` fixture (import it): one server under the example program (its
    version 1 part: purchase points credited at once) over a database of its own."""
    log_dir = tmp_path_factory.mktemp("serve")
    program = example_program_v1_file(log_dir)
    with module_server(pg_server, template_db, log_dir, program) as shared:
        yield shared
