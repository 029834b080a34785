"""`loyalty ingest`: a JSON Lines file through the pipeline, a transaction per batch, resumable."""

from __future__ import annotations

import contextlib
import time
from functools import partial

from loyalty_ledger import log
from loyalty_ledger.generations import amendments, programs
from loyalty_ledger.pipeline import Counts, Pipeline
from loyalty_ledger.program import Program
from loyalty_ledger.progress import Progress
from loyalty_ledger.projectors import runner
from loyalty_ledger.sources import file as file_source
from loyalty_ledger.store import locks, reads
from loyalty_ledger.store.batch import Position, ProgramAmended, write_file_position
from loyalty_ledger.store.db import Connection

BATCH_SIZE = 20_000  # measured: fewer, larger transactions beat 5,000 by a third


def ingest_file(
    conn: Connection,
    path: str,
    program_source: str | None,
    program_origin: str = "program",
    batch_size: int = BATCH_SIZE,
    progress: Progress | None = None,
) -> Counts:
    """Ingest `path` (`-`: stdin) under the given or stored program; returns the totals.

    An amendment recorded meanwhile refuses the batch in flight (ProgramAmended): the file
    is read again from the position that committed, under the new history."""
    logger = log.get("ingest")
    total = Counts()
    started = time.perf_counter()
    with locks.one_file_writer(conn):
        program = programs.adopt(conn, program_source, program_origin)
        while True:
            try:
                _ingest(conn, path, program, batch_size, total, progress)
                break
            except ProgramAmended as e:
                if path == "-":
                    raise  # stdin cannot be read again: the command says to run it again
                logger.info("program_amended", reason=str(e))
    elapsed_s = time.perf_counter() - started
    logger.info(
        "ingested", accepted=total.accepted, rejected=total.rejected,
        duplicates=total.duplicates, dead_lettered=total.dead_lettered,
        entries=total.entries, seconds=round(elapsed_s, 3),
        events_per_s=round(total.inputs / elapsed_s) if elapsed_s > 0 else None,
    )  # fmt: skip
    return total


def _ingest(
    conn: Connection,
    path: str,
    program: Program,
    batch_size: int,
    total: Counts,
    progress: Progress | None,
) -> None:
    count, history = amendments.load_history(conn, program)
    source = file_source.open_source(path)
    logger = log.get("ingest").bind(source=source.name)
    with source:
        pipeline = Pipeline(conn, history, after_commit=runner.catch_up, amendments=count)
        try:
            start = source.resume_from(reads.position(conn, source.name))
            if start.position:
                logger.info("resuming", after_line=start.position)
            for lines, position in file_source.batches(source, start, batch_size):
                # Decided now, written while the next batch is read and decided.
                counts = pipeline.submit(lines, partial(write_file_position, position=position))
                total.add(counts)
                if progress:
                    progress(position.position, _lines_expected(position, source.size_bytes))
            total.add(pipeline.wait())  # the last batch: corrected if an input was refused
        finally:
            with contextlib.suppress(ProgramAmended):
                pipeline.close()


def _lines_expected(position: Position, size_bytes: int | None) -> int | None:
    """The file's lines, estimated from the bytes read so far (exact at its end), so progress
    counts lines and still has an end; None for a stream."""
    if size_bytes is None or position.byte_offset == 0:
        return None
    return max(position.position, round(position.position * size_bytes / position.byte_offset))
