"""Every subcommand driven with hostile arguments: one line on stderr and exit 2, never a
traceback; special files as input; Ctrl-C to the whole process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from loyalty_ledger.store.db import psycopg_url

LOYALTY = str(Path(sys.executable).with_name("loyalty"))
EXAMPLES = Path(__file__).parents[2] / "examples"
PROGRAM = str(EXAMPLES / "program.toml")
HUGE = "99999999999999999999"
NO_BROKER = "127.0.0.1:9"  # nothing listens on the discard port

# Refused by the command line itself: no database or broker is reached.
ARGUMENT_ERRORS = [
    ["frobnicate"],
    ["ingest"],
    ["ingest", "x.jsonl", "--batch-size", "0"],
    ["ingest", "x.jsonl", "--batch-size", HUGE],
    ["ingest", "x.jsonl", "--batch-size", "ten"],
    ["export", "nothing"],
    ["compare", "live", "main", "--limit", "-1"],
    ["compare", "live", "main", "--limit", HUGE],
    ["dlq", "list", "--limit", HUGE],
    ["dlq", "list", "--limit", "-5"],
    ["dlq", "list", "--status", "wat"],
    ["dlq", "show", "abc"],
    ["dlq", "show", "-1"],
    ["dlq", "show", HUGE],
    ["dlq", "discard", "1"],
    ["dlq", "redrive", "0"],
    ["offsets", "reset", "--to-offset", "-1"],
    ["offsets", "reset", "--to-offset", HUGE],
    ["offsets", "reset", "--partition", "-1", "--to-offset", "0"],
    ["report", "--top", "0"],
    ["report", "--top", HUGE],
    ["topics", "create", "--partitions", "0"],
    ["topics", "create", "--partitions", HUGE],
    ["consume", "--batch-size", "-1"],
    ["consume", "--batch-ms", "0"],
    ["consume", "--stop-when-idle", "nan"],
    ["consume", "--stop-when-idle", "-1"],
    ["consume", "--stop-when-idle", "inf"],
    ["tick"],
    ["db", "explode"],
    ["members", "erase"],
    ["statement"],
]


def run(args: list[str], env: dict[str, str], cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run([LOYALTY, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip


def assert_one_line(done: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loyalty: "), done.stderr
    return lines[0]


@pytest.mark.parametrize("args", ARGUMENT_ERRORS, ids=" ".join)
def test_a_bad_argument_is_one_line(args: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "LOYALTY_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}
    assert_one_line(run(args, env, cwd=tmp_path))


# Well-formed command lines naming things that are not there, or values out of range.
VALUE_ERRORS = [
    (["compare", "live", "nope"], "nope"),
    (["promote", "nope"], "nope"),
    (["export", "customers", "--generation", "nope"], "nope"),
    (["verify", "--generation", "\x1b[2J"], "generation"),
    (["rerun", "--program", PROGRAM, "--as", "Bad Name!"], "name"),
    (["rerun", "--program", PROGRAM, "--as", "x", "--until", "yesterday"], "--until"),
    (["rerun", "--program", "/nonexistent.toml", "--as", "x"], "nonexistent"),
    (["rerun", "--program", "/proc/self/mem", "--as", "x"], "mem"),
    (["rerun", "--program", "/tmp", "--as", "x"], "/tmp"),
    (["ingest", "-", "--program", "/dev/null"], "program"),
    (["dlq", "show", str(2**62)], "dead letter"),
    (["dlq", "discard", str(2**62), "--why", "x"], "dead letter"),
    (["statement", "nobody-\x1b[2J"], "nobody"),
    (["members", "erase", ""], "no customer"),
    (["offsets", "reset", "--to-time", "tomorrow"], "--to-time"),
    (["offsets", "reset", "--to-offset", "1", "--to-time", "2026-01-01T00:00Z"], "one of"),
    (["rebuild", "--projection", "../etc/passwd"], "passwd"),
    (["report", "--out", "/nonexistent/dir/r.html"], "nonexistent"),
    (["report", "--point-value", "-1"], "--point-value"),
    (["report", "--point-value", "NaN"], "--point-value"),
    (["tick", "--at", "soon", "--bootstrap", NO_BROKER], "--at"),
    (["ingest", "/nonexistent.jsonl", "--program", PROGRAM], "nonexistent"),
    (["ingest", "/tmp", "--program", PROGRAM], "directory"),
    (["ingest", "/proc/self/mem", "--program", PROGRAM], "/proc/self/mem"),
    (["produce", "/tmp", "--bootstrap", NO_BROKER], ""),
    (["schemas", "--dir", "/nonexistent"], "/nonexistent"),
    (["ledger", "anchor", "--generation", "nope"], "nope"),
    (["verify", "--anchor", "/nonexistent"], "/nonexistent"),
    (["verify", "--anchor", "/tmp"], "/tmp"),
    (["db", "grant-analyst", "bad name;drop"], "role name"),
    (["analytics", "refresh"], "program"),
    # an unreachable broker: one line naming the servers to check
    (["topics", "list", "--bootstrap", NO_BROKER], "--bootstrap"),
    (["consume", "--bootstrap", NO_BROKER, "--program", PROGRAM], "--bootstrap"),
    (["tick", "--at", "2026-01-01T00:00Z", "--bootstrap", NO_BROKER], "--bootstrap"),
]


@pytest.mark.parametrize(("args", "fragment"), VALUE_ERRORS, ids=lambda v: repr(v)[:40])
def test_a_bad_value_is_one_line(
    args: list[str], fragment: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    line = assert_one_line(run(args, cli_env, cwd=tmp_path))
    assert fragment in line
    assert "\x1b" not in line  # a terminal control sequence never reaches the screen raw


def test_dev_null_and_a_fifo_are_read_as_streams(cli_env: dict[str, str], tmp_path: Path) -> None:
    done = run(["ingest", "/dev/null", "--program", PROGRAM], cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    fifo = tmp_path / "inputs"
    os.mkfifo(fifo)
    proc = subprocess.Popen([LOYALTY, "ingest", str(fifo)], env=cli_env, cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    with fifo.open("wb") as writer:
        writer.write((EXAMPLES / "events.jsonl").read_bytes())
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert '"accepted": 0' not in err.splitlines()[-1]


def test_an_endless_line_is_one_dead_letter(cli_env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    with path.open("wb") as out:
        out.write(b'{"x": "' + b"a" * (5 * 1024 * 1024) + b'"}\n')
        out.write((EXAMPLES / "events.jsonl").read_bytes().splitlines(keepends=True)[0])
    done = run(["ingest", str(path), "--program", PROGRAM], cli_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    listing = run(["dlq", "list"], cli_env, cwd=tmp_path)
    assert "too large" in listing.stdout and listing.stdout.count("\n") == 1


def test_ctrl_c_to_the_process_group_says_interrupted(tmp_path: Path) -> None:
    """The embedded server runs in a session of its own: the terminal's Ctrl-C reaches only
    the command, which rolls back and stops the server itself."""
    env = {k: v for k, v in os.environ.items() if k != "LOYALTY_DATABASE_URL"}
    stream = tmp_path / "endless"
    os.mkfifo(stream)
    proc = subprocess.Popen([LOYALTY, "ingest", str(stream), "--program", PROGRAM], env=env,
                            cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    # The command opens its input once the server is up and migrated: this open returns then.
    with stream.open("wb") as writer:
        writer.write((EXAMPLES / "events.jsonl").read_bytes())
        writer.flush()
        time.sleep(1)  # the first batch waits for more lines: the writer is still open
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert err.strip().splitlines()[-1].startswith("loyalty: interrupted"), err


def test_the_embedded_server_checks_passwords(tmp_path: Path) -> None:
    """Only the owner logs in without a password; an analyst's password is checked."""
    env = {k: v for k, v in os.environ.items() if k != "LOYALTY_DATABASE_URL"}
    try:
        started = run(["db", "start"], env, cwd=tmp_path)
        assert started.returncode == 0, started.stderr
        url = make_url(started.stdout.strip())
        done = run(["db", "grant-analyst", "ana", "--password", "s3cret"], env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        for password, ok in ((None, False), ("wrong", False), ("s3cret", True)):
            as_ana = url.set(username="ana", password=password)
            conninfo = psycopg_url(as_ana.render_as_string(hide_password=False))
            if ok:
                psycopg.connect(conninfo).close()
            else:
                with pytest.raises(psycopg.OperationalError):
                    psycopg.connect(conninfo).close()
    finally:
        run(["db", "stop"], env, cwd=tmp_path)
