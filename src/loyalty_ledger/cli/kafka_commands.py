"""Kafka: topics create|list, produce, consume, status, tick."""

from __future__ import annotations

import argparse
import sys

from loyalty_ledger.cli.arguments import (
    BATCH,
    Commands,
    Parser,
    count,
    instant,
    read_program,
    seconds,
)
from loyalty_ledger.cli.resources import database, progress
from loyalty_ledger.kafka.settings import KafkaSettings
from loyalty_ledger.text import printable


def _bootstrap() -> Parser:
    """The --bootstrap option every Kafka command takes, as an argparse parent."""
    bootstrap = Parser(add_help=False)
    bootstrap.add_argument(
        "--bootstrap", help="kafka bootstrap servers ($LOYALTY_KAFKA_BOOTSTRAP, 127.0.0.1:9092)"
    )
    return bootstrap


def add_topics(sub: Commands[Parser]) -> None:
    """`loyalty topics create|list`: the four topics."""
    p = sub.add_parser("topics", help="the kafka topics: inputs, internal, ledger, deadletter")
    kafka_topics = p.add_subparsers(dest="topics_command", required=True, metavar="ACTION")
    q = kafka_topics.add_parser("create", parents=[_bootstrap()], help="create the four topics")
    q.add_argument(
        "--partitions", type=count(1, 10_000), required=True, help="partitions of every topic"
    )
    q.add_argument("--replication", type=count(1, 100), default=1, help="replication factor (1)")
    q.set_defaults(run=topics_create)
    q = kafka_topics.add_parser("list", parents=[_bootstrap()], help="the topics and partitions")
    q.set_defaults(run=topics_list)


def topics_create(args: argparse.Namespace) -> int:
    from loyalty_ledger.kafka import topics

    settings = KafkaSettings.from_env(args.bootstrap)
    created = topics.create_topics(settings, args.partitions, args.replication)
    for name in settings.topics:
        print(f"{name}\t{args.partitions}\t{'created' if name in created else 'exists'}")
    return 0


def topics_list(args: argparse.Namespace) -> int:
    from loyalty_ledger.kafka import topics

    settings = KafkaSettings.from_env(args.bootstrap)
    counts = topics.topic_partitions(settings)
    for name in sorted(n for n in counts if n.startswith(f"{settings.prefix}.")):
        print(f"{name}\t{counts[name]}")
    return 0


def add_produce(sub: Commands[Parser]) -> None:
    """`loyalty produce PATH`: publish JSON Lines to the inputs topic."""
    p = sub.add_parser("produce", parents=[_bootstrap()], help="publish JSON Lines to kafka")
    p.add_argument("path", help="JSON Lines file, or - for standard input")
    p.set_defaults(run=produce)


def produce(args: argparse.Namespace) -> int:
    from loyalty_ledger.runtime.produce import produce_file

    with progress("producing") as update:
        produce_file(KafkaSettings.from_env(args.bootstrap), args.path, update)
    return 0


def add_consume(sub: Commands[Parser]) -> None:
    """`loyalty consume`: one consumer group member, exactly once into PostgreSQL."""
    p = sub.add_parser(
        "consume",
        parents=[_bootstrap()],
        help="apply the inputs topic as a consumer group member (Ctrl-C stops cleanly)",
        description="Consume loyalty.inputs (and loyalty.internal) as one member of a consumer "
        "group, exactly once into PostgreSQL. Settings: LOYALTY_DATABASE_URL, "
        "LOYALTY_KAFKA_BOOTSTRAP, LOYALTY_KAFKA_TOPIC_PREFIX (loyalty), LOYALTY_KAFKA_CONFIG "
        "(extra librdkafka settings, key=value,...).",
    )
    p.add_argument("--group", default="loyalty", help="consumer group id (loyalty)")
    p.add_argument("--program", help="program TOML (stored on first use; default: the stored one)")
    p.add_argument(
        "--batch-size", type=BATCH, default=10_000, help="messages per transaction (10000)"
    )
    p.add_argument(
        "--batch-ms", type=count(1, 3_600_000), default=500,
        help="longest wait to fill a batch (500)",
    )  # fmt: skip
    p.add_argument(
        "--stop-when-idle", type=seconds, metavar="S",
        help="exit once caught up and S seconds quiet",
    )  # fmt: skip
    p.set_defaults(run=consume)


def consume(args: argparse.Namespace) -> int:
    from loyalty_ledger.runtime.consume import ConsumeOptions
    from loyalty_ledger.runtime.consume import consume as consume_inputs

    program_source = read_program(args.program) if args.program else None
    options = ConsumeOptions(args.group, args.batch_size, args.batch_ms, args.stop_when_idle)
    with database() as conn:
        settings = KafkaSettings.from_env(args.bootstrap)
        consume_inputs(conn, settings, options, program_source, args.program or "program")
    return 0


def add_status(sub: Commands[Parser]) -> None:
    """`loyalty status`: per partition, the stored offset, lag and last batch."""
    p = sub.add_parser(
        "status", parents=[_bootstrap()], help="per partition: offset, lag, last batch"
    )
    p.add_argument("--group", default="loyalty", help="consumer group id (loyalty)")
    p.set_defaults(run=status)


def status(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin.status import partition_status

    out = sys.stdout
    with database() as conn:
        settings = KafkaSettings.from_env(args.bootstrap)
        out.write("topic\tpartition\tstored_offset\tlag\tlast_batch\towner\n")
        for p in partition_status(conn, settings, args.group):
            lag = "?" if p.lag is None else str(p.lag)
            last = p.last_batch.isoformat(timespec="seconds") if p.last_batch else "-"
            out.write(f"{printable(p.topic)}\t{p.partition}\t{p.stored_offset}\t{lag}\t{last}\t"
                      f"{printable('-' if p.owner is None else p.owner)}\n")  # fmt: skip
    return 0


def add_tick(sub: Commands[Parser]) -> None:
    """`loyalty tick --at TIME`: one tick to every input partition."""
    p = sub.add_parser(
        "tick", parents=[_bootstrap()], help="send one tick to every input partition"
    )
    p.add_argument("--at", required=True, help="the instant, RFC 3339 with a UTC offset")
    p.set_defaults(run=tick)


def tick(args: argparse.Namespace) -> int:
    from loyalty_ledger.runtime.produce import send_tick

    at = instant(args.at, "--at")
    send_tick(KafkaSettings.from_env(args.bootstrap), at)
    return 0
