"""The input events' JSON Schemas, written from the models into `schemas/` and checked for drift."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from loyalty_ledger.events import json_schemas

__all__ = ["check_schemas", "render", "write_schemas"]


def render(schema: dict[str, Any]) -> str:
    """A schema as its file holds it: pretty, keys sorted, one trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schemas(directory: Path) -> list[Path]:
    """Write every event schema into `directory` (created if needed); return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in sorted(json_schemas().items()):
        path = directory / name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written


def check_schemas(directory: Path) -> list[str]:
    """The names of the schema files in `directory` that are missing or differ from the models."""
    drifted = []
    for name, schema in sorted(json_schemas().items()):
        path = directory / name
        try:
            current = path.read_text(encoding="utf-8")
        except (FileNotFoundError, UnicodeDecodeError):
            current = None
        if current != render(schema):
            drifted.append(name)
    return drifted


def main(argv: list[str]) -> int:
    """`python -m loyalty_ledger.event_schemas [DIR] [--check]`: regenerate or check them."""
    check = "--check" in argv
    paths = [arg for arg in argv if arg != "--check"]
    directory = Path(paths[0]) if paths else Path("schemas")
    if check:
        drifted = check_schemas(directory)
        for name in drifted:
            print(f"{directory / name}: differs from the models; regenerate it", file=sys.stderr)
        return 1 if drifted else 0
    for path in write_schemas(directory):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
