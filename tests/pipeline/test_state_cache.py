"""state_cache: the customer state cache, its batch overlay and erasure invalidation."""

from __future__ import annotations

from dataclasses import replace
from typing import cast

import pytest

from loyalty_ledger.admin.erasure import erase
from loyalty_ledger.engine import CustomerState, compile_rules
from loyalty_ledger.generations import programs
from loyalty_ledger.pipeline import Pipeline, state_cache
from loyalty_ledger.pipeline.admit import decode
from loyalty_ledger.pipeline.state_cache import Book, StateCache
from loyalty_ledger.sources.line import Line
from loyalty_ledger.store.db import Connection, connect
from support import CASES

NO_DATABASE = cast(Connection, object())  # for what never reads (None: a preview)


class ByPrefix:
    def stream_of(self, customer_id: str) -> str:
        return customer_id[0]

    def owns(self, customer_id: str) -> bool:
        return True


def _cache(*ids: str) -> StateCache:
    cache = StateCache(NO_DATABASE, ByPrefix())
    cache.merge({c: CustomerState(c) for c in ids}, dict.fromkeys(ids))
    return cache


def test_the_book_reads_the_overlay_over_the_cache() -> None:
    cache = _cache("a1", "b1")
    mine = CustomerState("a1", version=3)
    book = cache.book({"a1": mine, "c1": CustomerState("c1")})
    assert book["a1"] is mine and book.get("a1") is mine
    assert book["b1"] is cache.states["b1"]
    assert book.get("zz") is None and book.get("zz", 5) == 5
    assert "c1" in book and "zz" not in book
    assert sorted(book) == ["a1", "b1", "c1"] and len(book) == 3
    with pytest.raises(KeyError):
        book["zz"]
    assert isinstance(book, Book)


def test_forget_drops_everything_or_only_the_streams_named() -> None:
    cache = _cache("a1", "a2", "b1")
    states, due = cache.states, cache.due
    cache.forget(["a"])
    assert set(cache.states) == set(cache.due) == {"b1"}
    cache.forget()
    assert cache.states == cache.due == {}
    assert cache.states is states and cache.due is due  # holders keep seeing the cache


def test_merge_evicts_the_least_recently_decided_past_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(state_cache, "CACHE_CUSTOMERS_MAX", 3)
    cache = _cache("a1", "a2")
    cache.merge({"b1": CustomerState("b1")}, {"b1": None})
    assert list(cache.states) == ["a1", "a2", "b1"]
    cache.merge({"a1": CustomerState("a1"), "b2": CustomerState("b2")}, {"a1": None, "b2": None})
    assert list(cache.states) == ["b1", "a1", "b2"]  # a2 was the least recent
    assert set(cache.due) == set(cache.states)
    batch = {f"c{i}": CustomerState(f"c{i}") for i in range(5)}
    cache.merge(batch, dict.fromkeys(batch))
    # a batch bigger than the bound stays whole: it is in flight, its snapshots not yet stored
    assert list(cache.states) == list(batch) and set(cache.due) == set(cache.states)


def test_a_previews_cache_keeps_every_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """A preview writes no snapshot: an evicted state would be lost, so none is."""
    monkeypatch.setattr(state_cache, "CACHE_CUSTOMERS_MAX", 3)
    cache = StateCache(None, ByPrefix())
    for i in range(10):
        cache.merge({f"c{i}": CustomerState(f"c{i}")}, {f"c{i}": None})
    assert len(cache.states) == len(cache.due) == 10
    cache.load({"c0", "x"})  # nothing stored to read: no query, nothing changed
    cache.forget_erased()
    assert len(cache.states) == 10


def test_preload_reads_stored_states_and_erasure_drops_them(database_url: str) -> None:
    case = CASES[0]
    raws = (case / "events.jsonl").read_bytes().splitlines()
    lines = [Line("file:x", i, raw) for i, raw in enumerate(raws, 1)]
    with connect(database_url) as conn:
        program = programs.adopt(conn, (case / "program.toml").read_text(), "program")
        pipeline = Pipeline(conn, compile_rules(program))
        try:
            pipeline.process(lines, lambda _conn: None)
        finally:
            pipeline.close()
        cache = StateCache(conn, ByPrefix())
        cache.forget_erased()  # none yet: nothing to drop, and the clock moves on
        cache.preload(decode(line) for line in lines)
        assert set(cache.states) == set(pipeline.cache)
        for customer_id, state in cache.states.items():
            assert _fields(state) == _fields(pipeline.cache[customer_id])
        assert cache.due.keys() == cache.states.keys()
        erase(conn, "c0004")
        cache.forget_erased()
        assert "c0004" not in cache.states and "c0004" not in cache.due
        cache.forget_erased()  # an erasure is dropped once: what loads again is scrubbed
        cache.load({"c0004"})
        assert cache.states["c0004"].birth_date is None


def _fields(state: CustomerState) -> CustomerState:
    """The state but for its tick count: catch-ups change cached states in place, unsaved."""
    return replace(state, ticks_seen=0)
