"""`loyalty rerun --preview`: decided in memory, compared with live as the re-run it previews
would be, and nothing written."""

from __future__ import annotations

import gc
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty_ledger.admin.compare import Comparison, against_preview, as_json, compare
from loyalty_ledger.events import EVENT_TYPES
from loyalty_ledger.generations import preview as preview_module
from loyalty_ledger.generations.preview import PreviewTooLarge, preview, shard_customers
from loyalty_ledger.generations.rerun import rerun
from loyalty_ledger.pipeline import collector
from loyalty_ledger.projectors import runner
from loyalty_ledger.store.db import connect
from support import (
    AMENDED_CASES,
    CASES,
    LOYALTY,
    ingest,
    ingest_amended,
    median_instant,
    run,
)

EVERY_CASE = CASES + AMENDED_CASES


def _changed(program: str) -> str:
    """The program earning half as many points again, where it says how many it earns."""
    for line in program.splitlines():
        if line.startswith("points_per_unit"):
            value = line.split("=", 1)[1].strip().strip('"')
            return program.replace(line, f'points_per_unit = "{float(value) * 1.5:g}"', 1)
    return program


def _as_preview(comparison: Comparison) -> dict[str, Any]:
    """The comparison as JSON, its second side named as a preview names it."""
    found = as_json(comparison)
    found["b"].update(generation="preview", status="preview")
    return found


def _both(
    url: str, program: str | None, until: datetime | None, name: str, processes: int
) -> tuple[Any, Any]:
    """(compare live with a re-run into `name`, live beside a preview of the same re-run)."""
    with connect(url) as conn:
        previewed = preview(conn, program, "test program", until, processes=processes)
        assert previewed.processes == processes
        rerun(conn, program, "test program", name, until)
        runner.catch_up(conn)
        return (_as_preview(compare(conn, "live", name, limit=1000)),
                as_json(against_preview(conn, "live", previewed, limit=1000)))  # fmt: skip


# Every case with the customers apart in three processes (the in-process shard included);
# the single-process path on a version 1, a version 2 and an amended case (suite time).
RUNS = [(case, 3) for case in EVERY_CASE] + [(c, 1) for c in (CASES[4], CASES[10],
                                                               AMENDED_CASES[0])]


@pytest.mark.parametrize(("case", "processes"), RUNS,
                         ids=lambda v: v.name if isinstance(v, Path) else f"{v}p")  # fmt: skip
def test_a_preview_compares_with_live_as_the_rerun_it_previews(
    database_url: str, case: Path, tmp_path: Path, processes: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In one process, and with the customers apart in three (linked ones together)."""
    monkeypatch.setattr(preview_module, "INPUTS_PER_PROCESS_MIN", 1)  # the cases are small
    if case in AMENDED_CASES:
        ingest_amended(database_url, case, tmp_path)
    else:
        ingest(database_url, case / "events.jsonl", case / "program.toml")
    program = _changed((case / "program.toml").read_text(encoding="utf-8"))
    rerun_side, preview_side = _both(database_url, program, None, "whole", processes)
    assert preview_side == rerun_side
    until = median_instant(database_url)
    # the live program history (amendments too), only the inputs up to the median
    rerun_side, preview_side = _both(database_url, None, until, "half", processes)
    assert preview_side == rerun_side
    assert preview_side["customers_different"] > 0, "half the inputs change something"


def _footprint(url: str) -> tuple[Any, ...]:
    with connect(url) as conn:
        return tuple(conn.execute(query).fetchall() for query in (
            "SELECT name, status FROM public.generations ORDER BY name",
            "SELECT nspname FROM pg_namespace ORDER BY nspname",
            "SELECT count(*), max(seq) FROM gen_main.ledger",
            "SELECT count(*) FROM public.programs",
        ))  # fmt: skip


def test_the_command_prints_the_comparison_and_writes_nothing(cli_env: dict[str, str]) -> None:
    url, case = cli_env["LOYALTY_DATABASE_URL"], CASES[4]
    ingest(url, case / "events.jsonl", case / "program.toml")
    before = _footprint(url)
    until = median_instant(url).isoformat()
    done = run(["rerun", "--preview", "--until", until], cli_env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("preview: ") and "nothing written" in done.stdout
    assert "customers differ in balance or tier" in done.stdout
    as_json_ = run(["rerun", "--preview", "--until", until, "--json"], cli_env)
    assert json.loads(as_json_.stdout)["b"]["status"] == "preview"
    assert _footprint(url) == before


@pytest.mark.parametrize("args", [
    ["rerun", "--preview", "--as", "x"],  # a preview makes no generation to name
    ["rerun"],  # neither
    ["rerun", "--preview", "--until", "yesterday"],
    ["rerun", "--as", "x", "--json"],  # --json goes with --preview
    ["rerun", "--preview", "--processes", "0"],
])  # fmt: skip
def test_a_bad_preview_command_is_one_line_and_exit_2(
    cli_env: dict[str, str], args: list[str]
) -> None:
    done = run(args, cli_env)
    assert done.returncode == 2, done
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert LOYALTY  # the venv's command ran


def test_the_collector_is_off_inside_and_back_after_even_on_an_error() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector.off():
        assert not gc.isenabled()
        raise RuntimeError("out")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector.off():
            pass
        assert not gc.isenabled(), "a collector off before stays off"
    finally:
        gc.enable()



customer_ids = st.sampled_from([f"c{i}" for i in range(30)])


def _components(customers: set[str], links: list[list[str]]) -> list[set[str]]:
    """Connected components by a plain search: the union-find's reference."""
    neighbours: dict[str, set[str]] = {c: set() for c in customers}
    for named in links:
        for a in named:
            neighbours[a].update(named)
    found: list[set[str]] = []
    left = set(customers)
    while left:
        todo, group = [left.pop()], set()
        while todo:
            c = todo.pop()
            group.add(c)
            todo += [n for n in neighbours[c] if n not in group]
        left -= group
        found.append(group)
    return found


@given(
    counts=st.dictionaries(customer_ids, st.integers(1, 50)),
    links=st.lists(st.lists(customer_ids, min_size=0, max_size=3), max_size=25),
    processes=st.integers(1, 4),
)
def test_linked_customers_share_a_shard_and_the_load_is_spread(
    counts: dict[str, int], links: list[list[str]], processes: int
) -> None:
    shard_of = shard_customers(counts, links, processes)
    customers = set(counts) | {c for named in links for c in named}
    assert set(shard_of) == customers
    assert set(shard_of.values()) <= set(range(processes))
    groups = _components(customers, links)
    for group in groups:
        assert len({shard_of[c] for c in group}) == 1, group
    load = [sum(n for c, n in counts.items() if shard_of[c] == s) for s in range(processes)]
    largest = max((sum(counts.get(c, 0) for c in g) for g in groups), default=0)
    # greedy, largest group first: no shard above the mean by more than one group
    assert max(load) <= sum(counts.values()) / processes + largest


def test_a_preview_too_large_for_memory_is_refused_in_one_line(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, case = cli_env["LOYALTY_DATABASE_URL"], CASES[0]
    ingest(url, case / "events.jsonl", case / "program.toml")
    monkeypatch.setattr(preview_module, "CUSTOMERS_MAX", 3)
    with connect(url) as conn, pytest.raises(PreviewTooLarge, match="rerun --as NAME"):
        preview(conn, None, "test program", None)


@pytest.mark.parametrize("processes", [1, 3])
def test_every_process_reads_up_to_the_arrival_fixed_at_the_start(
    database_url: str, monkeypatch: pytest.MonkeyPatch, processes: int
) -> None:
    """Live keeps consuming during a preview: what arrives after its start is not read."""
    case = CASES[4]
    ingest(database_url, case / "events.jsonl", case / "program.toml")
    monkeypatch.setattr(preview_module, "INPUTS_PER_PROCESS_MIN", 1)
    with connect(database_url) as conn:
        row = conn.execute("SELECT max(arrival) / 2 FROM inbox").fetchone()
        assert row is not None
        start = int(row[0])
        monkeypatch.setattr(preview_module, "last_arrival", lambda _conn, _live: start)
        previewed = preview(conn, None, "test program", None, processes=processes)
        read = conn.execute(
            "SELECT count(*) FROM inbox WHERE arrival <= %s AND event_type = ANY(%s)",
            (start, list(EVENT_TYPES)),
        ).fetchone()
    assert previewed.processes == processes
    assert previewed.arrival <= start and read is not None
    assert previewed.tally.inputs == read[0]


def test_a_preview_with_a_new_amendment_compares_as_the_rerun_with_it(database_url: str) -> None:
    """--amend FILE@T: the versions are labelled as the re-run's, whatever zone T is in."""
    case = CASES[4]
    ingest(database_url, case / "events.jsonl", case / "program.toml")
    program = (case / "program.toml").read_text(encoding="utf-8")
    at = median_instant(database_url).astimezone(timezone(timedelta(hours=2)))
    amend = [(at, _changed(program), "richer.toml")]
    assert amend[0][1] != program
    with connect(database_url) as conn:
        previewed = preview(conn, None, "test program", None, amend=amend)
        rerun(conn, None, "test program", "amended", None, amend=amend)
        runner.catch_up(conn)
        want = _as_preview(compare(conn, "live", "amended", limit=1000))
        got = as_json(against_preview(conn, "live", previewed, limit=1000))
    assert len(got["b"]["versions"]) == 2
    assert got == want
