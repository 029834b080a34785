"""`loyalty verify`: keyed hash chain and its anchors, versions, conservation, and projections
against a rebuild."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from loyalty_ledger.ledger import anchors
from loyalty_ledger.ledger import key as ledger_key
from loyalty_ledger.ledger.anchors import Filed
from loyalty_ledger.ledger.chain import GENESIS, chain_start, keyed_hasher, legacy_chain_hash
from loyalty_ledger.ledger.entries import COLUMNS
from loyalty_ledger.ledger.key import LedgerKey
from loyalty_ledger.progress import Progress
from loyalty_ledger.projectors import runner
from loyalty_ledger.store import chain
from loyalty_ledger.store.db import Connection

CHAIN_FETCH_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class Problem:
    check: str  # chain | anchor | versions | conservation | projection
    where: str  # the first broken row
    detail: str

    def __str__(self) -> str:
        return f"{self.check}: {self.where}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Report:
    entries: int
    customers: int
    projections: int
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(
    conn: Connection, progress: Progress | None = None, anchor_files: Sequence[Path] = ()
) -> Report:
    """Every check, each reporting its first broken row; the database is left as it was.

    The chain is checked against the ledger key and the anchors in the anchor file (if it
    exists) and in `anchor_files` (lines of `loyalty ledger anchor`).
    """
    key = ledger_key.current()
    filed, problems = _anchors(key, anchor_files)
    entries, chained = _chain(conn, key, filed, progress)
    problems = chained + _disowned(conn, filed) + problems
    problems += [p for p in (_versions(conn), _conservation(conn)) if p is not None]
    projected = runner.tables()
    problems += _projections(conn)
    row = conn.execute("SELECT count(DISTINCT customer_id) FROM ledger").fetchone()
    return Report(entries, int(row[0]) if row else 0, len(projected), problems)


def _anchors(key: LedgerKey, files: Sequence[Path]) -> tuple[list[Filed], list[Problem]]:
    """The anchors whose MAC checks; a line that does not check is a problem of its own."""
    good: list[Filed] = []
    problems: list[Problem] = []
    for path, missing_ok in [(ledger_key.anchor_file(), True), *((f, False) for f in files)]:
        found, bad = anchors.read(path, key, missing_ok=missing_ok)
        good += found
        for item in bad:
            if isinstance(item, str):
                where, _, why = item.rpartition(": ")
                problems.append(Problem("anchor", where, why))
            else:
                problems.append(Problem(
                    "anchor", item.where, f"signed with another key (id {item.anchor.key_id}), "
                    f"not the one in {key.origin} (id {key.key_id})",
                ))  # fmt: skip
    return good, problems[:1] + (
        [Problem("anchor", f"{len(problems) - 1} more lines", "do not check either")]
        if len(problems) > 1 else []
    )  # fmt: skip


def _chain(
    conn: Connection, key: LedgerKey, filed: list[Filed], progress: Progress | None
) -> tuple[int, list[Problem]]:
    """Each entry's hash must follow from its content and the stored hash of the one before,
    keyed from the generation's first keyed seq on; and the ledger must hold every anchored
    head as anchored. An entry changed, removed or inserted behind the ledger's back breaks
    the chain there; a deleted tail or a chain recomputed without the key misses an anchor."""
    total_row = conn.execute("SELECT count(*) FROM ledger").fetchone()
    total = int(total_row[0]) if total_row else 0
    record = chain.record(conn)
    why = chain.another_key(record, key)
    if why is not None:
        return total, [Problem("chain", f"generation {record.generation}", why)]
    # Anchors of other ledgers (another database, a recreated one) may share the file.
    mine = [
        f
        for f in filed
        if (f.anchor.chain_id, f.anchor.generation) == (record.chain_id, record.generation)
    ]
    pending: dict[int, list[Filed]] = {}
    for f in mine:
        if f.anchor.seq > 0:
            pending.setdefault(f.anchor.seq, []).append(f)
    keyed, keyed_from = keyed_hasher(key.secret), record.keyed_from
    columns = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    prev, n, last, found = GENESIS, 0, 0, None
    missed: list[tuple[int, Problem]] = []
    with conn.transaction(), conn.cursor(name="verify_chain") as cur:
        cur.itersize = CHAIN_FETCH_ROWS
        cur.execute(sql.SQL("SELECT seq, hash, {} FROM ledger ORDER BY seq").format(columns))
        for seq, stored, *values in cur:
            n += 1
            digest = bytes(stored)
            if seq >= keyed_from and last < keyed_from:  # the first keyed entry
                prev = chain_start(key.secret, prev, record.chain_id)
            if found is None:
                entry = tuple(values)
                hashed = keyed(prev, entry) if seq >= keyed_from else legacy_chain_hash(prev, entry)
                if hashed != digest:
                    found = _broken(seq, values, seq >= keyed_from)
            if seq in pending:
                missed += [(seq, p) for f in pending.pop(seq) if (p := _at(f, seq, digest, n))]
            prev, last = digest, seq
            if progress and n % CHAIN_FETCH_ROWS == 0:
                progress(n, total)
    if progress:
        progress(n, total)
    missed += [(seq, _missing(f, last, n)) for seq, fs in pending.items() for f in fs]
    # after the rows': a changed record shows as rows that differ from their anchors too
    missed += [(last + 1, p) for f in mine if (p := _keyed_from(f, record.keyed_from))]
    return n, ([found] if found else []) + _first(missed)


def _disowned(conn: Connection, filed: list[Filed]) -> list[Problem]:
    """Anchors of this ledger whose generation it no longer has: renamed or dropped behind
    its back (a generation is never dropped by the package)."""
    record = chain.record(conn)
    rows = conn.execute(
        "SELECT name FROM public.generations WHERE chain_id = %s", (record.chain_id,)
    ).fetchall()
    names = {name for (name,) in rows}
    return [
        Problem("anchor", f"generation {f.anchor.generation}", f"is anchored ({f.where}) but "
                "this ledger has no such generation: it was renamed or dropped")
        for f in filed
        if f.anchor.chain_id == record.chain_id and f.anchor.generation not in names
    ][:1]  # fmt: skip


def _broken(seq: int, values: list[object], keyed: bool) -> Problem:
    return Problem(
        "chain", f"ledger seq {seq} (customer {values[0]}, version {values[1]})",
        "does not follow from its content and the entry before it"
        f"{' under the ledger key' if keyed else ''}: the ledger was changed behind its back "
        "at or just before this entry",
    )  # fmt: skip


def _at(filed: Filed, seq: int, digest: bytes, entries: int) -> Problem | None:
    """The ledger's row at an anchored seq, against its anchor."""
    anchor = filed.anchor
    if digest.hex() != anchor.hash:
        return Problem(
            "anchor", f"ledger seq {seq}", f"differs from its anchor of {anchor.at} "
            f"({filed.where}): an entry up to it was changed, or the chain recomputed",
        )  # fmt: skip
    if entries != anchor.entries:
        what = "deleted" if entries < anchor.entries else "inserted"
        return Problem(
            "anchor", f"ledger seq {seq}", f"has {entries} entries up to it, its anchor of "
            f"{anchor.at} ({filed.where}) {anchor.entries}: entries before it were {what}",
        )  # fmt: skip
    return None


def _missing(filed: Filed, last: int, entries: int) -> Problem:
    """An anchored seq the ledger does not hold."""
    anchor = filed.anchor
    told = (f"anchor of {anchor.at} ({filed.where}): {anchor.entries} entries up to seq "
            f"{anchor.seq}, the ledger has {entries}")  # fmt: skip
    if anchor.seq > last:
        return Problem("anchor", f"entries after seq {last} were deleted", told)
    return Problem("anchor", f"ledger seq {anchor.seq} was deleted", told)


def _keyed_from(filed: Filed, keyed_from: int) -> Problem | None:
    anchor = filed.anchor
    if anchor.keyed_from == keyed_from:
        return None
    return Problem(
        "anchor", f"generation {anchor.generation}", f"its keyed chain starts at seq "
        f"{keyed_from}, its anchor of {anchor.at} ({filed.where}) says {anchor.keyed_from}: "
        "the generation's chain record was changed",
    )  # fmt: skip


def _first(missed: list[tuple[int, Problem]]) -> list[Problem]:
    """The anchor problem at the lowest seq, and how many more there are."""
    if not missed:
        return []
    missed.sort(key=lambda m: m[0])
    more = len(missed) - 1
    return [missed[0][1]] + (
        [Problem("anchor", f"{more} more anchors", "disagree with the ledger too")] if more else []
    )


_VERSION_GAP = """
SELECT seq, customer_id, version, previous FROM (
    SELECT seq, customer_id, version,
           lag(version) OVER (PARTITION BY customer_id ORDER BY seq) AS previous
    FROM ledger
) v
WHERE version <> coalesce(previous, 0) + 1
ORDER BY seq
LIMIT 1
"""


def _versions(conn: Connection) -> Problem | None:
    """A customer's entries are numbered 1, 2, 3... in seq order: no gap, no repeat."""
    row = conn.execute(_VERSION_GAP).fetchone()
    if row is None:
        return None
    seq, customer_id, version, previous = row
    return Problem(
        "versions", f"ledger seq {seq} (customer {customer_id})",
        f"version {version} follows version {previous or 0}",
    )  # fmt: skip


_CONSERVATION = """
WITH ledger_sums AS (
    SELECT customer_id,
           sum(CASE WHEN kind IN ('credit', 'adjustment_credit', 'transfer_in') THEN points
                    WHEN kind IN ('redemption', 'reversal', 'expiry', 'adjustment_debit',
                                  'transfer_out') THEN -points
                    ELSE 0 END) AS points
    FROM ledger GROUP BY customer_id
)
SELECT l.customer_id, l.points, b.balance, s.held
FROM ledger_sums l
LEFT JOIN balance b USING (customer_id)
LEFT JOIN LATERAL (
    SELECT (SELECT coalesce(sum((lot->>0)::bigint), 0)
            FROM jsonb_array_elements(c.state->'lots') lot) - (c.state->>'debt')::bigint AS held
    FROM customer_state c WHERE c.customer_id = l.customer_id
) s ON true
WHERE l.points IS DISTINCT FROM coalesce(b.balance, 0) OR l.points IS DISTINCT FROM s.held
ORDER BY l.customer_id
LIMIT 1
"""


def _conservation(conn: Connection) -> Problem | None:
    """Per customer, the version 2 conservation: credits + adjustments + transfers in
    - redemptions - reversals - expiries - transfers out = the balance projection = the
    points held in the engine's lots, less its debt. (The balance projection's CHECK holds
    its totals to the same sum.)"""
    row = conn.execute(_CONSERVATION).fetchone()
    if row is None:
        return None
    customer_id, points, balance, held = row
    return Problem(
        "conservation", f"customer {customer_id}",
        f"the ledger sums to {points} points, the balance projection says "
        f"{'nothing' if balance is None else balance}, the customer's state holds "
        f"{'nothing' if held is None else held}",
    )  # fmt: skip


def _projections(conn: Connection) -> list[Problem]:
    """Rebuild every projection into a scratch schema and compare row for row.

    All in one transaction that is rolled back: nothing is left behind, and the
    live projections are only read.
    """
    scratch = f"verify_{uuid.uuid4().hex[:12]}"
    problems: list[Problem] = []
    with conn.transaction(force_rollback=True):
        # One snapshot: writers may go on meanwhile, checkpoints and rows stay together.
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        generation = conn.execute("SELECT current_schema()").fetchone()
        assert generation is not None
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(scratch)))
        conn.execute(
            sql.SQL("SET LOCAL search_path TO {}, {}, public").format(
                sql.Identifier(scratch), sql.Identifier(str(generation[0]))
            )
        )
        for projection in runner.tables():
            try:
                with conn.transaction():  # a savepoint: a failed rebuild spoils no other check
                    _rebuild_into(conn, projection.name, projection.create, projection.apply or "")
            except psycopg.Error as e:  # e.g. its own assertions, on a ledger changed behind it
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                problems.append(Problem("projection", projection.name, f"a rebuild fails: {first}"))
                continue
            problem = _difference(conn, projection.name, str(generation[0]), scratch)
            if problem is not None:
                problems.append(problem)
    return problems


def _rebuild_into(conn: Connection, name: str, create: str, apply: str) -> None:
    """The projection from seq 0 up to where the one in place stands (its checkpoint)."""
    row = conn.execute("SELECT seq FROM projection_checkpoints WHERE name = %s", (name,)).fetchone()
    conn.execute(sql.SQL(create))  # trusted files, not input
    conn.execute(sql.SQL(apply), {"after": 0, "upto": int(row[0]) if row else 0})


_DIFFERENCE = (
    "SELECT 'projected' AS side, * FROM (SELECT * FROM {live} EXCEPT ALL SELECT * FROM {fresh}) a "
    "UNION ALL "
    "SELECT 'rebuilt', * FROM (SELECT * FROM {fresh} EXCEPT ALL SELECT * FROM {live}) b "
    "LIMIT 1"
)


def _difference(conn: Connection, name: str, schema: str, scratch: str) -> Problem | None:
    row = conn.execute(
        sql.SQL(_DIFFERENCE).format(
            live=sql.Identifier(schema, name), fresh=sql.Identifier(scratch, name)
        )
    ).fetchone()
    if row is None:
        return None
    side, *values = row
    what = "has a row a rebuild does not" if side == "projected" else "lacks a row a rebuild has"
    return Problem("projection", f"{name} row {_short(values)}", what)


def _short(values: list[object]) -> str:
    text = ", ".join("null" if v is None else str(v) for v in values)
    return f"({text[:120]}{'…' if len(text) > 120 else ''})"
