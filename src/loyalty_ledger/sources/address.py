"""Where an input came from, as one value: `kafka:<topic>:<partition>`, `file:<absolute path>`,
`stream:<path>:<fingerprint>`, `stdin:<fingerprint>` or `http:<API key name>`.

The text is stored in the database (the inbox, dead letters, source positions), so
`format` is byte for byte what every earlier version wrote, and `parse(format(a)) == a`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from loyalty_ledger.errors import UserError

FINGERPRINT_CHARS = 16  # a stream is named by the start of its first line's sha256


class SourceKind(StrEnum):
    kafka = "kafka"  # a partition of a topic
    file = "file"  # a regular file, resumed by byte offset
    stream = "stream"  # a pipe, FIFO or device: cannot seek, known by its first line
    stdin = "stdin"  # standard input, likewise
    http = "http"  # the HTTP API: one source per API key, named by the key


class SourceAddressError(UserError):
    """Text that is not a source address; the message shows the expected shapes."""


@dataclass(frozen=True, slots=True)
class SourceAddress:
    kind: SourceKind
    name: str = ""  # the topic (kafka) or the path (file, stream); "" for stdin
    partition: int | None = None  # kafka only
    fingerprint: str | None = None  # stream and stdin, once their first line is known

    @classmethod
    def kafka(cls, topic: str, partition: int) -> SourceAddress:
        return cls(SourceKind.kafka, topic, partition)

    @classmethod
    def file(cls, path: Path | str) -> SourceAddress:
        return cls(SourceKind.file, str(path))

    @classmethod
    def http(cls, key_name: str) -> SourceAddress:
        return cls(SourceKind.http, key_name)

    @classmethod
    def stream(cls, path: Path | str) -> SourceAddress:
        """A stream not yet fingerprinted: `with_fingerprint` completes it."""
        return cls(SourceKind.stream, str(path))

    @classmethod
    def stdin(cls) -> SourceAddress:
        """Standard input not yet fingerprinted: `with_fingerprint` completes it."""
        return cls(SourceKind.stdin)

    def with_fingerprint(self, fingerprint: str) -> SourceAddress:
        assert self.kind in (SourceKind.stream, SourceKind.stdin), self
        return replace(self, fingerprint=fingerprint[:FINGERPRINT_CHARS])

    @staticmethod
    def kind_of(text: str) -> SourceKind | None:
        """The kind `text` names by its prefix, without checking the rest; None if none."""
        prefix = text.partition(":")[0]
        return SourceKind(prefix) if prefix in SourceKind.__members__ else None

    @classmethod
    def parse(cls, text: str) -> SourceAddress:
        kind = cls.kind_of(text)
        rest = text.partition(":")[2]
        if kind is SourceKind.kafka:
            topic, _, partition = rest.rpartition(":")
            if topic and partition.isdigit():
                return cls.kafka(topic, int(partition))
        elif kind is SourceKind.file:
            return cls.file(rest)
        elif kind is SourceKind.stream:
            if ":" not in rest:
                return cls.stream(rest)
            path, _, fingerprint = rest.rpartition(":")
            return cls(SourceKind.stream, path, fingerprint=fingerprint)
        elif kind is SourceKind.stdin:
            return cls(SourceKind.stdin, fingerprint=rest if ":" in text else None)
        elif kind is SourceKind.http and rest:
            return cls.http(rest)
        raise SourceAddressError(
            f"source {text!r} is not an address: expected kafka:<topic>:<partition>, "
            "file:<path>, stream:<path>:<fingerprint>, stdin:<fingerprint> or http:<key name>"
        )

    def format(self) -> str:
        if self.kind is SourceKind.kafka:
            return f"kafka:{self.name}:{self.partition}"
        if self.kind is SourceKind.file:
            return f"file:{self.name}"
        if self.kind is SourceKind.http:
            return f"http:{self.name}"
        head = "stdin" if self.kind is SourceKind.stdin else f"stream:{self.name}"
        return head if self.fingerprint is None else f"{head}:{self.fingerprint}"

    def __str__(self) -> str:
        return self.format()
