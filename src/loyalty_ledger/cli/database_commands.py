"""The embedded database and what analysts read: db start|stop|status|url|grant-analyst,
report, analytics refresh."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable

from loyalty_ledger import log
from loyalty_ledger.cli.arguments import LIMIT, Commands, Parser, UsageError
from loyalty_ledger.cli.resources import EMBEDDED_ROOT, database, progress
from loyalty_ledger.store import embedded
from loyalty_ledger.store.db import psycopg_url, redact


def add_db(sub: Commands[Parser]) -> None:
    """`loyalty db ACTION`: the embedded PostgreSQL's life, its URL, analyst logins."""
    p = sub.add_parser("db", help="the embedded PostgreSQL in ./.loyalty/, and analyst logins")
    db = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions: tuple[tuple[str, str, Callable[[argparse.Namespace], int]], ...] = (
        ("start", "start it and keep it running", db_start), ("stop", "stop it", db_stop),
        ("status", "is it running (exit 3 if not)", db_status),
        ("url", "print the database URL", db_url),
    )  # fmt: skip
    for action, text, run in actions:
        db.add_parser(action, help=text).set_defaults(run=run)
    _add_grant_analyst(db)


def db_start(args: argparse.Namespace) -> int:
    server = embedded.start_detached(EMBEDDED_ROOT)
    print(psycopg_url(server.url))
    return 0


def db_stop(args: argparse.Namespace) -> int:
    print("stopped" if embedded.stop_detached(EMBEDDED_ROOT) else "not running")
    return 0


def db_status(args: argparse.Namespace) -> int:
    found = embedded.status(EMBEDDED_ROOT)
    print(f"running: {psycopg_url(found.url)}" if found else "not running")
    return 0 if found else 3


def db_url(args: argparse.Namespace) -> int:
    url = os.environ.get("LOYALTY_DATABASE_URL")
    found = embedded.status(EMBEDDED_ROOT)
    if url:  # a libpq URL: psql "$(loyalty db url)" works
        print(psycopg_url(redact(url)))
    elif found:
        print(psycopg_url(found.url))
    else:
        raise UsageError("the embedded database is not running: start it with `loyalty db start`")
    return 0


def _add_grant_analyst(db: Commands[Parser]) -> None:
    q = db.add_parser(
        "grant-analyst",
        help="create a read-only login for the analyst views (schema live), without PII",
    )
    q.add_argument("name", help="the role to create (or update)")
    q.add_argument("--password", help="its password (default: none; set one for TCP logins)")
    q.add_argument("--with-pii", action="store_true", help="also let it read members (PII)")
    q.set_defaults(run=grant_analyst)


def grant_analyst(args: argparse.Namespace) -> int:
    from loyalty_ledger.admin.analysts import grant_analyst as grant

    with database() as conn:
        done = grant(conn, args.name, args.password, args.with_pii)
    print(f"{'created' if done.created else 'updated'} analyst login {done.role}: "
          f"reads the {done.relations} relations of schema live"
          f"{' and members (PII)' if done.with_pii else ', no PII'}")  # fmt: skip
    return 0


def add_report(sub: Commands[Parser]) -> None:
    """`loyalty report`: the managers' self-contained HTML report."""
    p = sub.add_parser("report", help="write the managers' HTML report (charts, self-contained)")
    p.add_argument("--out", default="report.html", help="the HTML file (report.html)")
    p.add_argument("--top", type=LIMIT, default=20, help="most valuable customers listed (20)")
    p.add_argument("--point-value", help="money value of one point (default 0.01)")
    p.set_defaults(run=report)


def report(args: argparse.Namespace) -> int:
    import time
    from decimal import Decimal
    from pathlib import Path

    from loyalty_ledger.analytics import report as html_report
    from loyalty_ledger.analytics.refresh import refresh
    from loyalty_ledger.generations.programs import adopt
    from loyalty_ledger.projectors import runner

    point_value = None
    if args.point_value is not None:
        if re.fullmatch(r"[0-9]{1,12}(\.[0-9]{1,6})?", args.point_value) is None:
            raise UsageError(
                f"--point-value {args.point_value[:40]!r} is not a money amount: e.g. 0.01"
            )
        point_value = Decimal(args.point_value)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise UsageError(f"cannot write {args.out!r}: folder {str(out.parent)!r} does not exist")
    started = time.monotonic()
    with database() as conn, progress("report") as update:
        runner.catch_up(conn)
        refresh(conn, adopt(conn, None))
        if point_value is not None:
            conn.execute("SELECT set_config('loyalty.point_value', %s, false)", (str(point_value),))
        written = html_report.write(conn, out, args.top, update)
    log.get("report").info("written", path=str(out), charts=list(written.charts),
                           seconds=round(time.monotonic() - started, 2))  # fmt: skip
    return 0


def add_analytics(sub: Commands[Parser]) -> None:
    """`loyalty analytics refresh`: tier levels for the analyst views, the CLV model."""
    p = sub.add_parser("analytics", help="the analyst views' tier levels and CLV model")
    analytics = p.add_subparsers(dest="analytics_command", required=True, metavar="ACTION")
    q = analytics.add_parser(
        "refresh", help="publish the program's tier levels and refit the CLV model if stale"
    )
    q.set_defaults(run=analytics_refresh)


def analytics_refresh(args: argparse.Namespace) -> int:
    from loyalty_ledger.analytics.refresh import refresh
    from loyalty_ledger.generations.programs import adopt
    from loyalty_ledger.projectors import runner

    with database() as conn, progress("refreshing") as update:
        runner.catch_up(conn, progress=lambda _name, done, total: update(done, total))
        done = refresh(conn, adopt(conn, None))
    fitted = done.fitted
    log.get("analytics").info(
        "refreshed", tiers=done.tiers, refit=done.refit,
        customers=fitted.customers if fitted else None,
        model={k: round(getattr(fitted.bgnbd, k), 6) for k in ("r", "alpha", "a", "b")}
        if fitted else None,
    )  # fmt: skip
    return 0
