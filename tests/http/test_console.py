"""The support console on a real server and database: its routes over plain HTTP (sign-in,
redirects, escaping, a goodwill correction's token and idempotency), and a support agent's
visit driven in Debian's headless Chromium (a correction double-clicked among it).

Set LOYALTY_WRITE_SCREENSHOT=1 to write docs/console.png from the browser run (CI leaves
the tree clean).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from playwright.sync_api import Browser, Page, sync_playwright

from loyalty_ledger.http.auth import CONSOLE_COOKIE
from loyalty_ledger.http.console import PAGE_SIZE
from loyalty_ledger.ledger.entries import BALANCE_SIGN, Kind
from loyalty_ledger.store.db import connect
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
        _corrections_over_http(server, database_url)
        with _browser() as browser:
            _a_support_agent_in_chromium(server, browser, tmp_path)
            _a_correction_in_chromium(server, browser, database_url)


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


# ------------------------------------------------------------------ corrections

_FORM_FIELDS = ("customer_id", "form_id", "token")


def _form_of(html: str) -> dict[str, str]:
    """The hidden fields of the correction form of a customer page."""
    found = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', html))
    assert set(found) == set(_FORM_FIELDS), found
    return found


def _adjustments(url: str, event_id: str) -> list[tuple[str, str, int, str]]:
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT customer_id, kind, points, reason FROM ledger WHERE event_id = %s "
            "AND kind LIKE 'adjustment%%'", (event_id,),
        ).fetchall()  # fmt: skip
    return [(c, k, int(p), r) for c, k, p, r in rows]


def _moved(url: str, event_id: str) -> int:
    """What the event's ledger entries did to the balance, signed."""
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT kind, points FROM ledger WHERE event_id = %s", (event_id,)
        ).fetchall()
    return sum(BALANCE_SIGN.get(Kind(kind), 0) * int(points) for kind, points in rows)


def _corrections_over_http(server: Served, url: str) -> None:
    """A correction sent twice applies once; a forged, foreign or cross-site form applies
    nothing; typed values that are not a correction come back with the reason."""
    with _signed_in(server) as agent, _signed_in(server, "admin") as other:
        form = _form_of(agent.get("/console/customers/ben").text)
        event_id = "console-" + form["form_id"]
        typed = {**form, "points": "25", "reason": "  coffee spilled on the receipt "}
        first = agent.post("/console/corrections", data=typed)
        assert first.status_code == 303, first.text
        assert first.headers["location"] == (
            f"/console/customers/ben?correction={event_id}#correction"
        )
        assert agent.post("/console/corrections", data=typed).status_code == 303
        assert _adjustments(url, event_id) == [
            ("ben", "adjustment_credit", 25, "coffee spilled on the receipt")
        ]
        shown = agent.get(first.headers["location"]).text
        assert "Correction applied: +25 points (coffee spilled on the receipt)" in shown
        assert _form_of(shown)["form_id"] != form["form_id"]  # a new form, a new event id

        fresh = _form_of(agent.get("/console/customers/ben").text)
        forged = [
            (agent, {**fresh, "token": "0" * 64}, {}, "not made for this session"),
            (agent, {**fresh, "customer_id": "anna"}, {}, "not made for this session"),
            (other, fresh, {}, "not made for this session"),  # another agent's session
            (agent, fresh, {"Sec-Fetch-Site": "cross-site"}, "came from another site"),
        ]
        for client, fields, headers, why in forged:
            refused = client.post(
                "/console/corrections",
                headers=headers,
                data={**fields, "points": "999", "reason": "free points"},
            )
            assert refused.status_code == 403 and why in refused.text, refused.text
        big = agent.post("/console/corrections", data={**fresh, "reason": "x" * 9000})
        assert big.status_code == 413
        with httpx.Client(base_url=server.url, timeout=30) as anonymous:
            out = anonymous.post(
                "/console/corrections", data={**fresh, "points": "999", "reason": "free points"}
            )
            assert out.status_code == 303 and out.headers["location"] == "/console"

        for points, reason, why in (("abc", "r", "whole number"), ("0", "r", "must not be 0"),
                                    ("5", "   ", "say why"),
                                    ("1000000001", "r", "must be &lt;= 1000000000")):  # fmt: skip
            sent = agent.post(
                "/console/corrections", data={**fresh, "points": points, "reason": reason}
            )
            assert sent.status_code == 422 and why in sent.text, (points, sent.text)
            assert f'value="{points}"' in sent.text  # what was typed, kept
            assert _form_of(sent.text)["form_id"] == fresh["form_id"]  # the same event id
        assert _adjustments(url, "console-" + fresh["form_id"]) == []

        taken = agent.post(
            "/console/corrections", data={**fresh, "points": "-100000", "reason": "too much"}
        )
        assert taken.status_code == 303
        page = agent.get(taken.headers["location"]).text
        assert "refused: <b>insufficient_points</b>" in page
        assert _adjustments(url, "console-" + fresh["form_id"]) == []


def _a_correction_in_chromium(server: Served, browser: Browser, url: str) -> None:
    """An agent double-clicks "Add correction": one entry; then one the ledger refuses."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    assert _sign_in(page, server.url, server.keys["support"]) == 303
    page.goto(f"{server.url}/console/customers/anna")
    before = int(page.get_by_test_id("balance").inner_text().replace(",", ""))
    form_id = page.input_value("input[name=form_id]")
    page.fill("#points", "150")
    page.fill("#reason", "late delivery, order A-1042")
    page.dblclick("button:has-text('Add correction')")
    page.wait_for_url("**correction=console-*")
    page.wait_for_load_state()
    assert "Correction applied: +150 points" in page.inner_text("#correction")
    assert _adjustments(url, f"console-{form_id}") == [
        ("anna", "adjustment_credit", 150, "late delivery, order A-1042")
    ]
    # The correction happens now: its step 2 may also expire old lots (the story is 2025's).
    after = int(page.get_by_test_id("balance").inner_text().replace(",", ""))
    assert after == before + _moved(url, f"console-{form_id}")

    page.fill("#points", "-1000000000")
    page.fill("#reason", "a test of the refusal")
    page.click("button:has-text('Add correction')")
    page.wait_for_load_state()
    assert "insufficient_points" in page.inner_text("#correction")
    assert int(page.get_by_test_id("balance").inner_text().replace(",", "")) == after
    page.close()
