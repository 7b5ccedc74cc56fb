"""A process that writes sessions to a ledger in a loop, for the SIGKILL durability tests.

    python -m tests.support.ledger_writer LEDGER RUN

Prints `<session_id> <version>` for each session change only after the transaction that stored it
has committed; the test kills the process at random moments and then checks that everything printed
is in the ledger.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO

import structlog

from controller.sessions.ledger import Ledger
from controller.sessions.recorder import SessionRecorder
from drivers.clock import SystemClock
from drivers.contracts import ReceiveTime, TransactionStarted, TransactionStopped

EPOCH = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)


async def write_forever(path: Path, run: int, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    async with await Ledger.open(path) as ledger:
        recorder = SessionRecorder(ledger, SystemClock())
        n = 0
        while True:
            moment = EPOCH + timedelta(minutes=run * 1000 + n)
            received = ReceiveTime(0.0, moment)
            tx = f"{run}-{n}"
            charger = f"CP-{n % 7}"
            steps = [
                await recorder.handle(TransactionStarted(charger, tx, "TAG", n * 10.0, moment, received))
            ]
            if n % 2:
                stopped = moment + timedelta(seconds=30)
                event = TransactionStopped(charger, tx, "TAG", n * 10.0 + 5, stopped, "Local", received)
                steps.append(await recorder.handle(event))
            for step in steps:
                for session in step.changes:
                    out.write(f"{session.session_id} {session.version}\n")
            out.flush()
            n += 1


def main() -> None:
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    asyncio.run(write_forever(Path(sys.argv[1]), int(sys.argv[2])))


if __name__ == "__main__":
    main()
