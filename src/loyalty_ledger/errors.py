"""Errors the user can meet, as types under one base; only the command line (and later the
HTTP layer) turns them into words and exit codes.

- `UserError`: something the user can fix (an argument, a file, a program, a name): one
  line naming the fix, exit 2.
- `Unavailable`: a server (PostgreSQL, Kafka) cannot be reached: retry later, exit 2.
- `Conflict`: the world changed under a command (a promotion, a fence): run it again.

A module's own errors subclass one of these, so the message stays beside the rule it names.
"""

from __future__ import annotations


class LoyaltyError(Exception):
    """The base of every error meant for the user; its message is one lowercase line."""


class UserError(LoyaltyError):
    """Something the user can fix; the message names it."""


class Unavailable(LoyaltyError):
    """A server cannot be reached or refused us; the message names which."""


class Conflict(LoyaltyError):
    """What a command worked on changed meanwhile (a promotion, a fence): run it again."""
