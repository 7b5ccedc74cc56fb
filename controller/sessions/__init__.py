"""Charging sessions as billing data: the state machine (pure) and the SQLite ledger with its outbox.

See docs/sessions.md.
"""

from .ledger import Ledger, LedgerCorruptError, LedgerError, LedgerTx, OutboxKind, OutboxRow
from .machine import Outcome, Step, apply
from .model import EnergyPeriod, InferredStop, Session, StopSource
from .periods import period_start, split_energy
from .recorder import SessionRecorder
from .report import format_csv, format_json_lines, parse_since
from .transaction_ids import OcppTransactionIds

__all__ = [
    "EnergyPeriod",
    "InferredStop",
    "Ledger",
    "LedgerCorruptError",
    "LedgerError",
    "LedgerTx",
    "OcppTransactionIds",
    "OutboxKind",
    "OutboxRow",
    "Outcome",
    "Session",
    "SessionRecorder",
    "Step",
    "StopSource",
    "apply",
    "format_csv",
    "format_json_lines",
    "parse_since",
    "period_start",
    "split_energy",
]
