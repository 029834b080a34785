"""Projection catch-up cost: each projection's `apply` of a git ref beside the working tree's.

    python benchmarks/projections.py CONNINFO [--schema gen_main] [--old-ref main]
                                     [--step 45000] [--only NAME,...]

Over a database that already holds a ledger (e.g. `loyalty ingest` of a stream), in
the generation schema `--schema`:

1. Creates two scratch schemas, `pbench_old` (projections/ as of `--old-ref`) and
   `pbench_new` (the working tree's), each with every projection's `create` part.
2. Replays the whole ledger into both, `--step` seqs at a time (45,000: about one
   ingest batch of 20,000 inputs; 500,000 is a rebuild's step), each projection's
   step timed and committed on its own, old and new interleaved (which goes first
   alternates), so both see the same machine load.
3. Prints seconds per projection, old and new, and the rows that differ between the
   two (EXCEPT ALL both ways): any row that differs is a bug in the new SQL.
The scratch schemas are dropped at the end (`--keep` keeps them).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import psycopg
from psycopg import sql

from loyalty_ledger.projectors.sql import ORDER, Projection, _parts, projections

REPO = Path(__file__).resolve().parents[1]
SIDES = ("old", "new")


def old_projections(ref: str) -> tuple[Projection, ...]:
    found = []
    for name in ORDER:
        text = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{ref}:projections/{name}.sql"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        parts = _parts(text)
        found.append(Projection(name, parts["create"], parts.get("apply")))
    return tuple(found)


def use(conn: psycopg.Connection, side: str, schema: str) -> None:
    conn.execute(
        sql.SQL("SET search_path TO {}, {}, public").format(
            sql.Identifier(f"pbench_{side}"), sql.Identifier(schema)
        )
    )


def install(conn: psycopg.Connection, side: str, schema: str, chosen: list[Projection]) -> None:
    target = sql.Identifier(f"pbench_{side}")
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(target))
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(target))
    use(conn, side, schema)
    for projection in chosen:
        conn.execute(sql.SQL(projection.create))  # trusted files
    conn.commit()


def replay(
    conn: psycopg.Connection, schema: str, sides: dict[str, list[Projection]], step: int
) -> dict[tuple[str, str], float]:
    row = conn.execute(
        sql.SQL("SELECT coalesce(max(seq), 0) FROM {}").format(sql.Identifier(schema, "ledger"))
    ).fetchone()
    upto_max = int(row[0]) if row else 0
    seconds: dict[tuple[str, str], float] = defaultdict(float)
    for turn, after in enumerate(range(0, upto_max, step)):
        upto = min(after + step, upto_max)
        order = SIDES if turn % 2 == 0 else SIDES[::-1]
        for index in range(len(sides["old"])):
            for side in order:
                projection = sides[side][index]
                assert projection.apply is not None
                use(conn, side, schema)
                conn.commit()
                started = time.perf_counter()
                conn.execute(sql.SQL(projection.apply), {"after": after, "upto": upto})
                conn.commit()
                seconds[(projection.name, side)] += time.perf_counter() - started
        print(f"  seqs ({after}, {upto}]", file=sys.stderr)
    return seconds


def differences(conn: psycopg.Connection, name: str) -> tuple[int, int]:
    old, new = sql.Identifier("pbench_old", name), sql.Identifier("pbench_new", name)
    counts = []
    for left, right in ((old, new), (new, old)):
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM (SELECT * FROM {} EXCEPT ALL SELECT * FROM {}) d").format(
                left, right
            )
        ).fetchone()
        counts.append(int(row[0]) if row else -1)
    conn.commit()
    return counts[0], counts[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("conninfo")
    parser.add_argument("--schema", default="gen_main")
    parser.add_argument("--old-ref", default="main")
    parser.add_argument("--step", type=int, default=45_000)
    parser.add_argument("--only", default="", help="comma-separated projection names")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    only = {name for name in args.only.split(",") if name}
    sides = {"old": list(old_projections(args.old_ref)), "new": list(projections())}
    with psycopg.connect(args.conninfo) as conn:
        for side, chosen in sides.items():
            install(conn, side, args.schema, chosen)
        tables = {
            side: [p for p in chosen if p.table and (not only or p.name in only)]
            for side, chosen in sides.items()
        }
        seconds = replay(conn, args.schema, tables, args.step)
        print(f"{'projection':24} {'old s':>8} {'new s':>8} {'old-new':>8} {'new-old':>8}")
        for projection in tables["new"]:
            name = projection.name
            missing, extra = differences(conn, name)
            old, new = seconds[(name, "old")], seconds[(name, "new")]
            print(f"{name:24} {old:8.3f} {new:8.3f} {missing:8} {extra:8}")
        total_old = sum(v for (_, side), v in seconds.items() if side == "old")
        total_new = sum(v for (_, side), v in seconds.items() if side == "new")
        print(f"{'total':24} {total_old:8.3f} {total_new:8.3f}")
        if not args.keep:
            for side in SIDES:
                conn.execute(
                    sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(f"pbench_{side}"))
                )
            conn.commit()


if __name__ == "__main__":
    main()
