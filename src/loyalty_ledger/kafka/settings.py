"""Kafka connection settings: bootstrap servers, topic names and client configuration."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

from loyalty_ledger.errors import Unavailable, UserError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_PREFIX = "loyalty"
ENV_BOOTSTRAP = "LOYALTY_KAFKA_BOOTSTRAP"
ENV_PREFIX = "LOYALTY_KAFKA_TOPIC_PREFIX"
ENV_CONFIG = "LOYALTY_KAFKA_CONFIG"

ClientValue = str | int | bool
_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]+")
_MAX_PREFIX = 200  # Kafka allows 249 characters per topic name; ".deadletter" must still fit


class KafkaUnavailable(Unavailable):
    """The broker cannot be reached, or it failed a request: one line naming the bootstrap."""


class KafkaConfigError(UserError, ValueError):
    """A setting (environment, flag or client configuration) that the user must fix."""


@dataclass(frozen=True)
class KafkaSettings:
    """Where the broker is, how topics are named, and extra librdkafka settings (e.g. security)."""

    bootstrap: str
    prefix: str = DEFAULT_PREFIX
    extra: dict[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.bootstrap.strip():
            raise KafkaConfigError(f"kafka bootstrap is empty: set {ENV_BOOTSTRAP} or --bootstrap")
        if len(self.prefix) > _MAX_PREFIX or not _TOPIC_CHARS.fullmatch(self.prefix):
            raise KafkaConfigError(
                f"topic prefix {self.prefix!r} is not a valid kafka topic name part: "
                f"use letters, digits, '.', '_' or '-' in {ENV_PREFIX}"
            )

    @classmethod
    def from_env(cls, bootstrap: str | None = None) -> KafkaSettings:
        """The environment's settings; a non-empty `bootstrap` (e.g. from a flag) wins."""
        return cls(
            bootstrap=bootstrap or os.environ.get(ENV_BOOTSTRAP) or DEFAULT_BOOTSTRAP,
            prefix=os.environ.get(ENV_PREFIX) or DEFAULT_PREFIX,
            extra=parse_config(os.environ.get(ENV_CONFIG, "")),
        )

    @property
    def inputs(self) -> str:
        return f"{self.prefix}.inputs"

    @property
    def internal(self) -> str:
        return f"{self.prefix}.internal"

    @property
    def ledger(self) -> str:
        return f"{self.prefix}.ledger"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}.deadletter"

    @property
    def topics(self) -> tuple[str, str, str, str]:
        """All four topics, inputs first."""
        return (self.inputs, self.internal, self.ledger, self.deadletter)

    def client(self, **overrides: ClientValue) -> dict[str, ClientValue]:
        """A librdkafka configuration: bootstrap.servers, then `extra`, then `overrides`."""
        return {"bootstrap.servers": self.bootstrap, **self.extra, **overrides}


def parse_config(text: str) -> dict[str, str]:
    """`key=value,key=value` (blank items ignored) into a dict; a malformed item is refused."""
    config: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise KafkaConfigError(f"{ENV_CONFIG} item {item.strip()!r} is not key=value")
        config[key.strip()] = value.strip()
    return config


def client_logger() -> logging.Logger:
    """Where librdkafka's own log lines go: silent unless the application configures logging."""
    logger = logging.getLogger("loyalty_ledger.kafka")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger


class ClientErrors:
    """An `error_cb` that keeps librdkafka's errors, so a failure can say why (e.g. refused)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, error: Any) -> None:
        # "all brokers are down" follows each connect failure and says nothing new
        if len(self.seen) < 20 and error.name() != "_ALL_BROKERS_DOWN":
            self.seen.append(_strip_origin(str(error.str())))

    def unavailable(self, settings: KafkaSettings, doing: str, cause: object) -> KafkaUnavailable:
        """One line: what failed, at which bootstrap, and the first reason librdkafka gave."""
        local = _error_code(cause) < 0  # librdkafka's own (transport, timeout): seen says why
        reason = self.seen[0] if local and self.seen else _strip_origin(_exception_text(cause))
        return KafkaUnavailable(
            f"kafka at {settings.bootstrap}: {doing} failed: {reason} "
            f"(check --bootstrap, {ENV_BOOTSTRAP} or {ENV_CONFIG})"
        )


def config_error(cause: object) -> KafkaConfigError:
    """librdkafka refused the client configuration (e.g. an unknown key in the extra settings)."""
    return KafkaConfigError(
        f"kafka client configuration refused: {_strip_origin(_exception_text(cause))} "
        f"(check {ENV_CONFIG})"
    )


def _error_code(cause: object) -> int:
    args = getattr(cause, "args", ())
    code = args[0].code() if args and hasattr(args[0], "code") else -1
    return int(code)


def _exception_text(cause: object) -> str:
    args = getattr(cause, "args", ())
    if args and hasattr(args[0], "str"):
        return str(args[0].str())
    return str(cause)


def _strip_origin(text: str) -> str:
    """'127.0.0.1:1/bootstrap: Connect to ... failed' -> 'connect to ... failed', one line."""
    head, sep, rest = text.partition(": ")
    if sep and "/" in head and " " not in head:
        text = rest
    text = " ".join(text.split())
    return text[:1].lower() + text[1:]
