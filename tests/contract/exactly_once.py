"""The exactly-once contract every input path keeps, as one abstract test case.

Like eventsourcing's recorder tests, which one base class runs against every
backend, `ExactlyOnceContract` holds the tests and each input path subclasses
it (test_paths.py): the file source, the Kafka source, the re-run, the
dead-letter redrive and the HTTP API. A subclass says only how its path is fed
and run and what it counts as "fed"; the guarantees are the same for all:

- every input lands in exactly one place (inbox, duplicates, dead letters):
  nothing lost, nothing doubled, duplicate event ids applied once;
- running the path again changes nothing;
- a kill -9 inside a batch's transaction, or right after its commit, then a
  restart, gives exactly what one uninterrupted run gives, row for row;
- an input that cannot be read is kept with its reason, and the rest goes on.

Faults are scheduled by events, never by the clock (a loaded machine must not
change what a test proves): the `loyalty` command runs in a child whose
store.batch is wrapped to `os._exit(137)` at the Nth batch, either after the
ledger rows were copied inside the open transaction ("mid") or right after the
commit ("after").
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from conftest import PgServer, twin_database
from loyalty_ledger.store.db import Connection, connect
from support import CASES, ledger_dump, projections_dump

CASE = CASES[1]  # malformed lines and resends among its first lines
PROGRAM = CASE / "program.toml"
STREAM_LINES = 240  # of the case: enough batches for every crash below, quick to run
BATCH = "20"  # inputs per batch: 13 batches, room for every crash below
RUN_TIMEOUT_S = 180.0
# (where, at which batch of that life): inside a transaction, after a commit, and again.
LIVES = (("mid", 3), ("after", 2), ("mid", 1), ("after", 1))

CRASHING = """
import os, sys
from loyalty_ledger import cli
from loyalty_ledger.store import batch

where, nth = os.environ["CRASH_WHERE"], int(os.environ["CRASH_AT_BATCH"])
exec(os.environ.get("CONTRACT_PATCH", ""))  # a path's own setting, e.g. a smaller batch
calls = 0

def due():
    global calls
    calls += 1
    return nth > 0 and calls >= nth

if where == "mid":  # the ledger rows are copied inside the open transaction: none commit
    copy_ledger = batch._copy_ledger
    def crashing(*args, **kwargs):
        head = copy_ledger(*args, **kwargs)
        if due():
            os._exit(137)
        return head
    batch._copy_ledger = crashing
else:  # the batch has committed; whatever the path does after it is lost
    write = batch.write
    def crashing(*args, **kwargs):
        write(*args, **kwargs)
        if due():
            os._exit(137)
    batch.write = crashing
sys.exit(cli.main(sys.argv[1:]))
"""


def stream_lines() -> list[bytes]:
    """The case's first lines, five of them resent (same event ids), and one broken line."""
    lines = [line for line in (CASE / "events.jsonl").read_bytes().splitlines() if line.strip()]
    lines = lines[:STREAM_LINES]
    # Ticks are not resent: on Kafka a tick is the partition's clock, not a customer's input.
    resent = [line for line in lines[10:30] if b'"type": "tick"' not in line][:5]
    return [*lines, *resent, b'{"type": "purchase", "event_id": "cut-off"']


def resent_ids() -> list[str]:
    return [json.loads(line)["event_id"] for line in stream_lines()[-6:-1]]


@dataclass(frozen=True)
class Outcome:
    """What a run leaves, compared row for row between a crashed run and a clean one."""

    ledger: list[tuple[Any, ...]]
    read_models: dict[str, list[tuple[Any, ...]]]
    landed: int


class ExactlyOnceContract(ABC):
    """The tests; a subclass per input path supplies how that path is fed and run."""

    # A path's patch for the child (Python source), e.g. a smaller redrive batch.
    patch: ClassVar[str] = ""

    folder: Path
    env: dict[str, str]

    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path: Path) -> None:
        self.folder = tmp_path
        (tmp_path / "stream.jsonl").write_bytes(b"\n".join(stream_lines()) + b"\n")
        self.env = {**os.environ}

    @property
    def stream(self) -> Path:
        return self.folder / "stream.jsonl"

    # ------------------------------------------------------------ what a path supplies

    def feed(self) -> None:  # noqa: B027 - optional: most paths are fed per database
        """Once per test, before any database is prepared (the Kafka topic)."""

    @abstractmethod
    def prepare(self, url: str) -> None:
        """Bring the database at `url` to where this path starts (e.g. a live generation)."""

    @abstractmethod
    def argv(self, url: str) -> list[str]:
        """The `loyalty` command line of one run of this path against `url`."""

    @abstractmethod
    def fed(self, conn: Connection) -> int:
        """How many inputs this path was given."""

    @abstractmethod
    def landed(self, conn: Connection) -> int:
        """How many of them are in exactly one place (inbox, duplicates, dead letters)."""

    def use_target(self, conn: Connection) -> None:  # noqa: B027 - the live one by default
        """Point `conn` at the generation this path writes."""

    # ------------------------------------------------------------ running it

    def child(self, url: str, crash: tuple[str, int] | None) -> tuple[list[str], dict[str, str]]:
        """The crashing child's command line and environment for one life against `url`."""
        where, nth = crash or ("after", 0)
        index = hashlib.sha256(url.encode()).hexdigest()[:8]  # anchors of its own per database
        env = {**self.env, "LOYALTY_DATABASE_URL": url, "CRASH_WHERE": where,
               "CRASH_AT_BATCH": str(nth), "CONTRACT_PATCH": self.patch,
               "LOYALTY_ANCHOR_FILE": str(self.folder / f"anchors-{index}.jsonl")}  # fmt: skip
        return [sys.executable, "-c", CRASHING, *self.argv(url)], env

    def run(self, url: str, crash: tuple[str, int] | None = None) -> int:
        """One life of the path; its exit code (137: the planned crash happened)."""
        command, env = self.child(url, crash)
        done = subprocess.run(
            command, env=env, stdin=subprocess.DEVNULL, capture_output=True,
            timeout=RUN_TIMEOUT_S,
        )  # fmt: skip
        if crash is None:
            assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
        return done.returncode

    def outcome(self, url: str) -> Outcome:
        with connect(url) as conn:
            self.use_target(conn)
            from loyalty_ledger.projectors import runner

            runner.catch_up(conn)
            # Without `seq`: an identity, and a transaction the kill rolled back leaves a gap
            # in it (PostgreSQL's sequences are not transactional). The order is the same.
            ledger = [row[1:] for row in ledger_dump(conn)]
            return Outcome(ledger, projections_dump(conn), self.landed(conn))

    @pytest.fixture
    def twin(self, pg_server: PgServer) -> Iterator[str]:
        with twin_database(pg_server) as url:
            yield url

    # ------------------------------------------------------------ the contract

    def test_every_input_lands_once_and_again_changes_nothing(self, database_url: str) -> None:
        self.feed()
        self.prepare(database_url)
        self.run(database_url)
        first = self.outcome(database_url)
        with connect(database_url) as conn:
            self.use_target(conn)
            assert first.landed == self.fed(conn) > 0
            self.check_duplicates(conn)
            self.check_dead_letters(conn)
        self.run(database_url)
        assert self.outcome(database_url) == first

    def test_kill_9_mid_batch_and_after_commit_then_resume_equals_one_clean_run(
        self, database_url: str, twin: str
    ) -> None:
        self.feed()
        self.prepare(twin)
        self.run(twin)
        self.prepare(database_url)
        for life, crash in enumerate(LIVES):
            code = self.run(database_url, crash)
            assert code == 137, f"life {life}: no crash at {crash} (exit {code})"
        self.run(database_url)
        mine, clean = self.outcome(database_url), self.outcome(twin)
        assert mine.landed == clean.landed
        assert mine.read_models == clean.read_models
        assert len(mine.ledger) == len(clean.ledger)
        for a, b in zip(mine.ledger, clean.ledger, strict=True):
            assert a == b
        self.check_resumed(database_url, twin)

    def check_resumed(self, url: str, clean_url: str) -> None:  # noqa: B027 - optional
        """What else a path's crashed-then-resumed run at `url` shares with the clean one."""

    def check_duplicates(self, conn: Connection) -> None:
        """Each resent event is in the inbox once and recorded as a duplicate per resend."""
        sent = [json.loads(line).get("event_id") for line in stream_lines()[:-1]]
        for event_id in resent_ids():
            row = conn.execute(
                "SELECT (SELECT count(*) FROM inbox WHERE event_id = %(id)s),"
                " (SELECT count(*) FROM duplicates WHERE event_id = %(id)s AND same_body)",
                {"id": event_id},
            ).fetchone()
            assert row == (1, sent.count(event_id) - 1), event_id

    def check_dead_letters(self, conn: Connection) -> None:
        row = conn.execute(
            "SELECT reason FROM dead_letters WHERE raw = %s", (stream_lines()[-1],)
        ).fetchone()
        assert row is not None and row[0], "the broken line is not kept with a reason"
        accepted = conn.execute("SELECT count(*) FROM inbox").fetchone()
        assert accepted is not None and accepted[0] > len(stream_lines()) * 0.9, "it stopped"
