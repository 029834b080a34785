"""Re-runs under a program history: `loyalty rerun --as NAME --amend FILE@INSTANT`.

On case 12 (two amendments, 609 lines). A re-run with the live generation's amendments
gives the live generation again; a re-run may also amend the past, which `loyalty
program amend` refuses, and then gives what the split stream under the amendments gives
(the contract's expected results).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import PgServer, twin_database
from loyalty_ledger.admin import exports
from loyalty_ledger.admin.compare import compare
from loyalty_ledger.generations import amendments
from loyalty_ledger.generations import catalog as generations
from loyalty_ledger.generations.catalog import GenerationError
from loyalty_ledger.generations.rerun import rerun
from loyalty_ledger.program import program_hash
from loyalty_ledger.projectors import runner
from loyalty_ledger.store.db import connect
from support import (
    AMENDED_CASES,
    amendments_of,
    assert_matches,
    export,
    ingest,
    ingest_amended,
    run,
)

CASE = next(case for case in AMENDED_CASES if case.name == "case-12")
PROGRAM = CASE / "program.toml"
AMENDMENTS = amendments_of(CASE)
AMEND_ARGS = [arg for at, path in AMENDMENTS for arg in ("--amend", f"{path}@{at}")]


def exports_of(url: str, name: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    with connect(url, schema=generations.schema_of(name)) as conn:
        runner.catch_up(conn)
        return list(exports.customers(conn)), exports.summary(conn)


def versions_of(url: str, name: str) -> list[tuple[Any, str]]:
    """(effective_at, hash) of each version of a generation, the original first."""
    with connect(url) as conn:
        return [(v.effective_at, v.program_hash) for v in amendments.versions(conn, name)]


def compared(env: dict[str, str], other: str) -> dict[str, Any]:
    done = run(["compare", "live", other, "--json"], env)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_rerun_with_the_live_amendments_equals_the_amended_live_generation(
    database_url: str, cli_env: dict[str, str], tmp_path: Path
) -> None:
    ingest_amended(database_url, CASE, tmp_path)  # live: part, amend, part, amend, part
    done = run(["rerun", "--as", "again", "--program", str(PROGRAM), *AMEND_ARGS], cli_env)
    assert done.returncode == 0, done.stderr
    text = run(["compare", "live", "again"], cli_env)
    assert text.returncode == 0, text.stderr
    assert "\n0 customers differ in balance or tier\n" in text.stdout, text.stdout
    report = compared(cli_env, "again")
    assert report["customers_different"] == 0 and report["largest_differences"] == []
    # compare shows each side's versions: the original and one line per amendment
    assert report["a"]["versions"] == report["b"]["versions"]
    assert len(report["a"]["versions"]) == len(versions_of(database_url, "main"))
    assert "program versions" in text.stdout and "  original  " in text.stdout
    assert versions_of(database_url, "again") == versions_of(database_url, "main")
    assert exports_of(database_url, "again") == export(database_url)  # every field
    # Without --amend a re-run takes the live generation's history as it is.
    done = run(["rerun", "--as", "same"], cli_env)
    assert done.returncode == 0, done.stderr
    assert compared(cli_env, "same")["customers_different"] == 0
    assert versions_of(database_url, "same") == versions_of(database_url, "main")


def test_rerun_may_amend_the_past_and_gives_the_contract(
    database_url: str, cli_env: dict[str, str], pg_server: PgServer, template_db: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    """Live: the whole stream under program.toml, never amended. An amendment from an
    instant already applied is refused; a re-run with it replays every input under the
    history, late inputs by max(clock, occurred_at) as the split stream decides them."""
    ingest(database_url, CASE / "events.jsonl", PROGRAM)
    at, path = AMENDMENTS[0]
    refused = run(["program", "amend", str(path), "--effective-at", at], cli_env)
    assert refused.returncode == 2 and "already applied" in refused.stderr, refused.stderr
    done = run(["rerun", "--as", "amended", *AMEND_ARGS], cli_env)
    assert done.returncode == 0, done.stderr

    got = exports_of(database_url, "amended")
    assert_matches(CASE, *got)
    with twin_database(pg_server, template_db) as split:  # the conformance checker's way
        ingest_amended(split, CASE, tmp_path)
        assert got == export(split)
    report = compared(cli_env, "amended")
    assert report["customers_different"] > 0, "the amendments change some balance or tier"
    want = [(None, program_hash(PROGRAM.read_text()))] + [
        (datetime.fromisoformat(at), program_hash(p.read_text())) for at, p in AMENDMENTS
    ]
    assert versions_of(database_url, "amended") == want
    assert versions_of(database_url, "main") == want[:1]  # the live one was only read


def test_an_amendment_before_every_input_is_the_program_replaced(
    database_url: str, pg_server: PgServer, template_db: str
) -> None:
    """From before the first input on, the amendment decides everything: the same as a
    fresh ingest under it alone (the original only ever decided nothing)."""
    _, replacement = AMENDMENTS[0]
    ingest(database_url, CASE / "events.jsonl", PROGRAM)
    long_ago = datetime.fromisoformat("2000-01-01T00:00:00+00:00")
    with connect(database_url) as conn:
        rerun(conn, None, "p", "replaced", None, amend=[(long_ago, replacement.read_text(), "a")])
    with twin_database(pg_server, template_db) as fresh:
        ingest(fresh, CASE / "events.jsonl", replacement)
        assert exports_of(database_url, "replaced") == export(fresh)


def test_a_rerun_resumes_only_with_the_same_amendments(database_url: str) -> None:
    ingest(database_url, CASE / "events.jsonl", PROGRAM)
    (at_1, path_1), (at_2, path_2) = AMENDMENTS
    first = [(datetime.fromisoformat(at_1), path_1.read_text(), str(path_1))]
    with connect(database_url) as conn:
        rerun(conn, None, "p", "what_if", None, amend=first)
        _, again = rerun(conn, None, "p", "what_if", None, amend=first)  # resumed: all done
        assert again.inputs == 0
        other = [(datetime.fromisoformat(at_2), path_2.read_text(), str(path_2))]
        with pytest.raises(GenerationError, match="other amendments"):
            rerun(conn, None, "p", "what_if", None, amend=other)
        assert compare(conn, "live", "what_if").customers_different > 0


def test_a_rerun_of_a_ledger_without_a_program_asks_for_one(database_url: str) -> None:
    """Nothing ingested: no history to take (this was a KeyError, an internal error)."""
    with connect(database_url) as conn, pytest.raises(GenerationError, match="--program PATH"):
        rerun(conn, None, "p", "what_if", None)
    with connect(database_url) as conn:
        assert [g.name for g in generations.listing(conn)] == ["main"]
