"""The pure decision engine: input event + customer state -> ledger entries + new state."""

from loyalty_ledger.engine.decide import (
    COMMAND_CLASSES,
    Command,
    Decision,
    ReferrerCredit,
    TransferCredit,
    decide,
    decide_command,
    decide_tick,
)
from loyalty_ledger.engine.reasons import Reason
from loyalty_ledger.engine.rules import History, Rules, compile_rules, history_of
from loyalty_ledger.engine.state import CustomerState

__all__ = [
    "COMMAND_CLASSES",
    "Command",
    "CustomerState",
    "Decision",
    "History",
    "Reason",
    "ReferrerCredit",
    "Rules",
    "TransferCredit",
    "compile_rules",
    "decide",
    "decide_command",
    "decide_tick",
    "history_of",
]
