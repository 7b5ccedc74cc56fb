"""The sessions intake: events committed in order, a failing write retried with the same events,
`record` returning only after its event is committed, the drain writing what is left."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from controller.sessions.intake import SessionIntake
from drivers.contracts import ChargerEvent
from tests.support.charger_events import sample, start, stop


class FlakyRecorder:
    """Commits batches, after failing the first `failures` of them."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.committed: list[ChargerEvent] = []
        self.attempts = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()

    async def handle_many(self, events: Iterable[ChargerEvent]) -> None:
        batch = list(events)
        self.attempts += 1
        self.entered.set()
        await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise OSError("disk I/O error")
        self.committed.extend(batch)


async def no_wait(_: float) -> None:
    await asyncio.sleep(0)


async def test_record_returns_only_once_its_event_is_committed() -> None:
    recorder = FlakyRecorder()
    recorder.gate.clear()
    intake = SessionIntake(recorder, sleep=no_wait)
    writer = asyncio.create_task(intake.run())
    try:
        waiting = asyncio.create_task(intake.record(start("1", 0, 1000)))
        await asyncio.wait_for(recorder.entered.wait(), 5)
        assert not waiting.done() and recorder.committed == []
        recorder.gate.set()
        await asyncio.wait_for(waiting, 5)
        assert recorder.committed == [start("1", 0, 1000)]
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)


async def test_a_failing_write_is_retried_with_the_same_events_in_order() -> None:
    recorder = FlakyRecorder(failures=3)
    intake = SessionIntake(recorder, sleep=no_wait)
    writer = asyncio.create_task(intake.run())
    events: list[ChargerEvent] = [start("1", 0, 1000), sample("1", 5, 1200), stop("1", 10, 1500)]
    try:
        intake.put(events[0])
        intake.put(events[1])
        await asyncio.wait_for(intake.record(events[2]), 5)
        assert recorder.committed == events
        assert intake.write_errors == 3 and intake.backlog == 0
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)


async def test_events_left_when_the_writer_is_cancelled_are_written_by_the_drain() -> None:
    recorder = FlakyRecorder()
    recorder.gate.clear()
    intake = SessionIntake(recorder, sleep=no_wait)
    writer = asyncio.create_task(intake.run())
    intake.put(start("1", 0, 1000))
    await asyncio.wait_for(recorder.entered.wait(), 5)  # the writer holds the batch, in the ledger
    writer.cancel()
    await asyncio.gather(writer, return_exceptions=True)
    assert intake.backlog == 1
    recorder.gate.set()
    await intake.drain()
    assert recorder.committed == [start("1", 0, 1000)] and intake.backlog == 0
