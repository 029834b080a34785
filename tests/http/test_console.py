"""The support console on a real server and database: its routes over plain HTTP (sign-in,
redirects, escaping), and a support agent's visit driven in Debian's headless Chromium.

Set LOYALTY_WRITE_SCREENSHOT=1 to write docs/console.png from the browser run (CI leaves
the tree clean).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from playwright.sync_api import Browser, Page, sync_playwright

from loyalty_ledger.http.auth import CONSOLE_COOKIE
from loyalty_ledger.http.console import PAGE_SIZE
from served import Served, served

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"
SCREENSHOT = ROOT / "docs" / "console.png"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
HOSTILE = '<script>alert("x")</script>/../?a=1#&amp;'


def _post_examples(server: Served, extra: Sequence[dict[str, Any]] = ()) -> None:
    """The example story through the API (ticks need admin), and `extra` after it."""
    lines = (EXAMPLES / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines] + list(extra)
    with server.client("admin") as client:
        answer = client.post("/v1/events", json=events)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert len(results) == len(events)
    assert all(r["outcome"] == "accepted" for r in results[len(lines) :]), results[len(lines) :]


@contextmanager
def _signed_in(server: Served, scope: str = "support") -> Iterator[httpx.Client]:
    """A client holding the console cookie of a `scope` key (no Bearer header)."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        answer = client.post("/console/sign-in", data={"key": server.keys[scope]})
        assert answer.status_code == 303, answer.text
        yield client


def test_the_console(database_url: str, tmp_path: Path) -> None:
    """One server for both (its start is most of the time): plain HTTP, then the browser."""
    hostile_signup = {
        "event_id": "hostile-1", "type": "signup", "occurred_at": "2025-03-30T12:00:00Z",
        "customer_id": HOSTILE, "email": "x@example.org", "name": "X", "channel": "web",
    }  # fmt: skip
    with served(database_url, EXAMPLES / "program.toml", tmp_path) as server:
        _post_examples(server, [hostile_signup])
        _routes_sign_in_redirect_and_escape(server)
        with _browser() as browser:
            _a_support_agent_in_chromium(server, browser, tmp_path)


def _routes_sign_in_redirect_and_escape(server: Served) -> None:
    """The routes over plain HTTP: who gets in, where the rest are sent, what is escaped."""
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        home = anonymous.get("/console")
        assert home.status_code == 200 and 'action="/console/sign-in"' in home.text
        assert "no-store" in home.headers["cache-control"]
        assert "default-src 'none'" in home.headers["content-security-policy"]
        gone = anonymous.get("/console/customers/anna")
        assert gone.status_code == 303 and gone.headers["location"] == "/console"
        # A Bearer key is not a console session: only the cookie signs in.
        bearer = {"Authorization": f"Bearer {server.keys['admin']}"}
        assert anonymous.get("/console/customers/anna", headers=bearer).status_code == 303
        wrong = anonymous.post("/console/sign-in", data={"key": "ll_not-a-key"})
        assert wrong.status_code == 401 and "unknown or revoked" in wrong.text
        small = anonymous.post("/console/sign-in", data={"key": server.keys["pos"]})
        assert small.status_code == 403 and "test-pos" in small.text
        assert CONSOLE_COOKIE not in small.cookies
        css = anonymous.get("/console/assets/console.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert anonymous.get("/console/assets/..%2Fconsole.py").status_code == 404

    ok = httpx.post(f"{server.url}/console/sign-in", data={"key": server.keys["support"]})
    assert ok.status_code == 303 and ok.headers["location"] == "/console"
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie

    with _signed_in(server) as agent:
        looked = agent.get("/console/customers", params={"id": HOSTILE})
        assert looked.status_code == 303
        page = agent.get(looked.headers["location"])
        assert page.status_code == 200, page.text
        assert "<script>" not in page.text and "&lt;script&gt;" in page.text
        unknown = agent.get("/console/customers/" + quote("<b>nobody</b>", safe=""))
        assert unknown.status_code == 404 and "No such customer" in unknown.text
        assert "<b>nobody" not in unknown.text and "&lt;b&gt;nobody" in unknown.text
        out = agent.post("/console/sign-out")
        assert out.status_code == 303 and CONSOLE_COOKIE not in agent.cookies
        assert agent.get("/console/customers/anna").status_code == 303


@contextmanager
def _browser() -> Iterator[Browser]:
    """Debian's chromium, headless (Playwright never downloads a browser here)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _sign_in(page: Page, url: str, key: str) -> int:
    """Fill the sign-in form with `key`; the status the sign-in answered (303 on success)."""
    page.goto(f"{url}/console")
    page.fill("#key", key)
    with page.expect_response(lambda r: r.url.endswith("/console/sign-in")) as answer:
        page.click("button:has-text('Sign in')")
    page.wait_for_load_state()
    return answer.value.status


def _seqs(page: Page) -> list[int]:
    """The ledger seqs of the statement rows on the page, in order."""
    return [int(s) for s in page.locator("table.statement tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.seq)")]  # fmt: skip


def _a_support_agent_in_chromium(server: Served, browser: Browser, tmp_path: Path) -> None:
    """Sign in (a wrong key and a pos key first), look anna up, page, filter, sign out."""
    with server.client("read") as api:
        card = api.get("/v1/customers/anna").json()
        entries = api.get("/v1/customers/anna/statement", params={"limit": 500}).json()
    assert len(entries["entries"]) > PAGE_SIZE  # so there is a page to turn
    page = browser.new_page(viewport={"width": 1280, "height": 900})

    assert _sign_in(page, server.url, "ll_wrong") == 401
    assert "unknown or revoked" in page.inner_text("main")
    assert _sign_in(page, server.url, server.keys["pos"]) == 403
    assert "Not for this key" in page.inner_text("main")
    page.click("button:has-text('Use another key')")
    assert _sign_in(page, server.url, server.keys["support"]) == 303
    assert "test-support" in page.inner_text("header")

    page.fill("#id", "anna")
    page.click("button:has-text('Look up')")
    page.wait_for_url("**/console/customers/anna")
    shown = page.get_by_test_id("balance").inner_text()
    assert int(shown.replace(",", "")) == card["balance"]
    assert _seqs(page) == [e["seq"] for e in entries["entries"][:PAGE_SIZE]]
    shot = SCREENSHOT if os.environ.get("LOYALTY_WRITE_SCREENSHOT") == "1" else None
    page.screenshot(path=shot or tmp_path / "console.png", full_page=True)

    page.click("a[rel=next]")
    page.wait_for_url("**after=*")
    assert _seqs(page) == [e["seq"] for e in entries["entries"][PAGE_SIZE : 2 * PAGE_SIZE]]

    page.click("a.chip:has-text('purchase')")
    page.wait_for_url("**cause=purchase*")
    causes = page.locator("table.statement tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.cause)"
    )
    expected = [e["seq"] for e in entries["entries"] if e["cause"] == "purchase"]
    assert causes and set(causes) == {"purchase"}
    assert _seqs(page) == expected[:PAGE_SIZE]

    page.click("button:has-text('Sign out')")
    page.wait_for_selector("#key")
    page.goto(f"{server.url}/console/customers/anna")
    assert page.url.endswith("/console") and page.locator("#key").count() == 1
