"""A JSON Lines file (or stdin) as batches of lines with their positions, resumable.

A file is known by its path and a fingerprint of its first line: the stored
position is used only while both match, so a rotated or rewritten file starts
over (event ids keep that idempotent) instead of skipping new lines.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from loyalty_ledger.errors import UserError
from loyalty_ledger.events import MAX_LINE_BYTES
from loyalty_ledger.sources.address import SourceAddress
from loyalty_ledger.sources.line import Line
from loyalty_ledger.store.batch import Position

_FINGERPRINT_BYTES = 65536


@dataclass(frozen=True, slots=True)
class FileSource:
    name: str  # a SourceAddress: "file:/abs/path", "stdin:<fingerprint>", ...
    fingerprint: str
    size_bytes: int | None  # None for a stream (stdin, a pipe): it cannot seek
    stream: BinaryIO
    owned: bool = True  # closed on exit (stdin is not ours to close)

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.owned:
            self.stream.close()

    def resume_from(self, stored: Position | None) -> Position:
        """Where to start: the stored position if it belongs to this content, else the top."""
        fresh = Position(self.name, 0, 0, self.fingerprint)
        if stored is None or stored.fingerprint != self.fingerprint:
            return fresh
        if self.size_bytes is not None and stored.byte_offset > self.size_bytes:
            return fresh  # truncated since: start over
        return stored


class SourceError(UserError):
    """An input path that cannot be read as JSON Lines; one line naming the path and the fix."""


def open_source(path: str) -> FileSource:
    """Open `path` (or `-` for stdin). A regular file resumes by byte offset; a pipe, FIFO
    or device is read as a stream, like stdin. Raises SourceError naming the path."""
    if path == "-":
        return _stream_source(SourceAddress.stdin(), sys.stdin.buffer)
    resolved = Path(path).resolve()
    try:
        handle = open(resolved, "rb")  # noqa: SIM115 (closed by FileSource.__exit__)
    except FileNotFoundError:
        raise SourceError(f"input file {path!r} not found: pass a JSON Lines file or - "
                          "for stdin") from None  # fmt: skip
    except IsADirectoryError:
        raise SourceError(f"input {path!r} is a directory: pass a JSON Lines file") from None
    except OSError as e:
        raise SourceError(f"cannot open input {path!r}: {e.strerror or e}") from None
    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
        return _stream_source(SourceAddress.stream(resolved), handle, owned=True)
    try:
        first = handle.read(_FINGERPRINT_BYTES)
        handle.seek(0)
    except OSError as e:
        handle.close()
        raise SourceError(f"cannot read input {path!r}: {e.strerror or e}") from None
    return FileSource(
        SourceAddress.file(resolved).format(),
        _fingerprint(first),
        os.fstat(handle.fileno()).st_size,
        handle,
    )


def _stream_source(address: SourceAddress, stream: BinaryIO, *, owned: bool = False) -> FileSource:
    """A source that cannot seek: known by the fingerprint of its first line."""
    try:
        first = stream.peek(_FINGERPRINT_BYTES) if hasattr(stream, "peek") else b""
    except OSError as e:
        raise SourceError(f"cannot read {address}: {e.strerror or e}") from None
    fingerprint = _fingerprint(first)
    name = address.with_fingerprint(fingerprint).format()
    return FileSource(name, fingerprint, None, stream, owned)


def _fingerprint(head: bytes) -> str:
    return hashlib.sha256(head.split(b"\n", 1)[0]).hexdigest()


def batches(
    source: FileSource, start: Position, batch_size: int
) -> Iterator[tuple[list[Line], Position]]:
    """Batches of non-blank lines, each with the position after its last line."""
    line_number, offset = start.position, start.byte_offset
    lines: list[Line] = []
    for raw, size in read_lines(source, start):
        line_number += 1
        offset += size
        body = raw.rstrip(b"\r\n")
        if body.strip():  # blank lines are not inputs
            lines.append(Line(source.name, line_number, body))
        if len(lines) >= batch_size:
            yield lines, Position(source.name, line_number, offset, source.fingerprint)
            lines = []
    if lines or line_number != start.position:
        yield lines, Position(source.name, line_number, offset, source.fingerprint)


def read_lines(source: FileSource, start: Position | None = None) -> Iterator[tuple[bytes, int]]:
    """(line, its size in bytes) from `start` on; read errors become SourceError."""
    try:
        stream = source.stream
        if start is not None and start.byte_offset:
            if source.size_bytes is not None:
                stream.seek(start.byte_offset)
            else:
                for _ in _bounded(stream, start.position):  # a stream cannot seek
                    pass
        yield from _bounded(stream, None)
    except OSError as e:
        raise SourceError(f"cannot read {source.name}: {e.strerror or e}") from None


def _bounded(stream: BinaryIO, count: int | None) -> Iterator[tuple[bytes, int]]:
    """Lines with at most MAX_LINE_BYTES + 2 bytes kept: a longer line is read to its end but
    only its head is kept (enough for the decoder to call it too large), so one endless
    line cannot take all the memory."""
    keep = MAX_LINE_BYTES + 2  # the terminator, and one more so "too large" is still seen
    done = 0
    while count is None or done < count:
        raw = stream.readline(keep)
        if not raw:
            return
        size = len(raw)
        if len(raw) == keep and not raw.endswith(b"\n"):
            while rest := stream.readline(keep):  # the rest of an over-long line: skipped
                size += len(rest)
                if rest.endswith(b"\n"):
                    break
        done += 1
        yield raw, size
