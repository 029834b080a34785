"""The `loyalty` command as a user runs it: errors as one line, stdin, kill -9 in the middle."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from loyalty_ledger.store.db import connect
from support import CASES, LOYALTY, assert_matches, export, run

CASE = CASES[6]


def assert_one_line_error(done: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("loyalty: ") and fragment in lines[0], lines[0]


def test_malformed_program(cli_env: dict[str, str], tmp_path: Path) -> None:
    program = tmp_path / "p.toml"
    program.write_text((CASE / "program.toml").read_text() + "\n[earn2]\nx = 1\n")
    done = run(["ingest", str(CASE / "events.jsonl"), "--program", str(program)], cli_env)
    assert_one_line_error(done, "earn2")


def test_missing_input_file(cli_env: dict[str, str], tmp_path: Path) -> None:
    done = run(["ingest", str(tmp_path / "nope.jsonl"), "--program", str(CASE / "program.toml")],
               cli_env)  # fmt: skip
    assert_one_line_error(done, "nope.jsonl")


def test_missing_program_file(cli_env: dict[str, str], tmp_path: Path) -> None:
    done = run(["ingest", str(CASE / "events.jsonl"), "--program", str(tmp_path / "x.toml")],
               cli_env)  # fmt: skip
    assert_one_line_error(done, "x.toml")


def test_unreachable_database(tmp_path: Path) -> None:
    env = {**os.environ, "LOYALTY_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}
    done = run(["export", "summary"], env)
    assert_one_line_error(done, "cannot connect to postgresql://nobody@127.0.0.1:9/none")


def test_a_different_program_is_refused(cli_env: dict[str, str], tmp_path: Path) -> None:
    events = str(CASE / "events.jsonl")
    assert run(["ingest", events, "--program", str(CASE / "program.toml")], cli_env).returncode == 0
    other = CASES[0] / "program.toml"
    refused = run(["ingest", events, "--program", str(other)], cli_env)
    assert_one_line_error(refused, "loyalty program amend")  # from an instant on
    assert "loyalty rerun --as NAME" in refused.stderr  # or from the first event
    # Without --program the stored one is used; the same one again is fine too.
    assert run(["ingest", events], cli_env).returncode == 0
    assert run(["ingest", events, "--program", str(CASE / "program.toml")], cli_env).returncode == 0


def test_no_program_anywhere(cli_env: dict[str, str]) -> None:
    assert_one_line_error(run(["ingest", str(CASE / "events.jsonl")], cli_env), "--program")


def test_stdin_exports_and_dead_letters(cli_env: dict[str, str], database_url: str) -> None:
    events = (CASE / "events.jsonl").read_text()
    done = run(["ingest", "-", "--program", str(CASE / "program.toml")], cli_env, stdin=events)
    assert done.returncode == 0, done.stderr
    logged = json.loads(done.stderr.strip().splitlines()[-1])
    assert logged["event"] == "ingested"
    customers = run(["export", "customers"], cli_env)
    summary = run(["export", "summary"], cli_env)
    rows = [json.loads(line) for line in customers.stdout.splitlines()]
    assert [r["customer_id"] for r in rows] == sorted(r["customer_id"] for r in rows)
    assert_matches(CASE, rows, json.loads(summary.stdout))
    listing = run(["dlq", "list"], cli_env).stdout.splitlines()
    assert len(listing) == json.loads(summary.stdout)["dead_lettered"]
    assert all("stdin:" in line for line in listing)


def test_rebuild_command(cli_env: dict[str, str], database_url: str) -> None:
    run(["ingest", str(CASE / "events.jsonl"), "--program", str(CASE / "program.toml")], cli_env)
    assert run(["rebuild"], cli_env).returncode == 0
    assert_matches(CASE, *export(database_url))
    assert_one_line_error(run(["rebuild", "--projection", "nope"], cli_env), "nope")


def _position(url: str) -> int:
    with connect(url) as conn:
        row = conn.execute("SELECT coalesce(max(position), 0) FROM source_positions").fetchone()
        return int(row[0]) if row else 0


def test_kill_9_anywhere_then_again_equals_one_clean_run(
    cli_env: dict[str, str], database_url: str
) -> None:
    args = ["ingest", str(CASE / "events.jsonl"), "--program", str(CASE / "program.toml"),
            "--batch-size", "20"]  # fmt: skip
    rng = random.Random(9)
    kills = 0
    for _ in range(12):
        proc = subprocess.Popen([LOYALTY, *args], env=cli_env, stderr=subprocess.DEVNULL)
        # Kill at a random instant: before, during or between batch transactions.
        time.sleep(rng.uniform(0.3, 1.6))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        if _position(database_url) >= len((CASE / "events.jsonl").read_text().splitlines()):
            break
    assert kills >= 3, "the ingest finished before it could be killed: lower the batch size"
    done = run(args, cli_env)
    assert done.returncode == 0, done.stderr
    assert_matches(CASE, *export(database_url))


def test_kill_9_with_the_embedded_server(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LOYALTY_DATABASE_URL"}
    args = ["ingest", str(CASE / "events.jsonl"), "--program", str(CASE / "program.toml"),
            "--batch-size", "50"]  # fmt: skip
    proc = subprocess.Popen([LOYALTY, *args], env=env, cwd=tmp_path, stderr=subprocess.DEVNULL)
    time.sleep(2.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The server died with its parent; the next command starts it again and finishes the job.
    done = run(args, env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    customers = run(["export", "customers"], env, cwd=tmp_path)
    summary = run(["export", "summary"], env, cwd=tmp_path)
    assert customers.returncode == 0, customers.stderr
    rows = [json.loads(line) for line in customers.stdout.splitlines()]
    assert_matches(CASE, rows, json.loads(summary.stdout))


@pytest.mark.parametrize("args", [["frobnicate"], ["export"], ["ingest"]])
def test_bad_command_line(args: list[str]) -> None:
    done = run(args, dict(os.environ))
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_db_start_status_url_stop(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LOYALTY_DATABASE_URL"}
    assert run(["db", "status"], env, cwd=tmp_path).returncode == 3
    try:
        started = run(["db", "start"], env, cwd=tmp_path)
        assert started.returncode == 0, started.stderr
        url = run(["db", "url"], env, cwd=tmp_path).stdout.strip()
        assert url == started.stdout.strip()
        assert run(["db", "status"], env, cwd=tmp_path).stdout.startswith("running")
        # Commands attach to the running server and leave it running for the analyst.
        args = ["ingest", str(CASE / "events.jsonl"), "--program", str(CASE / "program.toml")]
        assert run(args, env, cwd=tmp_path).returncode == 0
        # A libpq URL, and the read models by their names alone, as in psql "$(loyalty db url)"
        assert url.startswith("postgresql://")
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM customers").fetchone()
            assert row is not None and row[0] > 0
    finally:
        stopped = run(["db", "stop"], env, cwd=tmp_path)
    assert stopped.stdout.strip() == "stopped"
    assert run(["db", "status"], env, cwd=tmp_path).returncode == 3


def test_progress_logs_count_lines(cli_env: dict[str, str]) -> None:
    """Off a terminal, progress is a JSON log line counting the file's lines, not its bytes."""
    events = CASE / "events.jsonl"
    done = run(["ingest", str(events), "--program", str(CASE / "program.toml")], cli_env)
    assert done.returncode == 0, done.stderr
    logged = [json.loads(line) for line in done.stderr.splitlines()]
    progress = [entry for entry in logged if entry["event"] == "progress"]
    lines = len(events.read_bytes().splitlines())
    assert progress[-1]["unit"] == "lines"
    assert progress[-1]["done"] == progress[-1]["total"] == lines
