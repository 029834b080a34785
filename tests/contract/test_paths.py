"""The exactly-once contract (exactly_once.py), run against every input path."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from exactly_once import BATCH, PROGRAM, ExactlyOnceContract, stream_lines
from psycopg import sql

from loyalty_ledger import events
from loyalty_ledger.generations import catalog
from loyalty_ledger.kafka.settings import KafkaSettings
from loyalty_ledger.kafka.topics import create_topics
from loyalty_ledger.runtime.produce import produce_file
from loyalty_ledger.store.db import Connection
from support import ingest

_PLACES = (
    "SELECT (SELECT count(*) FROM inbox) + (SELECT count(*) FROM duplicates)"
    " + (SELECT count(*) FROM dead_letters WHERE status <> 'redriven')"
)


def _one(conn: Connection, query: str | sql.Composed) -> int:
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


class _EveryLineOnce(ExactlyOnceContract):
    """Paths fed the stream's lines: each ends in the inbox, duplicates or dead letters."""

    def fed(self, conn: Connection) -> int:
        return len(stream_lines())

    def landed(self, conn: Connection) -> int:
        return _one(conn, _PLACES)


class TestFileSource(_EveryLineOnce):
    def prepare(self, url: str) -> None:
        pass

    def argv(self, url: str) -> list[str]:
        return ["ingest", str(self.stream), "--program", str(PROGRAM), "--batch-size", BATCH]


class TestKafkaSource(_EveryLineOnce):
    """One partition, a consumer group per database (offsets live in PostgreSQL)."""

    @pytest.fixture(autouse=True)
    def _kafka(self, kafka_settings: KafkaSettings, _folder: None) -> None:
        self.kafka = kafka_settings
        self.env["LOYALTY_KAFKA_BOOTSTRAP"] = kafka_settings.bootstrap
        self.env["LOYALTY_KAFKA_TOPIC_PREFIX"] = kafka_settings.prefix

    def feed(self) -> None:
        create_topics(self.kafka, 1)
        produce_file(self.kafka, str(self.stream))

    def prepare(self, url: str) -> None:
        pass

    def argv(self, url: str) -> list[str]:
        # A group of each database's own: Tansu mishandles a group reused with other topics.
        group = f"g-{self.kafka.prefix}-{hashlib.sha256(url.encode()).hexdigest()[:6]}"
        return ["consume", "--group", group, "--program", str(PROGRAM), "--batch-size", BATCH,
                "--batch-ms", "100", "--stop-when-idle", "2"]  # fmt: skip


class TestRerun(ExactlyOnceContract):
    """The live generation's inbox replayed into generation `again` under the same program."""

    patch = f"from loyalty_ledger.generations import rerun; rerun.BATCH_SIZE = {BATCH}"

    def prepare(self, url: str) -> None:
        ingest(url, self.stream, PROGRAM)

    def argv(self, url: str) -> list[str]:
        return ["rerun", "--program", str(PROGRAM), "--as", "again"]

    def use_target(self, conn: Connection) -> None:
        catalog.use(conn, catalog.get(conn, "again"))

    def fed(self, conn: Connection) -> int:
        live = catalog.get(conn, "main").schema_name
        query = sql.SQL("SELECT count(*) FROM {}.inbox").format(sql.Identifier(live))
        return _one(conn, query)

    def landed(self, conn: Connection) -> int:
        return _one(conn, "SELECT count(*) FROM inbox")

    def check_dead_letters(self, conn: Connection) -> None:
        """A re-run reads the inbox: the live dead letters stay as they were, open, once."""
        kept = _one(conn, "SELECT count(*) FROM dead_letters WHERE status = 'open'")
        assert kept == _one(conn, "SELECT count(*) FROM dead_letters") > 0


NOT_YET = "purchase.channel: pos purchases were not accepted yet"


class TestRedrive(_EveryLineOnce):
    """Ingested by a stricter decoder that refused pos purchases; redriven by the real one."""

    patch = "from loyalty_ledger.admin import dead_letters; dead_letters.REDRIVE_BATCH = 8"

    @pytest.fixture(autouse=True)
    def _stricter(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        decode = events.decode

        def stricter(raw: bytes | str) -> events.Event | events.Invalid:
            decoded = decode(raw)
            if isinstance(decoded, events.Purchase) and decoded.channel == "pos":
                return events.Invalid(NOT_YET)
            return decoded

        self._decoders = (decode, stricter)
        yield

    def prepare(self, url: str) -> None:
        decode, stricter = self._decoders
        events.decode = stricter  # type: ignore[assignment]
        try:
            ingest(url, self.stream, PROGRAM)
        finally:
            events.decode = decode  # type: ignore[assignment]

    def argv(self, url: str) -> list[str]:
        return ["dlq", "redrive", "--reason", "not accepted yet"]

