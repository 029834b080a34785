"""Create and inspect the loyalty topics: inputs, internal, ledger and deadletter."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from loyalty_ledger.errors import UserError
from loyalty_ledger.kafka.settings import (
    ClientErrors,
    KafkaSettings,
    KafkaUnavailable,
    client_logger,
    config_error,
)

METADATA_TIMEOUT_S = 7.0  # an unreachable broker fails a command within ~10 s
CREATE_TIMEOUT_S = 15.0
REQUEST_TIMEOUT_MS = 10_000


class TopicError(UserError):
    """A topic is missing, or exists with a partition count that does not fit."""


def admin_client(settings: KafkaSettings) -> tuple[AdminClient, ClientErrors]:
    """An AdminClient whose librdkafka errors are kept (for the message) instead of printed."""
    errors = ClientErrors()
    config: dict[str, Any] = {
        **settings.client(**{"socket.timeout.ms": REQUEST_TIMEOUT_MS}),
        "logger": client_logger(),
        "error_cb": errors,
    }
    try:
        return AdminClient(config), errors
    except KafkaException as e:
        raise config_error(e) from None


def topic_partitions(settings: KafkaSettings) -> dict[str, int]:
    """Every topic the broker's metadata shows, with its partition count."""
    admin, errors = admin_client(settings)
    return _counts(admin, errors, settings)


def partition_count(settings: KafkaSettings, topic: str) -> int:
    """The partition count of `topic` from metadata; TopicError when it does not exist."""
    counts = topic_partitions(settings)
    if topic not in counts:
        raise TopicError(
            f"topic {topic} does not exist at {settings.bootstrap}: "
            "run `loyalty topics create --partitions N` first"
        )
    return counts[topic]


def create_topics(settings: KafkaSettings, partitions: int, replication: int = 1) -> list[str]:
    """Create the four topics with `partitions` each; returns the ones this call created.

    Topics that already exist are fine when their partition count is `partitions`:
    inputs and internal are co-partitioned by customer, so every count must match.
    """
    if partitions < 1:
        raise TopicError(f"--partitions must be at least 1, got {partitions}")
    if replication < 1:
        raise TopicError(f"--replication must be at least 1, got {replication}")
    admin, errors = admin_client(settings)
    existing = _counts(admin, errors, settings)
    _check_counts(settings, existing, partitions)
    missing = [topic for topic in settings.topics if topic not in existing]
    if missing:
        _create(admin, errors, settings, missing, partitions, replication)
        _wait_visible(admin, errors, settings, partitions)
    return missing


def _counts(admin: AdminClient, errors: ClientErrors, settings: KafkaSettings) -> dict[str, int]:
    try:
        metadata = admin.list_topics(timeout=METADATA_TIMEOUT_S)
    except KafkaException as e:
        admin.poll(0)  # serve the error callbacks: they say why (refused, unresolved, auth)
        raise errors.unavailable(settings, "reading metadata", e) from None
    return {
        name: len(topic.partitions)
        for name, topic in metadata.topics.items()
        if topic.partitions or topic.error is None
    }


def _check_counts(settings: KafkaSettings, existing: dict[str, int], partitions: int) -> None:
    wrong = [
        f"{topic} has {existing[topic]}"
        for topic in settings.topics
        if topic in existing and existing[topic] != partitions
    ]
    if wrong:
        raise TopicError(
            f"topics exist with another partition count than {partitions} "
            f"({'; '.join(wrong)}): all four must have the same count, since inputs and "
            "internal are co-partitioned; pass that count or delete the topics"
        )


def _create(
    admin: AdminClient,
    errors: ClientErrors,
    settings: KafkaSettings,
    topics: list[str],
    partitions: int,
    replication: int,
) -> None:
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=replication)
         for topic in topics],
        request_timeout=CREATE_TIMEOUT_S,
    )  # fmt: skip
    for topic, future in futures.items():
        try:
            future.result()
        except KafkaException as e:
            error = e.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # created meanwhile by someone else: its count is checked below
            if error.code() < 0:  # librdkafka's local errors: transport, timeout
                admin.poll(0)
                raise errors.unavailable(settings, f"creating topic {topic}", e) from None
            raise TopicError(f"cannot create topic {topic}: {error.str()}") from None


def _wait_visible(
    admin: AdminClient, errors: ClientErrors, settings: KafkaSettings, partitions: int
) -> None:
    """Creation is asynchronous on most brokers: wait until metadata shows every topic."""
    deadline = time.monotonic() + CREATE_TIMEOUT_S
    while True:
        existing = _counts(admin, errors, settings)
        _check_counts(settings, existing, partitions)
        if all(topic in existing for topic in settings.topics):
            return
        if time.monotonic() > deadline:
            raise KafkaUnavailable(
                f"kafka at {settings.bootstrap}: created topics did not appear in its "
                f"metadata within {CREATE_TIMEOUT_S:.0f} s"
            )
        time.sleep(0.1)
