"""SourceAddress: the stored texts, byte for byte, and parse/format round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty_ledger.sources.address import SourceAddress, SourceAddressError, SourceKind

# What earlier versions wrote into the database, and what each builder must still write.
STORED = [
    (SourceAddress.kafka("loyalty.inputs", 3), "kafka:loyalty.inputs:3"),
    (SourceAddress.kafka("p-loyalty.internal", 0), "kafka:p-loyalty.internal:0"),
    (SourceAddress.file(Path("/data/events.jsonl")), "file:/data/events.jsonl"),
    (SourceAddress.file("/odd: name/x"), "file:/odd: name/x"),
    (SourceAddress.stdin().with_fingerprint("ab" * 32), "stdin:" + "ab" * 8),
    (
        SourceAddress.stream(Path("/dev/fd/63")).with_fingerprint("0" * 64),
        "stream:/dev/fd/63:" + "0" * 16,
    ),
]


@pytest.mark.parametrize(("address", "text"), STORED, ids=[t for _, t in STORED])
def test_format_is_what_was_stored(address: SourceAddress, text: str) -> None:
    assert address.format() == text
    assert str(address) == text
    assert SourceAddress.parse(text) == address


def test_unfingerprinted_streams_name_themselves_as_before() -> None:
    assert str(SourceAddress.stdin()) == "stdin"
    assert str(SourceAddress.stream("/p/fifo")) == "stream:/p/fifo"


def test_kind_of_reads_the_prefix_only() -> None:
    assert SourceAddress.kind_of("kafka:t:1") is SourceKind.kafka
    assert SourceAddress.kind_of("kafka:broken") is SourceKind.kafka
    assert SourceAddress.kind_of("file:x") is SourceKind.file
    assert SourceAddress.kind_of("nope:x") is None
    assert SourceAddress.kind_of("") is None


@pytest.mark.parametrize("text", ["kafka:t", "kafka:t:x", "kafka::1", "kafka:t:-1", "ftp:x", ""])
def test_what_is_no_address_is_refused(text: str) -> None:
    with pytest.raises(SourceAddressError, match="is not an address"):
        SourceAddress.parse(text)


topics = st.from_regex(r"[a-zA-Z0-9._-]{1,40}", fullmatch=True)


@given(topics, st.integers(min_value=0, max_value=10_000))
def test_kafka_round_trip(topic: str, partition: int) -> None:
    text = f"kafka:{topic}:{partition}"
    assert SourceAddress.parse(text).format() == text
    assert SourceAddress.parse(text) == SourceAddress.kafka(topic, partition)


@given(st.text(min_size=1).map(lambda s: "/" + s))
def test_file_round_trip(path: str) -> None:
    assert SourceAddress.parse(f"file:{path}").format() == f"file:{path}"
