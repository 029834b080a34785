"""The JSON Schemas in schemas/ are the ones the event models give (no drift)."""

from __future__ import annotations

import json
from pathlib import Path

from loyalty_ledger.event_schemas import check_schemas, render, write_schemas
from loyalty_ledger.events import EVENT_TYPES, json_schemas

SCHEMAS = Path(__file__).parents[1] / "schemas"


def test_committed_schemas_match_the_models() -> None:
    drifted = check_schemas(SCHEMAS)
    assert drifted == [], (
        f"{', '.join(drifted)} in {SCHEMAS} differ from the models; "
        "regenerate them with: python -m loyalty_ledger.event_schemas schemas"
    )


def test_write_then_check_is_clean(tmp_path: Path) -> None:
    written = write_schemas(tmp_path / "out")
    assert sorted(path.name for path in written) == sorted(
        [f"{t}.json" for t in EVENT_TYPES] + ["event.json"]
    )
    assert check_schemas(tmp_path / "out") == []
    text = written[0].read_text()
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert json.loads(text) == json_schemas()[written[0].name]


def test_check_names_drifted_and_missing_files(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    (tmp_path / "tick.json").unlink()
    signup = tmp_path / "signup.json"
    signup.write_text(signup.read_text().replace('"minLength": 1', '"minLength": 2', 1))
    (tmp_path / "extra.json").write_text("{}\n")  # other files in the folder are not ours
    assert check_schemas(tmp_path) == ["signup.json", "tick.json"]


def test_render_is_stable() -> None:
    schema = json_schemas()["event.json"]
    assert render(schema) == render(json.loads(render(schema)))
