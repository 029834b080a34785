"""`loyalty program show | diff | amend | history`; `loyalty ingest --program` after an amendment.

On case 12 (two amendments): its part 1 ingested under program.toml, as the conformance
checker feeds it, so every input applied is earlier than the first effective_at.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from loyalty_ledger.program import program_hash
from loyalty_ledger.store.db import connect
from support import (
    AMENDED_CASES,
    amendments_of,
    assert_matches,
    cli_in_process,
    export,
    ingest,
    run,
    write_parts,
)

CASE = next(case for case in AMENDED_CASES if case.name == "case-12")
PROGRAM = CASE / "program.toml"
(AT_1, AMENDMENT_1), (AT_2, AMENDMENT_2) = amendments_of(CASE)
Run = tuple[int, str, str]


@pytest.fixture
def parts(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[Path]:  # fmt: skip
    """Case 12's parts; part 1 ingested. The commands in this process work on that ledger."""
    monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)
    monkeypatch.setenv("LOYALTY_OPERATOR", "alice")
    found = write_parts(CASE, tmp_path)
    ingest(database_url, found[0], PROGRAM)
    return found


def loyalty(capsys: pytest.CaptureFixture[str], *args: str | Path) -> Run:
    return cli_in_process([str(a) for a in args], capsys)


def refused(done: Run, *fragments: str) -> str:
    """The one line of a refusal (exit 2), which names each fragment."""
    code, out, err = done
    assert code == 2 and out == "", (code, out, err)
    assert err.startswith("loyalty: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def short_hash(path: Path) -> str:
    return program_hash(path.read_text(encoding="utf-8"))[:12]


def amendment_rows(url: str) -> list[tuple[datetime, str]]:
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT effective_at, program_hash FROM program_amendments ORDER BY effective_at"
        ).fetchall()
        counted = conn.execute("SELECT amendments FROM generations WHERE name = 'main'")
        assert counted.fetchone() == (len(rows),), "the count batches check is the rows'"
    return [(at, digest) for at, digest in rows]


def latest_applied(url: str) -> datetime:
    with connect(url) as conn:
        row = conn.execute("SELECT max(occurred_at) FROM inbox").fetchone()
    assert row is not None and row[0] is not None
    return row[0]  # type: ignore[no-any-return]


def test_show_and_history_list_every_version(
    parts: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    original = ["original", short_hash(PROGRAM), "Bean There"]
    assert loyalty(capsys, "program", "show") == (0, "\t".join(original) + "\n", "")
    code, out, _ = loyalty(capsys, "program", "history")
    assert code == 0
    (line,) = out.splitlines()
    assert line.split("\t")[:3] == original
    assert line.endswith("\tadopted by the first ingest")

    assert loyalty(capsys, "program", "amend", AMENDMENT_1, "--effective-at", AT_1)[0] == 0
    code, out, _ = loyalty(capsys, "program", "show")
    shown = [line.split("\t") for line in out.splitlines()]
    assert code == 0 and len(shown) == 2 and shown[0] == original
    assert datetime.fromisoformat(shown[1][0]) == datetime.fromisoformat(AT_1)  # the instant
    assert shown[1][1:] == [short_hash(AMENDMENT_1), "Bean There"]
    code, out, _ = loyalty(capsys, "program", "history")
    history = [line.split("\t") for line in out.splitlines()]
    assert code == 0 and [h[:3] for h in history] == shown
    recorded = [datetime.fromisoformat(h[3].removeprefix("recorded ")) for h in history]
    assert recorded == sorted(recorded) and all(r.tzinfo for r in recorded)
    assert history[1][4] == "alice"  # who recorded it: LOYALTY_OPERATOR, else the login


def test_show_before_any_program(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)
    code, out, _ = loyalty(capsys, "program", "show")
    assert code == 0 and out.startswith("no program yet")
    refused(loyalty(capsys, "program", "amend", AMENDMENT_1, "--effective-at", AT_1),
            "no program to amend yet")  # fmt: skip


def test_diff_names_each_changed_value_by_section(
    parts: list[Path], database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = loyalty(capsys, "program", "diff", AMENDMENT_1)
    assert code == 0
    head, *lines = out.splitlines()
    assert head == "changes from the original:"
    assert [line.strip().split(":")[0] for line in lines] == [
        "[pending]",
        "[rewards].sticker.cost",
        "[stamp_cards].visit-card",
        "[tiers].levels.gold.min_spend",
        "[tiers].levels.platinum.min_spend",
        "[tiers].levels.platinum.multiplier",
        "[tiers].levels.silver.min_spend",
    ]
    assert "  [rewards].sticker.cost: 60 -> 75" in lines
    assert "  [stamp_cards].visit-card: removed" in lines
    assert loyalty(capsys, "program", "diff", PROGRAM) == (0, "no change from the original\n", "")

    loyalty(capsys, "program", "amend", AMENDMENT_1, "--effective-at", AT_1)
    code, out, _ = loyalty(capsys, "program", "diff", AMENDMENT_2)  # against the latest version
    head, *lines = out.splitlines()
    assert code == 0 and head.startswith("changes from the version from ")
    assert datetime.fromisoformat(head.split()[-1].rstrip(":")) == datetime.fromisoformat(AT_1)
    assert "  [expiry].months: 0 -> 12" in lines
    assert any(line.startswith("  [stamp_cards].visit-card: added ") for line in lines)
    assert len(amendment_rows(database_url)) == 1  # diff only shows


@pytest.mark.parametrize("when", ["at", "before"])
def test_amend_refuses_an_instant_already_applied(
    when: str, parts: list[Path], database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    latest = latest_applied(database_url)
    at = latest.isoformat() if when == "at" else "2021-06-01T00:00:00+02:00"
    line = refused(loyalty(capsys, "program", "amend", AMENDMENT_1, "--effective-at", at),
                   "the latest instant already applied", "loyalty rerun --as")  # fmt: skip
    named = [datetime.fromisoformat(m) for m in re.findall(r"\d{4}-\d\d-\d\dT[^ ,]+", line)]
    assert named == [datetime.fromisoformat(at), latest], line
    assert amendment_rows(database_url) == []
    # One microsecond after the latest instant is the future: accepted.
    after = (latest + timedelta(microseconds=1)).isoformat()
    assert loyalty(capsys, "program", "amend", AMENDMENT_1, "--effective-at", after)[0] == 0


def _changed(path: Path, old: str, new: str) -> str:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    return text.replace(old, new)


def _without_tiers(path: Path) -> str:
    """The program without [tiers] (and the campaign's tier condition, which needs them)."""
    kept, skipping = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            skipping = line in ("[tiers]", "[[tiers.levels]]")
        if not skipping and not line.startswith("tiers = "):
            kept.append(line)
    return "\n".join(kept) + "\n"


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("[program] currency", lambda p: _changed(p, 'currency = "USD"', 'currency = "EUR"')),
        ("[program] timezone", lambda p: _changed(p, "America/New_York", "Europe/Paris")),
        ("whether it has [tiers]", _without_tiers),
    ],
    ids=["currency", "timezone", "tiers"],
)
def test_amend_refuses_what_makes_another_program(
    what: str, change: object, parts: list[Path], database_url: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert callable(change)
    other = tmp_path / "other.toml"
    other.write_text(change(AMENDMENT_1))
    refused(loyalty(capsys, "program", "amend", other, "--effective-at", AT_1),
            str(other), what, "loyalty rerun --as")  # fmt: skip
    assert amendment_rows(database_url) == []


def test_amend_is_idempotent(
    parts: list[Path], database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = loyalty(capsys, "program", "amend", AMENDMENT_1, "--effective-at", AT_1)
    assert code == 0 and out.startswith("amended: Bean There (")
    recorded = amendment_rows(database_url)
    with connect(database_url) as conn:
        due = conn.execute("SELECT customer_id, next_due_at FROM customer_state").fetchall()
    # The same file from the same instant, written with another offset: nothing new.
    same_instant = datetime.fromisoformat(AT_1).astimezone(datetime.fromisoformat(
        "2000-01-01T00:00:00+09:00").tzinfo).isoformat()  # fmt: skip
    for at in (AT_1, same_instant):
        code, out, _ = loyalty(capsys, "program", "amend", AMENDMENT_1, "--effective-at", at)
        assert code == 0 and out.startswith("unchanged: Bean There ("), out
        assert short_hash(AMENDMENT_1) in out
    assert amendment_rows(database_url) == recorded
    with connect(database_url) as conn:
        assert conn.execute("SELECT customer_id, next_due_at FROM customer_state").fetchall() \
            == due  # fmt: skip
    # Another program from that instant is not the same amendment.
    refused(loyalty(capsys, "program", "amend", AMENDMENT_2, "--effective-at", AT_1),
            "already recorded")  # fmt: skip
    assert amendment_rows(database_url) == recorded


def test_ingest_with_another_program_names_both_ways_out(
    parts: list[Path], database_url: str, cli_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    loyalty(capsys, "program", "amend", AMENDMENT_1, "--effective-at", AT_1)
    other = AMENDED_CASES[0] / "program.toml"
    before = export(database_url)
    # As a user runs it: a process of its own, one line, exit 2.
    done = run(["ingest", str(parts[1]), "--program", str(other)], cli_env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"loyalty: {other} differs from the program"), line
    assert "loyalty program amend" in line and "loyalty rerun --as" in line, line
    assert export(database_url) == before, "a refused ingest applies nothing"
    # The original program, or a version of the history, go on under the whole history.
    for program in (PROGRAM, AMENDMENT_1):
        assert loyalty(capsys, "ingest", parts[1], "--program", program)[0] == 0
    assert loyalty(capsys, "program", "amend", AMENDMENT_2, "--effective-at", AT_2)[0] == 0
    assert loyalty(capsys, "ingest", parts[2])[0] == 0
    assert_matches(CASE, *export(database_url))
