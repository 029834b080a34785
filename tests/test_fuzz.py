"""No poison pills: a seeded corpus of hostile lines through the file and a one-partition topic.

Every non-blank line is counted exactly once (accepted, rejected, duplicate or dead-lettered),
no command prints a traceback, `verify` passes, a dead letter keeps its bytes, and a second
run changes nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from fuzz_corpus import MIB, corpus, non_blank
from loyalty_ledger.kafka.settings import KafkaSettings
from loyalty_ledger.kafka.topics import create_topics
from loyalty_ledger.runtime.consume import ConsumeOptions, consume
from loyalty_ledger.runtime.produce import produce_file
from loyalty_ledger.store.db import connect

LOYALTY = str(Path(sys.executable).with_name("loyalty"))
PROGRAM = Path(__file__).parents[1] / "examples" / "program.toml"
SEED, LINES = 20261202, 3000


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([LOYALTY, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    return done


def counted(summary: dict[str, Any]) -> int:
    return (
        sum(summary["accepted"].values())
        + sum(summary["rejected"].values())
        + summary["duplicates"]
        + summary["dead_lettered"]
    )


def write_corpus(path: Path) -> tuple[list[bytes], int]:
    lines = corpus(SEED, LINES)
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(data)
    return lines, non_blank(data)


def assert_dead_letters_keep_their_bytes(url: str, lines: list[bytes]) -> None:
    """Every line up to 1 MiB that was dead-lettered is stored byte for byte."""
    with connect(url) as conn:
        rows = conn.execute("SELECT position, raw FROM dead_letters").fetchall()
    assert rows
    by_position = {int(p): bytes(raw) for p, raw in rows}
    physical = b"\n".join(lines).split(b"\n")  # positions are line numbers in the file
    for position, raw in by_position.items():
        original = physical[position - 1].rstrip(b"\r")
        if len(original) <= MIB:
            assert raw == original, position


def test_the_corpus_through_a_file(cli_env: dict[str, str], database_url: str,
                                   tmp_path: Path) -> None:  # fmt: skip
    path = tmp_path / "hostile.jsonl"
    lines, inputs = write_corpus(path)
    done = run(["ingest", str(path), "--program", str(PROGRAM), "--batch-size", "700"],
               cli_env, tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(run(["export", "summary"], cli_env, tmp_path).stdout)
    assert counted(summary) == inputs
    assert summary["dead_lettered"] > LINES // 4 and sum(summary["accepted"].values()) > 100
    verified = run(["verify"], cli_env, tmp_path)
    assert verified.returncode == 0, verified.stdout[-2000:]
    assert_dead_letters_keep_their_bytes(database_url, lines)
    for command in (["dlq", "list", "--limit", "5000"], ["export", "customers"]):
        shown = run(command, cli_env, tmp_path)
        assert shown.returncode == 0 and "\x1b" not in shown.stdout
    again = run(["ingest", str(path)], cli_env, tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(run(["export", "summary"], cli_env, tmp_path).stdout) == summary


def test_the_corpus_through_one_partition(
    cli_env: dict[str, str], database_url: str, kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    path = tmp_path / "hostile.jsonl"
    _, inputs = write_corpus(path)
    create_topics(kafka_settings, 1)
    produce_file(kafka_settings, str(path))
    options = ConsumeOptions(group=f"g-{kafka_settings.prefix}", batch_size=700, batch_ms=200,
                             stop_when_idle_s=4)  # a group of its own (see test_consume.py)
    with connect(database_url) as conn:
        consume(conn, kafka_settings, options, PROGRAM.read_text(encoding="utf-8"))
    summary = json.loads(run(["export", "summary"], cli_env, tmp_path).stdout)
    assert counted(summary) == inputs
    verified = run(["verify"], cli_env, tmp_path)
    assert verified.returncode == 0, verified.stdout[-2000:]
