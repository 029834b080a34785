"""The one Kafka producer factory: idempotent (no reordering or doubling on retries, so a
customer's records keep their order), keys placed as the Java client places them, batched a
little; what differs between callers is named by an argument, not a copied configuration.

- the outbox relay: `producer(settings)`;
- `loyalty produce`: `producer(settings, inputs=True, compression="lz4", errors=...)`;
- a dead-letter redrive: `producer(settings, inputs=True, compression="none", errors=...)`.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException, Producer

from loyalty_ledger.kafka.settings import (
    ClientErrors,
    ClientValue,
    KafkaSettings,
    client_logger,
    config_error,
)

MESSAGE_TIMEOUT_MS = 30_000  # a broker lost mid-way fails the sender instead of hanging
LINGER_MS = 20
INPUT_SOCKET_TIMEOUT_MS = 10_000
# Malformed inputs are published as they are, a 1 MB garbage line too, so the consumer can
# dead-letter it; the broker's own limit still applies.
INPUT_MESSAGE_BYTES_MAX = 8 * 1024 * 1024


def producer_config(
    settings: KafkaSettings, *, inputs: bool = False, compression: str | None = None
) -> dict[str, Any]:
    """The configuration `producer` makes, without the error callback.

    `inputs`: raw input lines (produce, redrive): a shorter socket timeout, large messages,
    and librdkafka's log routed to Python's. `compression`: librdkafka's default when None.
    """
    overrides: dict[str, ClientValue] = {
        "partitioner": "murmur2_random",  # as the Java client: keys land where consumers expect
        "enable.idempotence": True,
        "linger.ms": LINGER_MS,
        "message.timeout.ms": MESSAGE_TIMEOUT_MS,
    }
    if compression is not None:
        overrides["compression.type"] = compression
    if not inputs:
        return settings.client(**overrides)
    overrides["socket.timeout.ms"] = INPUT_SOCKET_TIMEOUT_MS
    overrides["message.max.bytes"] = INPUT_MESSAGE_BYTES_MAX
    return {**settings.client(**overrides), "logger": client_logger()}


def producer(
    settings: KafkaSettings,
    *,
    inputs: bool = False,
    compression: str | None = None,
    errors: ClientErrors | None = None,
) -> Producer:
    """A producer as `producer_config` describes it; `errors` keeps librdkafka's errors.

    "lz4" falls back to no compression where this librdkafka build lacks it. A configuration
    librdkafka refuses raises KafkaConfigError (one line naming the setting to check).
    """
    attempts = [compression, "none"] if compression == "lz4" else [compression]
    callback: dict[str, Any] = {} if errors is None else {"error_cb": errors}
    for attempt in attempts:
        config = producer_config(settings, inputs=inputs, compression=attempt)
        try:
            return Producer({**config, **callback})
        except KafkaException as e:
            if attempt == "lz4" and "lz4" in str(e):
                continue
            raise config_error(e) from None
    raise AssertionError("unreachable: the last attempt returns or raises")
