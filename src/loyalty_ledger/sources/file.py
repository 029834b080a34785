"""A JSON Lines file (or stdin) as batches of lines with their positions, resumable.

A file is known by its path and a fingerprint of its first line: the stored
position is used only while both match, so a rotated or rewritten file starts
over (event ids keep that idempotent) instead of skipping new lines.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from loyalty_ledger.pipeline import Line
from loyalty_ledger.store.batch import Position

_FINGERPRINT_BYTES = 65536


@dataclass(frozen=True, slots=True)
class FileSource:
    name: str  # "file:/abs/path" or "stdin:<fingerprint>"
    fingerprint: str
    size_bytes: int | None  # None for stdin
    stream: BinaryIO

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.size_bytes is not None:  # never close stdin
            self.stream.close()

    def resume_from(self, stored: Position | None) -> Position:
        """Where to start: the stored position if it belongs to this content, else the top."""
        fresh = Position(self.name, 0, 0, self.fingerprint)
        if stored is None or stored.fingerprint != self.fingerprint:
            return fresh
        if self.size_bytes is not None and stored.byte_offset > self.size_bytes:
            return fresh  # truncated since: start over
        return stored


def open_source(path: str) -> FileSource:
    """Open `path` (or `-` for stdin); raises OSError with the path in it."""
    if path == "-":
        stream = sys.stdin.buffer
        first = stream.peek(_FINGERPRINT_BYTES) if hasattr(stream, "peek") else b""
        fingerprint = _fingerprint(first)
        return FileSource(f"stdin:{fingerprint[:16]}", fingerprint, None, stream)
    resolved = Path(path).resolve()
    handle = open(resolved, "rb")  # noqa: SIM115 (closed by the caller's ExitStack)
    first = handle.read(_FINGERPRINT_BYTES)
    handle.seek(0)
    return FileSource(
        f"file:{resolved}", _fingerprint(first), os.fstat(handle.fileno()).st_size, handle
    )


def _fingerprint(head: bytes) -> str:
    return hashlib.sha256(head.split(b"\n", 1)[0]).hexdigest()


def batches(
    source: FileSource, start: Position, batch_size: int
) -> Iterator[tuple[list[Line], Position]]:
    """Batches of non-blank lines, each with the position after its last line."""
    stream = source.stream
    line_number, offset = start.position, start.byte_offset
    if offset:
        if source.size_bytes is not None:
            stream.seek(offset)
        else:
            for _ in range(line_number):  # stdin cannot seek
                stream.readline()
    lines: list[Line] = []
    for raw in stream:
        line_number += 1
        offset += len(raw)
        body = raw.rstrip(b"\r\n")
        if body.strip():  # blank lines are not inputs
            lines.append(Line(source.name, line_number, body))
        if len(lines) >= batch_size:
            yield lines, Position(source.name, line_number, offset, source.fingerprint)
            lines = []
    if lines or line_number != start.position:
        yield lines, Position(source.name, line_number, offset, source.fingerprint)
