"""`loyalty report`: one self-contained HTML file whose every chart draws in headless
Chromium (Debian's `chromium`; a missing browser fails the test, it never skips)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from analytics_cases import V2_CASE, case_database

from loyalty_ledger.analytics import report
from loyalty_ledger.store.db import connect

CHARTS = {  # chart id -> what proves its marks were drawn
    "tier-distribution": r'<path class="js-fill" d="M[\d.]',
    "points-flow": r'<g class="point"><path d="M[\d.]',
    "liability-by-expiry": r'<g class="point"><path d="M[\d.]',
    "cohort-retention": r'<image [^>]*href="data:image/png;base64,',
    "segment-sizes": r'<g class="point"><path d="M[\d.]',
    "top-customers": r'<g class="point"><path d="M[\d.]',
    "campaigns": r'<g class="point"><path d="M[\d.]',
    "memberships": r'<g class="point"><path d="M[\d.]',
}
BROWSER = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--virtual-time-budget=5000",
]  # fmt: skip


def chromium(tmp_path: Path, *args: str) -> str:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is missing: apt-get install chromium (.ci/run installs it)")
    done = subprocess.run(
        [binary, *BROWSER, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout


def sections(dom: str) -> dict[str, str]:
    parts = re.split(r'<section class="chart" data-chart="([a-z-]+)">', dom)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_report_draws_every_chart(pg_server: Any, template_db: str, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    with case_database(pg_server, template_db, V2_CASE) as url:  # campaigns and plans too
        done = subprocess.run(
            [sys.executable, "-m", "loyalty_ledger.cli", "report", "--out", str(out),
             "--point-value", "0.02"],
            env={**os.environ, "LOYALTY_DATABASE_URL": url}, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=300, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    page = out.read_text(encoding="utf-8")
    # self-contained: nothing to fetch (plotly.js is inlined)
    assert not re.search(r"<script[^>]+src=|<link |@import|<iframe", page)
    assert "liability at 0.02 a point" in page
    dom = chromium(tmp_path, "--dump-dom", out.as_uri())
    drawn = sections(dom)
    assert sorted(drawn) == sorted(CHARTS)
    for chart, mark in CHARTS.items():
        assert 'class="main-svg"' in drawn[chart], f"{chart}: no plot"
        assert re.search(mark, drawn[chart]), f"{chart}: plot without marks"


def test_a_version_1_program_has_no_campaign_or_membership_chart(
    pg_server: Any, template_db: str
) -> None:
    with case_database(pg_server, template_db) as url, connect(url) as conn:
        built = report.build(conn)
    assert sorted(built.charts) == sorted(set(CHARTS) - {"campaigns", "memberships"})


def test_report_refuses_bad_arguments(tmp_path: Path) -> None:
    missing = str(tmp_path / "no" / "r.html")
    for args, fragment in (
        (["--top", "0"], "--top"),
        (["--point-value", "abc"], "--point-value"),
        (["--out", missing], "does not exist"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "loyalty_ledger.cli", "report", *args],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 2 and fragment in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_a_report_of_a_handful_of_buyers_still_renders(database_url: str, tmp_path: Path) -> None:
    """The sample shop's seven customers give a degenerate CLV fit: no predictions, no error."""
    from support import ingest

    examples = Path(__file__).parents[2] / "examples"
    ingest(database_url, examples / "events.jsonl", examples / "program.toml")
    out = tmp_path / "report.html"
    done = subprocess.run(
        [sys.executable, "-m", "loyalty_ledger.cli", "report", "--out", str(out)],
        env={**os.environ, "LOYALTY_DATABASE_URL": database_url}, capture_output=True,
        text=True, stdin=subprocess.DEVNULL, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert 'data-chart="top-customers"' in out.read_text(encoding="utf-8")
