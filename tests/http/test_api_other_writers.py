"""`loyalty serve` (embedded mode) beside the ledger's other writers: it takes the writer lock
group by group, so an erasure or a file ingest is never locked out, and what they changed is
seen by the next group; a promotion stops the server (one line, exit 2) so it is started again
on the new live generation."""

from __future__ import annotations

import json
import os
from pathlib import Path

from served import served
from support import example_program_v1_file, run

EXAMPLES = Path(__file__).parents[2] / "examples"
PROGRAM = EXAMPLES / "program.toml"
AT = "2025-03-01T10:00:00+01:00"


def _event(kind: str, event_id: str, **fields: object) -> dict[str, object]:
    return {"event_id": event_id, "type": kind, "occurred_at": AT, "customer_id": "zoe",
            **fields}  # fmt: skip


def test_an_erasure_and_a_file_ingest_run_while_the_server_serves(
    database_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "LOYALTY_DATABASE_URL": database_url}
    program = example_program_v1_file(tmp_path)  # the purchase's points spendable at once
    with served(database_url, program, tmp_path) as server, server.client("pos") as till:
        signup = _event("signup", "w-1", email="zoe@example.org", name="Zoe")
        assert till.post("/v1/events", json=signup).json()["results"][0]["outcome"] == "accepted"
        # A file ingest of a big purchase, by another writer, while the server runs.
        purchase = _event("purchase", "w-2", order_id="W-1", currency="EUR", total="900.00")
        path = tmp_path / "more.jsonl"
        path.write_text(json.dumps(purchase) + "\n")
        ingested = run(["ingest", str(path)], env)
        assert ingested.returncode == 0, ingested.stderr
        # The server decides on what the ingest wrote, not on what it had cached.
        redeem = _event("redemption", "w-3", redemption_id="R-W1", reward_id="voucher-5")
        answer = till.post("/v1/events", json=redeem).json()["results"][0]
        assert (answer["outcome"], answer["reason"]) == ("accepted", None), answer
        erased = run(["members", "erase", "zoe"], env)  # never waits for the server to stop
        assert erased.returncode == 0, erased.stderr
        card = till.get("/v1/customers/zoe").json()
        assert card["redeemed"] == 500 and card["balance"] == answer["balance"]


def test_a_promotion_stops_the_server_with_one_line(database_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "LOYALTY_DATABASE_URL": database_url}
    with served(database_url, PROGRAM, tmp_path) as server, server.client("pos") as till:
        signup = _event("signup", "p-1", email="zoe@example.org")
        assert till.post("/v1/events", json=signup).status_code == 200
        rerun = run(["rerun", "--program", str(PROGRAM), "--as", "again"], env)
        assert rerun.returncode == 0, rerun.stderr
        promoted = run(["promote", "again"], env)
        assert promoted.returncode == 0, promoted.stderr
        refused = till.post("/v1/events", json=_event("action", "p-2", action="review_written"))
        assert refused.status_code == 503, refused.text  # nothing applied: send it again
        assert "generation" in refused.json()["detail"]
        code = server.process.wait(30)
        lines = [line for line in server.log().splitlines() if line.startswith("loyalty: ")]
        assert code == 2 and len(lines) == 1 and "generation" in lines[0], server.log()[-2000:]


def test_a_taken_port_is_one_line_and_exit_2_before_the_database_is_touched(
    database_url: str, tmp_path: Path
) -> None:
    """A second server on the first one's port: one line naming what to change, exit 2 (not
    uvicorn's exit 3 after the program is adopted); `--port 0` takes a free one instead."""
    env = {**os.environ, "LOYALTY_DATABASE_URL": database_url}
    with served(database_url, PROGRAM, tmp_path) as server:
        port = server.url.rsplit(":", 1)[1]
        taken = run(["serve", "--port", port, "--program", str(PROGRAM)], env)
        assert taken.returncode == 2, taken.stderr
        assert taken.stderr.count("\n") == 1 and "--port" in taken.stderr, taken.stderr
        assert f"127.0.0.1:{port}" in taken.stderr and "Traceback" not in taken.stderr
        assert server.client("read").get("/v1/customers/nobody").status_code == 404
