"""The conformance cases (copied from shared/conformance) through the file pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import AMENDED_CASES, CASES, assert_matches, export, ingest, ingest_amended


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_matches_the_contract(case: Path, database_url: str) -> None:
    ingest(database_url, case / "events.jsonl", case / "program.toml")
    assert_matches(case, *export(database_url))


@pytest.mark.parametrize("case", AMENDED_CASES, ids=[c.name for c in AMENDED_CASES])
def test_amended_case_matches_the_contract(case: Path, database_url: str, tmp_path: Path) -> None:
    """As ../shared/conformance/check feeds it: part 1 under program.toml, then `loyalty
    program amend` and the next part, once per amendment."""
    ingest_amended(database_url, case, tmp_path)
    assert_matches(case, *export(database_url))


@pytest.mark.parametrize("batch_size", [1, 7, 100000])
def test_batch_size_does_not_change_the_result(batch_size: int, database_url: str) -> None:
    case = CASES[6]
    ingest(database_url, case / "events.jsonl", case / "program.toml", batch_size=batch_size)
    assert_matches(case, *export(database_url))
