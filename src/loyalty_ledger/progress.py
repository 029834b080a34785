"""Progress of long operations: a rich bar with rate and ETA on a terminal, else JSON log lines."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, ProgressColumn, Task, TaskProgressColumn, TimeRemainingColumn
from rich.progress import Progress as Bar
from rich.text import Text

from loyalty_ledger import log

Progress = Callable[[int, int | None], None]  # done so far, and in all (None: unknown)
LOG_EVERY_S = 5.0  # off a terminal: a progress line this often, and one at the end


@contextmanager
def reporting(label: str, unit: str = "", terminal: bool = True) -> Iterator[Progress]:
    if not terminal:
        yield _logging(label, unit)
        return
    columns = (BarColumn(), TaskProgressColumn(), _Rate(unit), TimeRemainingColumn())
    with Bar("[progress.description]{task.description}", *columns, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _logging(label: str, unit: str) -> Progress:
    logger = log.get("progress").bind(task=label, unit=unit or None)
    started = last = time.monotonic()

    def update(done: int, total: int | None) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < LOG_EVERY_S and done != total:
            return
        last = now
        per_s = round(done / (now - started)) if now > started else None
        logger.info("progress", done=done, total=total, per_s=per_s)

    return update


class _Rate(ProgressColumn):
    """Items per second (rich's own speed column counts bytes)."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = f" {unit}/s" if unit else "/s"

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(
            "" if speed is None else f"{speed:,.0f}{self.unit}", style="progress.data.speed"
        )
