"""Shared pieces of the uplink integration tests: configs, fillers, a recording command handler."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.sessions.ledger import Ledger
from controller.sessions.recorder import SessionRecorder
from controller.uplink.commands import SiteCommand
from controller.uplink.config import UplinkConfig
from drivers.clock import SystemClock
from drivers.contracts import (
    CommandOutcome,
    CommandResult,
    ReceiveTime,
    TransactionStarted,
    TransactionStopped,
)

EPOCH = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)


def fast_config(url: str, **overrides: Any) -> UplinkConfig:
    """Short timers so fault tests recover in seconds, not minutes."""
    settings: dict[str, Any] = {
        "url": url,
        "site_id": "test-site",
        "client_id": "site-box",
        "keepalive_s": 1,
        "connect_timeout_s": 3.0,
        "publish_timeout_s": 5.0,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.5,
        "ack_timeout_s": 3.0,
        "ack_flush_s": 0.02,
        "outbox_poll_s": 0.2,
        "backlog_check_s": 0.1,
        "fuse_ratings_a": {"main": 125.0, "board-1": 80.0},
        "charger_ids": frozenset({"CP-01", "CP-02"}),
    }
    settings.update(overrides)
    return UplinkConfig(**settings)


def session_events(
    count: int, *, first: int = 0, stop: bool = True
) -> Iterator[TransactionStarted | TransactionStopped]:
    """`count` sessions, each a start and a stop (two versions, two outbox rows) or only a start."""
    for n in range(first, first + count):
        moment = EPOCH + timedelta(minutes=n)
        received = ReceiveTime(0.0, moment)
        # Open sessions need a charger each, or the next start would supersede them.
        charger, tx = (f"CP-{n % 50:02d}" if stop else f"CP-{n:06d}"), f"tx-{n}"
        yield TransactionStarted(charger, tx, "TAG", n * 100.0, moment, received)
        if stop:
            yield TransactionStopped(
                charger, tx, "TAG", n * 100.0 + 55, moment + timedelta(minutes=1), "Local", received
            )


async def fill(
    ledger: Ledger, sessions: int, *, first: int = 0, stop: bool = True, batch: int = 1000
) -> None:
    recorder = SessionRecorder(ledger, SystemClock())
    events = list(session_events(sessions, first=first, stop=stop))
    for i in range(0, len(events), batch):
        await recorder.handle_many(events[i : i + batch])


async def outbox_msg_ids(ledger: Ledger) -> list[str]:
    """Every outbox row's msg_id in outbox order (acknowledged or not)."""
    async with ledger.transaction() as tx, tx.db.execute("SELECT msg_id FROM outbox ORDER BY id") as cursor:
        return [r[0] for r in await cursor.fetchall()]


class RecordingHandler:
    """A CommandHandler that records what it was asked and answers as told."""

    def __init__(self, outcome: CommandOutcome = CommandOutcome.ACCEPTED) -> None:
        self.commands: list[SiteCommand] = []
        self.outcome = outcome

    async def handle(self, cmd: SiteCommand) -> CommandResult:
        self.commands.append(cmd)
        return CommandResult(self.outcome, "done" if self.outcome is CommandOutcome.ACCEPTED else "no")
