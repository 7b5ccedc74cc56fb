"""The bus scheduler's order: writes before reads, reads by turns across units, gone callers skipped."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from drivers.modbus.bus import Bus
from drivers.modbus.codec import Table
from drivers.modbus.transport import NoAnswer


class Recording:
    """A transport that answers at once and records the order of the requests it carried."""

    def __init__(self, silent_units: frozenset[int] = frozenset()) -> None:
        self.carried: list[tuple[str, int, int]] = []
        self.silent = silent_units
        self.closed = False

    async def read(self, unit: int, table: Table, start: int, count: int, *, timeout_s: float) -> list[int]:
        self.carried.append(("read", unit, start))
        await asyncio.sleep(0)
        if unit in self.silent:
            raise NoAnswer("silent")
        return [start] * count

    async def write(self, unit: int, start: int, words: Sequence[int], *, timeout_s: float) -> None:
        self.carried.append(("write", unit, start))
        await asyncio.sleep(0)

    async def close(self) -> None:
        self.closed = True


async def test_writes_jump_the_queue_and_units_take_turns() -> None:
    wire = Recording()
    bus = Bus(wire, "order")
    # Everything is queued before the bus task runs: unit 1 has four reads, unit 2 two, then writes.
    calls: list[asyncio.Future[Any]] = [
        asyncio.ensure_future(bus.read(1, Table.HOLDING, a, 1)) for a in (10, 11, 12, 13)
    ]
    calls += [asyncio.ensure_future(bus.read(2, Table.HOLDING, a, 1)) for a in (20, 21)]
    calls += [asyncio.ensure_future(bus.write(2, 99, [1])), asyncio.ensure_future(bus.write(1, 98, [1]))]
    await asyncio.sleep(0)
    task = asyncio.ensure_future(bus.run())
    await asyncio.gather(*calls)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert wire.carried == [
        ("write", 2, 99),
        ("write", 1, 98),
        ("read", 1, 10),
        ("read", 2, 20),
        ("read", 1, 11),
        ("read", 2, 21),
        ("read", 1, 12),
        ("read", 1, 13),
    ]
    assert wire.closed


async def test_a_caller_that_gave_up_is_not_carried_and_a_stopped_bus_fails_the_rest() -> None:
    wire = Recording()
    bus = Bus(wire, "gone")
    gone = asyncio.ensure_future(bus.read(1, Table.HOLDING, 1, 1))
    kept = asyncio.ensure_future(bus.read(1, Table.HOLDING, 2, 1))
    await asyncio.sleep(0)
    gone.cancel()
    task = asyncio.ensure_future(bus.run())
    assert await kept == [2]
    assert wire.carried == [("read", 1, 2)]
    waiting = asyncio.ensure_future(bus.read(3, Table.HOLDING, 3, 1))
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert waiting.done() and isinstance(waiting.exception(), NoAnswer)


class Broken(Recording):
    """A transport with a bug: its first read raises something that is no Modbus fault."""

    async def read(self, unit: int, table: Table, start: int, count: int, *, timeout_s: float) -> list[int]:
        if not self.carried:
            self.carried.append(("read", unit, start))
            raise RuntimeError("termios said no")
        return await super().read(unit, table, start, count, timeout_s=timeout_s)


async def test_a_transport_error_fails_that_request_and_the_bus_goes_on() -> None:
    bus = Bus(Broken(), "broken")
    task = asyncio.ensure_future(bus.run())
    try:
        first = asyncio.ensure_future(bus.read(1, Table.HOLDING, 1, 1))
        second = asyncio.ensure_future(bus.read(1, Table.HOLDING, 2, 1))
        results = await asyncio.gather(first, second, return_exceptions=True)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert isinstance(results[0], NoAnswer) and "termios said no" in str(results[0])
    assert results[1] == [2]
    assert bus.counters.no_answer == 1
