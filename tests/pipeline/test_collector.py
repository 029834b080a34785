"""The pipeline's collector thresholds: raised for the process, never lowered."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from loyalty_ledger.pipeline import collector


@pytest.fixture(autouse=True)
def _thresholds_restored() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_tune_raises_the_defaults() -> None:
    gc.set_threshold(700, 10, 10)
    collector.tune()
    assert gc.get_threshold() == (
        collector.YOUNG_ALLOCATIONS, collector.YOUNG_PER_MIDDLE, collector.MIDDLE_PER_FULL
    )


def test_tune_keeps_higher_thresholds_and_a_disabled_collector() -> None:
    gc.set_threshold(10**6, 50, 1000)
    collector.tune()
    assert gc.get_threshold() == (10**6, 50, 1000)
    gc.set_threshold(0)
    collector.tune()
    assert gc.get_threshold()[0] == 0
