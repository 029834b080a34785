"""`Line`: one raw input as every source hands it to the pipeline, and where it came from."""

from __future__ import annotations

from dataclasses import dataclass

FILE_STREAM = "file"  # every file source is one stream: one tick reaches every customer


@dataclass(frozen=True, slots=True)
class Line:
    """One raw input and where it came from."""

    source: str  # a SourceAddress, formatted: "file:/abs/path", "kafka:loyalty.inputs:3"
    position: int  # file: 1-based line number; Kafka: offset
    raw: bytes
    stream: str = FILE_STREAM  # the tick stream it arrived on (a partition)
    command: bool = False  # an internal command, not a PROGRAM.md event
