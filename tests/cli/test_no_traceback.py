"""Every subcommand, found by walking the parser (a new command is covered without a line
here), driven with missing, wrong and hostile arguments: one line on stderr, exit 2 (1 where
the README says so), never a traceback.

In process through `main(argv)`, so the whole file stays fast; test_cli_hostile.py runs a few
of the same through the installed `loyalty` script.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import PgServer, twin_database
from loyalty_ledger.cli import main, parser
from loyalty_ledger.kafka import topics
from support import cli_in_process

EXAMPLES = Path(__file__).parents[2] / "examples"
HUGE = "99999999999999999999"
NO_DATABASE = "postgresql://nobody@127.0.0.1:1/x"
NO_BROKER = "127.0.0.1:1"
BROKER_WAIT_S = 0.5
CONTROL = "\x1b[2J"  # a terminal control sequence: never reaches the screen raw

# A value a filled-in command line gives each argument by its dest; anything else gets "x".
SAMPLES = {
    "path": str(EXAMPLES / "events.jsonl"),
    "program": str(EXAMPLES / "program.toml"),
    "as_name": "what_if",
    "a": "live",
    "b": "live",
    "at": "2026-01-01T00:00Z",
}
FILES = {"path", "program", "anchor", "out", "dir"}  # dests that name a file or a folder
INSTANTS = {"until", "to_time", "at"}

# Commands that reach no server, with the exit code a filled-in command line has there.
SERVERLESS = {"db stop": 0, "db status": 3, "db url": 0}
# `db start` starts a server and leaves it running: test_cli_hostile.py drives it.
SKIPPED = {"db start"}
# `schemas` exits 1 when the folder's files drifted from the models (an empty one), as `verify`
# does for a broken chain (README).
EXIT_1 = {("schemas", "dir")}


@dataclass(frozen=True)
class Leaf:
    """One runnable command: its words (`dlq show`) and its own parser."""

    words: tuple[str, ...]
    parser: argparse.ArgumentParser

    @property
    def name(self) -> str:
        return " ".join(self.words)

    def arguments(self) -> list[argparse.Action]:
        return [a for a in self.parser._actions if not isinstance(a, argparse._HelpAction)]

    def filled(self, without: argparse.Action | None = None) -> list[str]:
        """The words plus a value for every required argument (but `without`)."""
        argv = list(self.words)
        for action in self.arguments():
            if action is without or not _needed(action):
                continue
            argv += [*action.option_strings[:1], _sample(action)]
        return argv


def _positional(action: argparse.Action) -> bool:
    return not action.option_strings


def _needed(action: argparse.Action) -> bool:
    """argparse marks a `nargs="*"` positional required, yet accepts it absent."""
    return (action.required or _positional(action)) and action.nargs != "*"


def _sample(action: argparse.Action) -> str:
    if action.choices:
        return str(next(iter(action.choices)))
    if action.type is not None:
        return "1"
    return SAMPLES.get(action.dest, "x")


def leaves(top: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> Iterator[Leaf]:
    """Every runnable command under `top`, depth first."""
    subs = [a for a in top._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield Leaf(words, top)
        return
    for name, child in subs[0].choices.items():
        yield from leaves(child, (*words, name))


LEAVES = [leaf for leaf in leaves(parser()) if leaf.name not in SKIPPED]


def test_the_walk_finds_every_command() -> None:
    names = {leaf.name for leaf in leaves(parser())}
    assert {"ingest", "dlq redrive", "db grant-analyst", "topics create", "tick"} <= names
    assert len(names) >= 30


def assert_one_line(code: int, err: str, expected: int = 2) -> str:
    assert "Traceback" not in err, err
    assert code == expected, (code, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "internal error" not in lines[0] and "\x1b" not in lines[0], lines[0]
    if expected == 2:
        assert lines[0].startswith("loyalty: "), lines[0]
    return lines[0]


def refused_by_argparse(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """argparse exits 2 itself, before main's handlers: one line, no usage block."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    _, err = capsys.readouterr()
    code = exited.value.code
    return assert_one_line(code if isinstance(code, int) else 1, err)


# ------------------------------------------------------------------ the command line itself


def _wrong_values(action: argparse.Action) -> list[str]:
    if action.choices:
        return ["wat", ""]
    if action.type is not None:  # the range-checked numbers and seconds
        return ["-1", HUGE, "ten", "nan", "inf", ""]
    return []


@pytest.mark.parametrize("leaf", LEAVES, ids=lambda leaf: leaf.name)
def test_missing_and_wrong_arguments(leaf: Leaf, capsys: pytest.CaptureFixture[str]) -> None:
    refused_by_argparse([*leaf.filled(), "--no-such-option"], capsys)
    refused_by_argparse([*leaf.filled(), "--help=x"], capsys)
    for action in leaf.arguments():
        if _needed(action):
            refused_by_argparse(leaf.filled(without=action), capsys)
        for value in _wrong_values(action):
            argv = leaf.filled(without=action)
            refused_by_argparse([*argv, *action.option_strings[:1], value], capsys)
        if action.nargs == 0 and action.option_strings:  # a flag takes no value
            refused_by_argparse([*leaf.filled(), f"{action.option_strings[0]}=yes"], capsys)


# ------------------------------------------------------------------ hostile values


def _hostile_values(action: argparse.Action, tmp_path: Path) -> list[str]:
    """Values that name nothing there is: unknown names, bad instants, no file, a folder."""
    if action.choices or action.type is not None or action.nargs == 0:
        return []
    if action.dest in FILES:
        return [str(tmp_path / "nonexistent" / "x"), str(tmp_path), "/dev/null/x"]
    if action.dest in INSTANTS:
        return ["yesterday", "2026-01-01T00:00", "2026-13-01T00:00Z", CONTROL]
    return ["nope", CONTROL, ""]


def variants(leaf: Leaf, tmp_path: Path) -> Iterator[list[str]]:
    """The filled-in command line, then one argument at a time made hostile."""
    yield leaf.filled()
    for action in leaf.arguments():
        for value in _hostile_values(action, tmp_path):
            yield [*leaf.filled(without=action), *action.option_strings[:1], value]


def _expected(leaf: Leaf, argv: list[str]) -> int:
    if leaf.name in SERVERLESS and argv == leaf.filled():
        return SERVERLESS[leaf.name]
    return 2


@pytest.mark.parametrize("leaf", LEAVES, ids=lambda leaf: leaf.name)
def test_unreachable_servers(
    leaf: Leaf,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No database and no broker: every command line, hostile or not, ends in one line."""
    monkeypatch.setenv("LOYALTY_DATABASE_URL", NO_DATABASE)
    monkeypatch.setenv("LOYALTY_KAFKA_BOOTSTRAP", NO_BROKER)
    monkeypatch.chdir(tmp_path)  # `db stop`, `db status` look for ./.loyalty/: none here
    # Nothing listens on port 1: a shorter wait for the broker's metadata fails the same way.
    monkeypatch.setattr(topics, "METADATA_TIMEOUT_S", BROKER_WAIT_S)
    for argv in variants(leaf, tmp_path):
        code, _, err = cli_in_process(argv, capsys)
        expected = _expected(leaf, argv)
        if expected == 2 or code != expected:
            assert_one_line(code, err, _exit_code(leaf, argv, expected))


def _exit_code(leaf: Leaf, argv: list[str], expected: int) -> int:
    """1 for a check that found a difference: `schemas --dir` on a folder whose files drifted."""
    for words, dest in EXIT_1:
        if leaf.name == words and argv[-2:-1] == [f"--{dest}"] and Path(argv[-1]).is_dir():
            return 1
    return expected


# ------------------------------------------------------------------ a real, empty database

# Dests whose value must name something the database holds (or be a well-formed name).
NAMES = {"generation", "name", "a", "b", "as_name", "customer_id", "projection"}
# Name what the command creates: only a malformed name is refused.
NEW_NAMES = {("rerun", "as_name"), ("db grant-analyst", "name"), ("api-keys create", "name")}
# Given a name that is not there, these succeed: erasing nobody is idempotent.
ACCEPTED = {("members erase", "customer_id")}
# Reach a broker (unreachable here, as above) or start a server: covered above.
BROKERS = {"topics create", "topics list", "produce", "consume", "status", "tick"}


@pytest.fixture(scope="module")
def empty_database(pg_server: PgServer, template_db: str) -> Iterator[str]:
    """One migrated database for every command below: each is refused, so none changes it."""
    with twin_database(pg_server, template_db) as url:
        yield url


@pytest.mark.parametrize(
    "leaf", [leaf for leaf in LEAVES if leaf.name not in BROKERS | set(SERVERLESS)],
    ids=lambda leaf: leaf.name,
)  # fmt: skip
def test_unknown_names_in_a_real_database(
    leaf: Leaf,
    empty_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A migrated, empty database: an unknown or malformed name is one line and exit 2."""
    monkeypatch.setenv("LOYALTY_DATABASE_URL", empty_database)
    monkeypatch.chdir(tmp_path)
    for action in leaf.arguments():
        if action.dest not in NAMES or (leaf.name, action.dest) in ACCEPTED:
            continue
        malformed = (CONTROL, "../etc/passwd")
        for value in malformed if (leaf.name, action.dest) in NEW_NAMES else ("nope", *malformed):
            argv = [*leaf.filled(without=action), *action.option_strings[:1], value]
            code, _, err = cli_in_process(argv, capsys)
            assert_one_line(code, err)
