"""The `loyalty` command's top: the parser of every command, and the one place that turns
errors into words and exit codes.

A bad command line, program or database URL ends in one line on stderr that names what
to fix, and exit code 2; a bug in one line and exit 1 (the traceback goes to the log);
never a traceback on the terminal.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import psycopg

from loyalty_ledger import log
from loyalty_ledger.cli import (
    database_commands,
    dead_letter_commands,
    generation_commands,
    kafka_commands,
    ledger_commands,
    operator_commands,
    program_commands,
    serve_commands,
    statement_commands,
)
from loyalty_ledger.cli.arguments import Commands, Parser
from loyalty_ledger.errors import Conflict, LoyaltyError, Unavailable, UserError
from loyalty_ledger.store.db import application
from loyalty_ledger.text import printable

# In the order `loyalty --help` lists them: a new command adds its `add_X` here.
COMMANDS: tuple[Callable[[Commands[Parser]], None], ...] = (
    ledger_commands.add_ingest,
    ledger_commands.add_export,
    ledger_commands.add_rebuild,
    program_commands.add_program,
    generation_commands.add_rerun,
    generation_commands.add_promote,
    generation_commands.add_generations,
    generation_commands.add_compare,
    ledger_commands.add_verify,
    ledger_commands.add_ledger,
    operator_commands.add_offsets,
    dead_letter_commands.add_dlq,
    statement_commands.add_statement,
    operator_commands.add_members,
    operator_commands.add_schemas,
    database_commands.add_db,
    database_commands.add_report,
    database_commands.add_analytics,
    kafka_commands.add_topics,
    kafka_commands.add_produce,
    kafka_commands.add_consume,
    kafka_commands.add_status,
    kafka_commands.add_tick,
    serve_commands.add_serve,
    serve_commands.add_api_keys,
)


def parser() -> argparse.ArgumentParser:
    """The whole command line; each command's arguments are declared beside its handler."""
    top = Parser(
        prog="loyalty",
        description="An event-sourced customer-loyalty ledger on PostgreSQL. Without "
        "LOYALTY_DATABASE_URL every command uses an embedded PostgreSQL in ./.loyalty/.",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code. A bad command line exits 2 from argparse itself."""
    args = parser().parse_args(argv)
    log.configure()
    try:
        with application(f"loyalty {args.command}"):  # pg_stat_activity's name for its backends
            return _run(args)
    except KeyboardInterrupt:
        return _fail("interrupted: the last batch was not committed; run the same command again")
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
        return 0
    except Exception as e:  # a bug: one line here, the traceback in the log
        log.get("cli").exception("internal error")
        return _fail(f"internal error ({type(e).__name__}: {_first_line(e)}); this is a bug, "
                     "please report it with the log line above", code=1)  # fmt: skip


def _run(args: argparse.Namespace) -> int:
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except Conflict as e:
        return _fail(f"{e}: it changed meanwhile (a promotion, a fence); run the command again")
    except UserError as e:  # the message names the fix
        return _fail(str(e))
    except Unavailable as e:  # the message names the server to check
        return _fail(str(e))
    except LoyaltyError as e:  # a subclass of the base alone: its message is still for the user
        return _fail(str(e))
    except psycopg.OperationalError as e:
        # A connection lost mid-command; opening one is translated to Unavailable by the store.
        return _fail(
            f"lost the database connection ({_first_line(e)}); nothing half-done was kept: run "
            "the command again (for several commands at once on the embedded database, keep it "
            "up with `loyalty db start`)"
        )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _fail(message: str, *, code: int = 2) -> int:
    print(f"loyalty: {printable(message)}", file=sys.stderr)
    return code
