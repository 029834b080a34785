"""The one producer factory: each caller's configuration, as each had its own before."""

from __future__ import annotations

import pytest

from loyalty_ledger.kafka.producer import producer, producer_config
from loyalty_ledger.kafka.settings import KafkaConfigError, KafkaSettings, client_logger

SETTINGS = KafkaSettings("127.0.0.1:9", extra={"client.id": "test"})
SHARED = {
    "bootstrap.servers": "127.0.0.1:9",
    "client.id": "test",
    "partitioner": "murmur2_random",
    "enable.idempotence": True,
    "linger.ms": 20,
    "message.timeout.ms": 30_000,
}


def test_the_relay_gets_the_shared_settings_only() -> None:
    assert producer_config(SETTINGS) == SHARED


@pytest.mark.parametrize("compression", ["lz4", "none"])
def test_inputs_get_large_messages_a_short_socket_timeout_and_the_logger(
    compression: str,
) -> None:
    assert producer_config(SETTINGS, inputs=True, compression=compression) == {
        **SHARED,
        "compression.type": compression,
        "socket.timeout.ms": 10_000,
        "message.max.bytes": 8 * 1024 * 1024,
        "logger": client_logger(),
    }


def test_a_refused_setting_is_one_line() -> None:
    bad = KafkaSettings("127.0.0.1:9", extra={"no.such.setting": "1"})
    with pytest.raises(KafkaConfigError, match="kafka client configuration refused"):
        producer(bad, inputs=True, compression="lz4")
