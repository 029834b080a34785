"""The values a pipeline's parts share: its counts, its routing, and what it writes for."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, NamedTuple, Protocol

from loyalty_ledger.sources.line import FILE_STREAM


class Routing(Protocol):
    """Which tick stream each customer belongs to, and whether this pipeline may change it."""

    def stream_of(self, customer_id: str) -> str: ...

    def owns(self, customer_id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class OneStream:
    """Every customer in one stream, owned here: the file source."""

    stream: str = FILE_STREAM

    def stream_of(self, customer_id: str) -> str:
        return self.stream

    def owns(self, customer_id: str) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class Target:
    """What a pipeline writes for: the live generation, or a re-run into a candidate one."""

    generation_status: str  # what the writer's generation must be: live | candidate
    # Members (PII) are shared by every generation: a re-run leaves them to the live one.
    writes_members: bool
    # A re-run's inputs are in the live inbox already: dead-lettering one there would count
    # it twice, so a refused input fails the re-run instead.
    dead_letters_refused: bool
    # False: a preview. Nothing is written, so nothing is read back either: the store is
    # taken as empty, every state stays in memory and no snapshot is made.
    stored: bool = True


LIVE = Target("live", writes_members=True, dead_letters_refused=True)
RERUN = Target("candidate", writes_members=False, dead_letters_refused=False)
PREVIEW = Target("preview", writes_members=False, dead_letters_refused=False, stored=False)


@dataclass(slots=True)
class Counts:
    """What happened to a batch's (or a run's) inputs, and what they produced."""

    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    entries: int = 0
    commands: int = 0

    def add(self, other: Counts) -> None:
        self.accepted += other.accepted
        self.rejected += other.rejected
        self.duplicates += other.duplicates
        self.dead_lettered += other.dead_lettered
        self.entries += other.entries
        self.commands += other.commands

    @property
    def inputs(self) -> int:
        return self.accepted + self.rejected + self.duplicates + self.dead_lettered

    def since(self, before: Counts) -> Counts:
        """What changed from `before` to these counts (negative where they went down)."""
        return Counts(*(getattr(self, f.name) - getattr(before, f.name) for f in fields(Counts)))


Status = Literal["accepted", "rejected", "duplicate", "invalid"]


class Outcome(NamedTuple):
    """What became of one input of a batch, as its sender is answered once the batch commits.

    `balance` and `tier` are the customer's just after this input was decided (None for a
    tick, an invalid input or a duplicate, whose first outcome the inbox keeps)."""

    status: Status
    reason: str | None  # the rejection's or the dead letter's reason
    event_id: str | None
    customer_id: str | None
    balance: int | None = None
    tier: str | None = None
