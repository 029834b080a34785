"""The HTTP API on a real server and database: writes answered after commit, reads, keys."""

from __future__ import annotations

import json
from pathlib import Path

from served import served

EXAMPLES = Path(__file__).parents[2] / "examples"


def _events(n: int) -> list[dict[str, object]]:
    lines = (EXAMPLES / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines[:n]]


def test_a_post_is_answered_with_outcomes_after_commit(database_url: str, tmp_path: Path) -> None:
    with served(database_url, EXAMPLES / "program.toml", tmp_path) as server, \
            server.client("pos") as client:  # fmt: skip
        answer = client.post("/v1/events", json=_events(5))
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert [r["outcome"] for r in results] == ["accepted"] * 5
        assert results[0]["customer_id"] == "anna"
        card = client.get("/v1/customers/anna").json()
        assert card["balance"] == results[4]["balance"]  # read-your-writes
