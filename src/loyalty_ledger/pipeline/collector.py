"""How often CPython's cyclic garbage collector runs while a pipeline decides.

Deciding allocates millions of small objects per batch (events, states, entries,
rows), and the state cache keeps tens of thousands of states alive. With the default
thresholds (a young collection every 700 allocations, older ones every 10 of those)
the collector traversed them over and over and took about half of decode + decide
(benchmarks/LEVERS.md). None of those objects form cycles, so the collector has
almost nothing to find: it runs 70 times less often, and reference counting frees the
rest as before.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_ALLOCATIONS = 50_000  # net allocations between two young collections (default 700)
YOUNG_PER_MIDDLE = 20  # young collections between two of the middle generation (default 10)
MIDDLE_PER_FULL = 100  # middle-generation collections between two full ones (default 10)


def tune() -> None:
    """Collect less often, for the rest of the process; a threshold already higher (set by
    an embedding program) is kept."""
    young, middle, full = gc.get_threshold()
    if young == 0:  # the collector is off: leave it so
        return
    gc.set_threshold(
        max(young, YOUNG_ALLOCATIONS), max(middle, YOUNG_PER_MIDDLE), max(full, MIDDLE_PER_FULL)
    )


@contextmanager
def off() -> Iterator[None]:
    """No collection at all inside: for a bounded run that keeps what it makes in memory
    (a preview's states), where even the rare collections traversed every kept object
    over and over (a fifth of a preview, measured). Reference counting frees the rest as
    ever; the collector resumes as it was after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
