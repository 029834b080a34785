"""Shared test helpers: run the file pipeline in-process, read exports, compare read models."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog
from psycopg import sql

from loyalty_ledger import cli
from loyalty_ledger.admin import exports
from loyalty_ledger.generations import amendments
from loyalty_ledger.kafka.settings import KafkaSettings
from loyalty_ledger.pipeline import Counts
from loyalty_ledger.projectors import runner
from loyalty_ledger.runtime.consume import ConsumeOptions, consume
from loyalty_ledger.runtime.ingest import ingest_file
from loyalty_ledger.store.db import Connection, connect

ALL_CASES = sorted((Path(__file__).parent / "conformance").glob("case-*"))
# Cases fed whole; those with amendments.json need `loyalty program amend` between parts.
CASES = [case for case in ALL_CASES if not (case / "amendments.json").exists()]
V1_CASES = CASES[:8]  # version 1 programs and streams
V2_CASES = CASES[8:]  # pending points, campaigns, adjustments, transfers, memberships
# Version 2 cases whose program is amended between parts of the stream (09, 12, 14).
AMENDED_CASES = [case for case in ALL_CASES if (case / "amendments.json").exists()]
NUMBER_FIELDS = {
    "balance", "earned", "redeemed", "reversed", "expired", "orders", "referrals_qualified",
    "qualifying_spend", "gross_revenue", "refunded", "net_revenue", "aov",
    "pending", "adjusted", "transferred_in", "transferred_out", "membership_fees",
}  # fmt: skip
TIME_FIELDS = {"first_purchase_at", "last_purchase_at", "membership_ends_at"}
EXAMPLES = Path(__file__).parents[1] / "examples"
_VERSION_2_MARK = "# --- version 2:"


def example_program_v1() -> str:
    """examples/program.toml up to its version 2 sections: the sample shop as the tests written
    for version 1 expect it (purchase points credited at once, no campaigns)."""
    text = (EXAMPLES / "program.toml").read_text(encoding="utf-8")
    head, mark, _ = text.partition(_VERSION_2_MARK)
    assert mark, f"examples/program.toml lost its {_VERSION_2_MARK!r} line"
    return head


def example_program_v1_file(folder: Path) -> Path:
    """`example_program_v1()` written to `folder`, for what takes a program path."""
    path = folder / "program-v1.toml"
    path.write_text(example_program_v1(), encoding="utf-8")
    return path


def ingest(url: str, path: Path | str, program: Path | None, batch_size: int = 5000) -> Counts:
    with connect(url) as conn:
        source = program.read_text(encoding="utf-8") if program else None
        return ingest_file(conn, str(path), source, str(program), batch_size)


def export(url: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    with connect(url) as conn:
        runner.catch_up(conn)
        return list(exports.customers(conn)), exports.summary(conn)


def norm(field: str, value: Any) -> Any:
    """A value in a form where equal meanings compare equal (as the conformance checker does)."""
    if value is None:
        return [] if field == "rewards" else None
    if field in NUMBER_FIELDS:
        return Decimal(str(value))
    if field in TIME_FIELDS:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return value


def normalized(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["customer_id"]: {k: norm(k, v) for k, v in row.items()} for row in rows}


def expected(case: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    lines = (case / "expected-customers.jsonl").read_text(encoding="utf-8").splitlines()
    customers = [json.loads(line) for line in lines if line.strip()]
    summary = json.loads((case / "expected-summary.json").read_text(encoding="utf-8"))
    return customers, summary


def assert_matches(case: Path, got_rows: list[dict[str, Any]], got_summary: dict[str, Any]) -> None:
    want_rows, want_summary = expected(case)
    want, got = normalized(want_rows), normalized(got_rows)
    assert sorted(got) == sorted(want), "enrolled customers differ"
    for customer_id, fields in want.items():
        mine = {k: got[customer_id].get(k) for k in fields}
        assert mine == fields, customer_id
    for part in ("accepted", "rejected", "dead_lettered"):
        assert got_summary[part] == want_summary[part], part


def ledger_dump(conn: Connection) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT * FROM ledger ORDER BY seq").fetchall()


def projections_dump(conn: Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {
        name: conn.execute(
            sql.SQL("SELECT * FROM {} ORDER BY customer_id").format(sql.Identifier(name))
        ).fetchall()
        for name in ("balance", "tier", "customer_value")
    }


def cli_in_process(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The command in this process (no interpreter start): exit code, stdout, stderr."""
    saved = structlog.get_config()  # main() binds the log to this test's captured stderr
    try:
        code = cli.main(args)
    finally:
        structlog.configure(**saved)
    out, err = capsys.readouterr()
    return code, out, err


def median_instant(url: str) -> datetime:
    """The median `occurred_at` of the inbox: splits a case's inputs in two."""
    with connect(url) as conn:
        row = conn.execute(
            "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY occurred_at) FROM inbox"
        ).fetchone()
        assert row is not None
        return row[0]  # type: ignore[no-any-return]


LOYALTY = str(Path(sys.executable).with_name("loyalty"))  # this venv's command


def run(args: list[str], env: dict[str, str], cwd: Path | None = None, stdin: str | None = None
        ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        [LOYALTY, *args], env=env, cwd=cwd, input=stdin, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def run_consumer(
    url: str, settings: KafkaSettings, program: Path | None, idle_s: float = 4
) -> Counts:
    with connect(url) as conn:
        source = program.read_text(encoding="utf-8") if program else None
        # A group of this test's own: Tansu never assigns a newcomer with other topics to a
        # group whose last generation had two members (an earlier test's fleet).
        options = ConsumeOptions(group=f"g-{settings.prefix}", batch_size=500, batch_ms=200,
                                 stop_when_idle_s=idle_s)  # fmt: skip
        return consume(conn, settings, options, source)


def undo_0010(conn: Any) -> None:
    """What migration 0010 (amendments) did, undone: for tests of earlier migrations."""
    conn.execute("DROP TABLE public.program_amendments")
    conn.execute("ALTER TABLE public.generations DROP COLUMN amendments")
    conn.execute("ALTER TABLE gen_main.inbox DROP COLUMN program_hash")


# ------------------------------------------------------------------ amendments
# A case with amendments.json is fed in parts, as ../shared/conformance/check does: the
# stream is cut before the first line whose readable occurred_at is at or after each
# effective_at, and each part after the first follows `loyalty program amend`.

RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def amendments_of(case: Path) -> list[tuple[str, Path]]:
    """(effective_at as written, the whole program from then on) of each amendment, in order."""
    listed = json.loads((case / "amendments.json").read_text(encoding="utf-8"))
    return [(a["effective_at"], case / a["program"]) for a in listed]


def _readable_instant(text: Any) -> datetime | None:
    """The checker's reading of an instant: RFC 3339 with an offset, else None."""
    if not isinstance(text, str) or not RFC3339.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text.upper().replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _occurred_at_of(line: str) -> datetime | None:
    try:
        raw = json.loads(line)
    except ValueError:
        return None
    return _readable_instant(raw.get("occurred_at")) if isinstance(raw, dict) else None


def split_stream(lines: list[str], effective_ats: list[str]) -> list[list[str]]:
    """The checker's split_stream: part k+1 starts at the first line whose readable
    occurred_at is >= the k-th effective_at, so every input before it is earlier."""
    cuts, at = [], 0
    for effective_at in effective_ats:
        limit = _readable_instant(effective_at)
        assert limit is not None, effective_at
        while at < len(lines) and not ((t := _occurred_at_of(lines[at])) and t >= limit):
            at += 1
        cuts.append(at)
    bounds = [0, *cuts, len(lines)]
    return [lines[a:b] for a, b in itertools.pairwise(bounds)]


def write_parts(case: Path, folder: Path) -> list[Path]:
    """The case's events.jsonl cut around its amendments, as part-1.jsonl, part-2.jsonl..."""
    lines = (case / "events.jsonl").read_text(encoding="utf-8").splitlines()
    parts = split_stream(lines, [at for at, _ in amendments_of(case)])
    paths = []
    for k, part in enumerate(parts, 1):
        paths.append(folder / f"part-{k}.jsonl")
        paths[-1].write_text("".join(line + "\n" for line in part), encoding="utf-8")
    return paths


def amend(url: str, program: Path, effective_at: str) -> amendments.Amended:
    """`loyalty program amend PROGRAM --effective-at EFFECTIVE_AT` on the live generation."""
    with connect(url) as conn:
        at = datetime.fromisoformat(effective_at)
        return amendments.amend(conn, program.read_text(encoding="utf-8"), str(program), at, "test")


def ingest_amended(url: str, case: Path, folder: Path, batch_size: int = 5000) -> None:
    """Part 1 under the case's program, then each amendment and the part after it."""
    first, *rest = write_parts(case, folder)
    ingest(url, first, case / "program.toml", batch_size)
    for (effective_at, program), part in zip(amendments_of(case), rest, strict=True):
        assert amend(url, program, effective_at).new
        ingest(url, part, None, batch_size)
