"""Keys and scopes of the HTTP API on a real server: 401 without a live key, 403 below the
route's (or the event's) scope, and `loyalty api-keys create|list|revoke`."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from loyalty_ledger.admin import api_keys
from loyalty_ledger.http.auth import KEY_TRUST_S
from loyalty_ledger.store.db import connect, psycopg_url
from served import Served, shared_examples_server  # noqa: F401 (the fixture)
from support import cli_in_process, run

PROGRAM = Path(__file__).parents[2] / "examples" / "program.toml"
SIGNUP = {"event_id": "acc-1", "type": "signup", "occurred_at": "2025-03-01T10:00:00Z",
          "customer_id": "acc", "email": "acc@example.org"}  # fmt: skip
TICK = {"event_id": "acc-tick", "type": "tick", "occurred_at": "2025-03-02T00:00:00Z"}




def _with_key(server: Served, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def _in_inbox(url: str, event_id: str) -> bool:
    with connect(url) as conn:
        return conn.execute("SELECT 1 FROM inbox WHERE event_id = %s", (event_id,)).fetchone() \
            is not None  # fmt: skip


@pytest.mark.parametrize(
    "key", [None, "ll_" + "x" * 43, "not-a-key"], ids=["missing", "unknown", "malformed"]
)
def test_a_request_without_a_live_key_is_401(shared: tuple[Served, str], key: str | None) -> None:
    server, url = shared
    with _with_key(server, key) as client:
        for answer in (client.get("/v1/customers/acc"), client.get("/v1/rewards"),
                       client.post("/v1/events", json=SIGNUP)):  # fmt: skip
            assert answer.status_code == 401, answer.text
            assert answer.headers["www-authenticate"] == "Bearer"
    assert not _in_inbox(url, SIGNUP["event_id"])


def test_a_revoked_key_is_401_within_the_trust_window(shared: tuple[Served, str]) -> None:
    server, url = shared
    with psycopg.connect(psycopg_url(url), autocommit=True) as conn:
        _, key = api_keys.create(conn, "acc-revoked", api_keys.Scope.pos)
    with _with_key(server, key) as client:
        assert client.get("/v1/rewards").status_code == 200
        with psycopg.connect(psycopg_url(url), autocommit=True) as conn:
            api_keys.revoke(conn, "acc-revoked")  # the command's own test is below
        time.sleep(KEY_TRUST_S)  # a key found live is trusted that long without asking
        answer = client.get("/v1/rewards")
        assert answer.status_code == 401, answer.text


def _post(client: httpx.Client, body: Any) -> httpx.Response:
    return client.post("/v1/events", json=body)


def test_scopes_are_enforced_before_anything_applies(shared: tuple[Served, str]) -> None:
    server, url = shared
    with server.client("read") as reader:
        assert reader.get("/v1/rewards").status_code == 200
        refused = _post(reader, SIGNUP)
        assert refused.status_code == 403, refused.text
        assert "read" in refused.json()["detail"]
    assert not _in_inbox(url, SIGNUP["event_id"])
    with server.client("pos") as till:
        refused = _post(till, [SIGNUP, TICK])  # the whole body: the signup does not apply
        assert refused.status_code == 403, refused.text
        assert "tick" in refused.json()["detail"]
        assert not _in_inbox(url, SIGNUP["event_id"]) and not _in_inbox(url, TICK["event_id"])
        assert _post(till, SIGNUP).status_code == 200
        assert till.get("/v1/customers/acc").status_code == 200
    with server.client("support") as agent:
        assert _post(agent, TICK).status_code == 403
    with server.client("admin") as admin:
        answer = _post(admin, TICK)
        assert answer.status_code == 200, answer.text
        assert answer.json()["results"][0]["outcome"] == "accepted"
    with connect(url) as conn:
        sources = dict(conn.execute(
            "SELECT event_id, source FROM inbox WHERE event_id IN ('acc-1', 'acc-tick')"
        ).fetchall())  # fmt: skip
    assert sources == {"acc-1": "http:test-pos", "acc-tick": "http:test-admin"}


def test_api_keys_command_creates_lists_and_revokes(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**os.environ, "LOYALTY_DATABASE_URL": database_url}
    made = run(["api-keys", "create", "till-berlin", "--scope", "pos"], env)  # the real command
    assert made.returncode == 0, made.stderr
    (key,) = made.stdout.splitlines()  # the key, alone, once
    assert key.startswith("ll_") and len(key) == 46
    assert "till-berlin" in made.stderr and key not in made.stderr
    with psycopg.connect(psycopg_url(database_url), autocommit=True) as conn:
        found = api_keys.authenticate(conn, key)
        stored = conn.execute("SELECT key_hash, prefix FROM public.api_keys").fetchall()
    assert found is not None and (found.name, found.scope) == ("till-berlin", api_keys.Scope.pos)
    assert stored == [(api_keys.key_hash(key), key[:8])]  # a hash, never the key

    monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)  # the rest in this process: faster
    code, out, err = cli_in_process(["api-keys", "list"], capsys)
    assert code == 0, err
    (line,) = out.splitlines()
    assert line.split()[:3] == ["till-berlin", "pos", f"{key[:8]}…"] and "active" in line
    assert key not in out

    for args in (["create", "Till Berlin", "--scope", "pos"],  # a bad name
                 ["create", "till-berlin", "--scope", "read"],  # taken
                 ["revoke", "nobody"]):  # fmt: skip
        code, out, err = cli_in_process(["api-keys", *args], capsys)
        assert code == 2, (args, out, err)
        assert len(err.strip().splitlines()) == 1, err
        assert out == ""

    assert cli_in_process(["api-keys", "revoke", "till-berlin"], capsys)[0] == 0
    assert "revoked" in cli_in_process(["api-keys", "list"], capsys)[1]
    code, _, err = cli_in_process(["api-keys", "create", "till-berlin", "--scope", "pos"], capsys)
    assert code == 2 and "never reused" in err
