"""The `loyalty` command: ingest, export, rebuild, dead letters, schemas, and the embedded
database; the only layer that prints.

`main` (in main.py) builds the parser from one `add_X(subparsers)` per command, each
declared beside its handler in the module of its group (ledger_commands, kafka_commands,
...), and turns `LoyaltyError`s into one line on stderr and an exit code.
"""

from __future__ import annotations

from loyalty_ledger.cli.main import main, parser

__all__ = ["main", "parser"]
