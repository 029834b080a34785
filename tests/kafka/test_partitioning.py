"""murmur2 and the keyed-record partition against the Java client's and librdkafka's vectors."""

from __future__ import annotations

import pytest

from loyalty_ledger.kafka.partitioner import murmur2, partition_for

# Apache Kafka, clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java (testMurmur2)
KAFKA_UTILS_TEST = [
    ("21", -973932308),
    ("foobar", -790332482),
    ("a-little-bit-long-string", -985981536),
    ("a-little-bit-longer-string", -1486304829),
    ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    ("abc", 479470107),
]

# librdkafka, src/rdmurmur2.c unittest_murmur2 (`java_murmur2_results`, as 32-bit patterns);
# the suffixes of "1234" and of the long key cover every tail length and word alignment
LIBRDKAFKA_UNITTEST = [
    ("kafka", 0xD067CF64),
    ("giberish123456789", 0x8F552B0C),
    ("1234", 0x9FC97B14),
    ("234", 0xE7C009CA),
    ("34", 0x873930DA),
    ("4", 0x5A4B5CA1),
    ("PreAmbleWillBeRemoved,ThePrePartThatIs", 0x78424F1C),
    ("reAmbleWillBeRemoved,ThePrePartThatIs", 0x4A62B377),
    ("eAmbleWillBeRemoved,ThePrePartThatIs", 0xE0E4E09E),
    ("AmbleWillBeRemoved,ThePrePartThatIs", 0x62B8B43F),
    ("", 0x106E08D9),
]


@pytest.mark.parametrize(("key", "expected"), KAFKA_UTILS_TEST)
def test_murmur2_matches_the_java_client(key: str, expected: int) -> None:
    assert murmur2(key.encode()) == expected


@pytest.mark.parametrize(("key", "expected"), LIBRDKAFKA_UNITTEST)
def test_murmur2_matches_librdkafka(key: str, expected: int) -> None:
    result = murmur2(key.encode())
    assert -(2**31) <= result < 2**31  # a Java int
    assert result & 0xFFFFFFFF == expected


def test_partition_for_clears_the_sign_bit_like_java_to_positive() -> None:
    # murmur2("21") is negative: Java's toPositive masks, it does not take abs()
    assert partition_for("21", 1 << 31) == -973932308 & 0x7FFFFFFF
    assert partition_for("kafka", 8) == (0xD067CF64 & 0x7FFFFFFF) % 8
    assert partition_for("abc", 7) == 479470107 % 7


def test_partition_for_uses_utf8_bytes() -> None:
    key = "kundé-ü"
    assert partition_for(key, 12) == (murmur2(key.encode("utf-8")) & 0x7FFFFFFF) % 12


def test_partition_for_stays_in_range_and_refuses_no_partitions() -> None:
    counts = [0] * 8
    for i in range(2000):
        counts[partition_for(f"c{i:05}", 8)] += 1
    assert all(150 < n < 350 for n in counts), counts  # spread, not piled on one partition
    with pytest.raises(ValueError, match="at least 1"):
        partition_for("c1", 0)
