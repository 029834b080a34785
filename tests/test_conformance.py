"""The conformance cases (copied from shared/conformance) through the file pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

from loyalty_ledger.pipeline import state_cache
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


SMALL_CACHE_CASES = [CASES[0], CASES[5], CASES[8]]


@pytest.mark.parametrize("case", SMALL_CACHE_CASES, ids=[c.name for c in SMALL_CACHE_CASES])
def test_a_cache_of_two_states_does_not_change_the_result(
    case: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of 3 inputs and a state cache of 2 customers: most states are evicted and
    read back from their snapshots, batch after batch (one batch always in flight)."""
    monkeypatch.setattr(state_cache, "CACHE_CUSTOMERS_MAX", 2)
    ingest(database_url, case / "events.jsonl", case / "program.toml", batch_size=3)
    assert_matches(case, *export(database_url))
