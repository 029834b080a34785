"""`loyalty rerun --preview`: a re-run decided in memory and tallied, nothing written.

A what-if asks how the books would stand under another program; the analyst
waits for the answer. A re-run answers it by writing a whole generation (inbox,
ledger, hash chain, snapshots, projections), which is what `promote` needs and
what costs most. A preview feeds the same inputs, in the same order, through the
same decision path (pipeline/preview.py) and folds the rows a re-run would
write into the figures `compare` shows (tally.py). It creates nothing, so there
is nothing to resume, verify or promote: run the re-run for that.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from loyalty_ledger.generations import amendments
from loyalty_ledger.generations import catalog as generations
from loyalty_ledger.generations.rerun import (
    compiled,
    last_arrival,
    next_inputs,
    program_history,
    replay_routing,
)
from loyalty_ledger.generations.tally import Tally
from loyalty_ledger.pipeline import collector
from loyalty_ledger.pipeline.preview import Preview
from loyalty_ledger.program import program_hash
from loyalty_ledger.progress import Progress
from loyalty_ledger.sources.line import Line
from loyalty_ledger.store.db import Connection


@dataclass(frozen=True, slots=True)
class Previewed:
    """What a preview found: the tally, and the program versions it decided under."""

    tally: Tally
    parent: str  # the generation whose inbox was replayed
    program_hash: str
    versions: dict[str, str]  # "original" or the effective_at -> the program's hash
    until_at: datetime | None
    arrival: int  # the parent's inbox, replayed up to here
    seconds: float


def preview(
    conn: Connection,
    program_source: str | None,
    program_origin: str,
    until_at: datetime | None,
    progress: Progress | None = None,
    amend: Sequence[tuple[datetime, str, str]] = (),
) -> Previewed:
    """Decide the live inbox (up to `until_at`) under a program history, as `rerun` would,
    and tally it; `program_source` and `amend` as for `rerun`."""
    started = time.perf_counter()
    live = generations.live(conn)
    source, program, later = program_history(conn, live, program_source, program_origin, amend)
    routing, streams = replay_routing(conn, live)
    tally = Tally()
    pipeline = Preview(compiled(program, later), routing, tally.add)
    after = 0
    upto = last_arrival(conn, live)
    with collector.off():
        while rows := next_inputs(conn, live, after, until_at):
            after = rows[-1][0]
            pipeline.submit([Line(source_, position, raw.encode(), streams(source_))
                             for _arrival, source_, position, raw in rows])  # fmt: skip
            if progress:
                progress(after, max(upto, after))
    return Previewed(
        tally, live.name, program_hash(source), _versions(conn, live.name, source, later),
        until_at, after, time.perf_counter() - started,
    )  # fmt: skip


def _versions(
    conn: Connection, live: str, source: str, later: list[tuple[datetime, str]]
) -> dict[str, str]:
    """The preview's versions, labelled as `compare` labels the live one's: an instant the
    live generation has takes its label (the same instant, in the server's time zone)."""
    labels = {v.effective_at: v.label for v in amendments.versions(conn, live)}
    found = {"original": program_hash(source)}
    for at, text in later:
        found[labels.get(at) or at.isoformat()] = program_hash(text)
    return found

