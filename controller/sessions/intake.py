"""Charger events on their way into the ledger: in arrival order, in batches, never dropped.

Events stay queued until the batch holding them is committed, so a failing ledger write is retried
with the same events, and a cancelled writer leaves them for the shutdown drain. A batch written
twice (cancelled after its commit) does no harm: the state machine takes replays as duplicates.
`record` is the driver contract's `ChargerEventRecorder`: it returns once its event is committed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import structlog

from drivers.contracts import ChargerEvent

log = structlog.get_logger(__name__)

_Item = tuple[ChargerEvent, "asyncio.Future[None] | None"]
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 30.0


class BatchRecorder(Protocol):
    """What writes events to the ledger, all of a batch in one transaction (SessionRecorder)."""

    async def handle_many(self, events: Iterable[ChargerEvent]) -> Any: ...


class SessionIntake:
    def __init__(
        self,
        recorder: BatchRecorder,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._recorder = recorder
        self._sleep = sleep
        self._queued: deque[_Item] = deque()
        self._wake = asyncio.Event()
        self.write_errors = 0

    def put(self, event: ChargerEvent) -> None:
        """Queue an event; never blocks (the queue is unbounded: a billing event is never dropped)."""
        self._queued.append((event, None))
        self._wake.set()

    async def record(self, event: ChargerEvent) -> None:
        """Queue an event and return once it is committed."""
        committed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append((event, committed))
        self._wake.set()
        # Shielded: a driver that gives up waiting must not cancel what the ledger will still do.
        await asyncio.shield(committed)

    @property
    def backlog(self) -> int:
        return len(self._queued)

    async def run(self) -> None:
        """Write what is queued until cancelled; a failing write is retried with backoff."""
        backoff_s = RETRY_INITIAL_S
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queued:
                try:
                    await self._write()
                    backoff_s = RETRY_INITIAL_S
                except Exception:
                    # The ledger is the source of truth for billing: keep the events and retry.
                    self.write_errors += 1
                    log.exception("sessions.write_failed", events=len(self._queued), retry_in_s=backoff_s)
                    await self._sleep(backoff_s)
                    backoff_s = min(backoff_s * 2, RETRY_MAX_S)

    async def drain(self) -> None:
        """At shutdown, after the drivers have stopped: write what is left, once."""
        if not self._queued:
            return
        count = len(self._queued)
        try:
            await self._write()
            log.info("sessions.drained", events=count)
        except Exception:
            log.exception("sessions.drain_failed", events=count)

    async def _write(self) -> None:
        batch = list(self._queued)
        await self._recorder.handle_many([event for event, _ in batch])
        for _ in batch:
            _, committed = self._queued.popleft()
            if committed is not None and not committed.done():
                committed.set_result(None)
