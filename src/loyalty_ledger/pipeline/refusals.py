"""No poison pill: write a batch the database refused for one input's value without that input.

The shortest refused prefix of the batch, each prefix decided afresh from what
committed (decisions depend on order) and written in a transaction that is
rolled back, ends at the culprit; it becomes a dead letter of the same batch
with the database's reason, and the batch is decided and written again, with
its own source position. Repeated while another input is refused. Only called
after a refusal: the happy path pays nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from loyalty_ledger import log
from loyalty_ledger.pipeline.batch_rows import BatchRows
from loyalty_ledger.pipeline.types import Counts, Outcome
from loyalty_ledger.pipeline.writer import Writer
from loyalty_ledger.sources.line import Line
from loyalty_ledger.store.batch import InputRefused, RecordPosition


@dataclass(frozen=True, slots=True)
class Sent:
    """A batch as submitted: enough to decide it again without an input the database refused."""

    lines: Sequence[Line]
    record_position: RecordPosition
    counts: Counts  # what its decision counted
    outcomes: Sequence[Outcome]  # what its decision answered, input by input


@dataclass(frozen=True, slots=True)
class Rewrite:
    """What a rewrite works with: the pipeline's rows and writer, and how to empty its cache
    (every trial decides on the cache)."""

    rows: BatchRows
    writer: Writer
    forget: Callable[[], None]

    def __call__(self, sent: Sent, refused: InputRefused) -> tuple[Counts, list[Outcome]]:
        """Write `sent` without the input `refused` blames (and any other found so),
        dead-lettered with the database's reason; returns the correction to the batch's
        counts and the outcomes as written. Raises what is not an input's doing."""
        culprits: dict[int, str] = {}
        while True:
            at, refused = self._culprit(sent, culprits, refused)
            culprits[at] = refused.reason
            line = sent.lines[at]
            log.get("pipeline").warning("input_refused", source=line.source,
                                        position=line.position, reason=refused.reason)  # fmt: skip
            self.forget()
            work = self.rows.decide(sent.lines, sent.record_position, {}, culprits)
            try:
                self.writer.write_now(work.batch)
                break
            except InputRefused as again:  # another input: find it the same way
                refused = again
        return work.counts.since(sent.counts), work.outcomes

    def _culprit(
        self, sent: Sent, culprits: Mapping[int, str], refused: InputRefused
    ) -> tuple[int, InputRefused]:
        """The input ending the shortest refused prefix of the batch (earlier culprits
        dead-lettered), and what refused that prefix. By bisection: decisions depend on order,
        so each prefix is decided afresh; the empty one is taken, the whole batch is not."""
        taken, not_taken = 0, len(sent.lines)
        while not_taken - taken > 1:
            middle = (taken + not_taken) // 2
            self.forget()
            work = self.rows.decide(sent.lines[:middle], sent.record_position, {}, culprits)
            found = self.writer.trial(work.batch)
            if found is None:
                taken = middle
            else:
                not_taken, refused = middle, found
        at = not_taken - 1
        empty = self.rows.empty(sent.record_position)
        if at in culprits or (at == 0 and self.writer.trial(empty) is not None):
            # Refused whatever the inputs: not an input's doing, so as any other failure.
            raise refused.__cause__ or refused
        return at, refused
