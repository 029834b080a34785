"""Human output is safe: no stored value reaches a terminal with its control characters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loyalty_ledger.text import printable, printable_bytes
from support import CASES, cli_in_process

CASE = CASES[4]  # tiers, expiry, returns, redemptions, ticks
HOSTILE_ID = "c\x1b[2J\tx"
RAW = b'{"event_id": "bad\x1b[2J\tline", \x00\xff'  # not JSON: a dead letter, as it came


def test_printable_escapes_what_could_act_on_a_terminal() -> None:
    assert printable("a\x1b[2J\tb\nc\rd") == "a\\x1b[2J\\tb\\nc\\rd"
    assert printable("\x00\x7f\x85\x9b") == "\\x00\\x7f\\x85\\x9b"  # C0, DEL, C1 (CSI too)
    assert printable("\u202eevil\u2066\u2028") == "\\u202eevil\\u2066\\u2028"
    assert printable("lone \ud800") == "lone \\ud800"
    assert printable("Tomás Okafor, 東京, a\\b") == "Tomás Okafor, 東京, a\\b"  # kept as is
    assert printable(42) == "42"
    assert printable_bytes(b"\xffok\x1b\xc3\xa9") == "\\xffok\\x1bé"


def _hostile_stream(tmp_path: Path) -> Path:
    lines = (CASE / "events.jsonl").read_text(encoding="utf-8").splitlines()
    bodies = [json.loads(line) for line in lines]
    signup, purchase = ({**next(b for b in bodies if b["type"] == kind),
                         "customer_id": HOSTILE_ID, "occurred_at": bodies[-1]["occurred_at"]}
                        for kind in ("signup", "purchase"))  # fmt: skip
    mine = [{**signup, "event_id": "hostile-1", "email": "h@x.org"},
            {**purchase, "event_id": "hostile-2", "order_id": "o\x1b[2J\t"}]  # fmt: skip
    path = tmp_path / "hostile.jsonl"
    body = "\n".join([*lines, *map(json.dumps, mine)]).encode() + b"\n" + RAW + b"\n"
    path.write_bytes(body)
    return path


def test_no_output_shows_a_control_character(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("LOYALTY_DATABASE_URL", database_url)
    path = _hostile_stream(tmp_path)
    program = str(CASE / "program.toml")
    assert cli_in_process(["ingest", str(path), "--program", program], capsys)[0] == 0
    richer = tmp_path / "richer.toml"
    richer.write_text((CASE / "program.toml").read_text().replace(
        'points_per_unit = "0.02"', 'points_per_unit = "0.03"'))  # fmt: skip
    assert cli_in_process(["rerun", "--program", str(richer), "--as", "richer"], capsys)[0] == 0
    _, listed, _ = cli_in_process(["dlq", "list", "--limit", "1000"], capsys)
    rows = listed.splitlines()
    assert rows and all(row.count("\t") == 4 for row in rows)  # five columns each
    assert any("\\x1b[2J\\t" in row for row in rows)  # shown, escaped
    outputs = [listed]
    for row in rows:
        outputs.append(cli_in_process(["dlq", "show", row.split("\t", 1)[0]], capsys)[1])
    for args in (
        ["statement", HOSTILE_ID], ["verify"], ["compare", "live", "richer", "--limit", "1000"],
        ["generations"], ["members", "erase", HOSTILE_ID], ["statement", "no\x1bsuch"],
    ):  # fmt: skip
        _, out, err = cli_in_process(args, capsys)
        outputs += [out, err]
    for text in outputs:
        assert "\x1b" not in text and "\x00" not in text, text
    statement = outputs[len(rows) + 1]
    assert "\t" not in statement and "c\\x1b[2J\\tx" in statement
    assert all(line.count("\t") == 4 for line in outputs[-6].splitlines())  # generations
