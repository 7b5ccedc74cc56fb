"""Dispatch ordering, leases and failure handling against recording chargers on an accelerated clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from controller.dispatch import ChargerTarget, DispatchConfig, Dispatcher
from drivers.clock import ScaledClock
from drivers.contracts import CommandOutcome, CommandResult

SPEED = 200.0
EPOCH = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)
CONFIG = DispatchConfig(
    lease_s=60.0, settle_s=5.0, deadband_a=1.0, command_timeout_s=5.0, retry_initial_s=2.0
)


@dataclass
class Call:
    charger_id: str
    current_a: float
    started_s: float
    ended_s: float | None = None
    outcome: CommandOutcome | None = None


@dataclass
class RecordingCharger:
    """A charger that records every command; its answer and delay can be scripted per call."""

    charger_id: str
    clock: ScaledClock
    log: list[Call]
    delay_s: float = 0.5
    answers: list[CommandOutcome] = field(default_factory=list)
    raise_error: bool = False
    in_flight: int = 0
    max_in_flight: int = 0

    async def set_current(
        self, current_a: float, *, lease_s: float, phases: int | None = None, timeout_s: float = 10.0
    ) -> CommandResult:
        call = Call(self.charger_id, current_a, self.clock.monotonic())
        self.log.append(call)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self.clock.sleep(self.delay_s)
            if self.raise_error:
                raise RuntimeError("driver bug")
            outcome = self.answers.pop(0) if self.answers else CommandOutcome.ACCEPTED
            call.ended_s = self.clock.monotonic()
            call.outcome = outcome
            return CommandResult(outcome)
        finally:
            self.in_flight -= 1

    async def install_safe_limit(self, safe_current_a: float, *, timeout_s: float = 10.0) -> CommandResult:
        return CommandResult(CommandOutcome.ACCEPTED)


@dataclass
class Rig:
    clock: ScaledClock
    log: list[Call]
    chargers: dict[str, RecordingCharger]
    dispatcher: Dispatcher
    changes: list[float]

    def calls(self, charger_id: str) -> list[Call]:
        return [c for c in self.log if c.charger_id == charger_id]

    async def until(self, predicate: Callable[[], bool], limit_s: float = 120.0) -> None:
        deadline = self.clock.monotonic() + limit_s
        while not predicate():
            assert self.clock.monotonic() < deadline, "condition not reached in simulated time"
            await self.clock.sleep(0.05)


@asynccontextmanager
async def rig(*ids: str, config: DispatchConfig = CONFIG) -> AsyncIterator[Rig]:
    clock = ScaledClock(SPEED, EPOCH)
    log: list[Call] = []
    chargers = {i: RecordingCharger(i, clock, log) for i in ids}
    changes: list[float] = []
    dispatcher = Dispatcher(chargers, clock, config, on_change=lambda: changes.append(clock.monotonic()))
    task = asyncio.get_running_loop().create_task(dispatcher.run(), name="dispatcher")
    try:
        yield Rig(clock, log, chargers, dispatcher, changes)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def target(current_a: float, safe_a: float = 32.0) -> ChargerTarget:
    return ChargerTarget(current_a=current_a, safe_current_a=safe_a)


async def settle_at(r: Rig, values: dict[str, float]) -> None:
    r.dispatcher.submit({k: target(v) for k, v in values.items()})
    await r.until(lambda: all(r.dispatcher.acked_a(k) == v for k, v in values.items()))
    await r.clock.sleep(max(CONFIG.settle_s, CONFIG.increase_interval_s) + 1)


async def test_decreases_go_first_and_increases_wait_for_ack_plus_settle() -> None:
    async with rig("A", "B", "C") as r:
        await settle_at(r, {"A": 16.0, "B": 6.0, "C": 20.0})
        r.log.clear()
        r.dispatcher.submit({"A": target(8.0), "B": target(14.0), "C": target(10.0)})
        await r.until(lambda: r.dispatcher.acked_a("B") == 14.0)
        (a,) = r.calls("A")
        (b,) = r.calls("B")
        (c,) = r.calls("C")
        assert a.started_s < b.started_s and c.started_s < b.started_s
        assert a.ended_s is not None and c.ended_s is not None
        assert b.started_s >= max(a.ended_s, c.ended_s) + CONFIG.settle_s


async def test_increases_go_out_in_waves_one_interval_apart() -> None:
    async with rig("A", "B") as r:
        await settle_at(r, {"A": 6.0, "B": 6.0})
        r.log.clear()
        r.dispatcher.submit({"A": target(10.0)})
        await r.until(lambda: r.dispatcher.acked_a("A") == 10.0)
        r.dispatcher.submit({"B": target(10.0)})
        await r.until(lambda: r.dispatcher.acked_a("B") == 10.0)
        (a,) = r.calls("A")
        (b,) = r.calls("B")
        assert b.started_s - a.started_s >= CONFIG.increase_interval_s


async def test_increase_is_held_while_a_decrease_is_slow_to_answer() -> None:
    async with rig("A", "B") as r:
        await settle_at(r, {"A": 16.0, "B": 6.0})
        r.log.clear()
        r.chargers["A"].delay_s = 8.0
        r.dispatcher.submit({"A": target(8.0), "B": target(14.0)})
        await r.until(lambda: r.dispatcher.acked_a("B") == 14.0)
        (a,) = r.calls("A")
        (b,) = r.calls("B")
        assert a.ended_s is not None and b.started_s >= a.ended_s + CONFIG.settle_s


async def test_unknown_charger_is_first_set_to_no_more_than_its_safe_current() -> None:
    async with rig("A") as r:
        r.dispatcher.submit({"A": target(20.0, safe_a=6.0)})
        assert r.dispatcher.budget_a("A") is None
        await r.until(lambda: r.dispatcher.acked_a("A") == 20.0)
        values = [c.current_a for c in r.calls("A")]
        assert values == [6.0, 20.0]
        first, second = r.calls("A")
        assert first.ended_s is not None and second.started_s >= first.ended_s + CONFIG.settle_s


async def test_unknown_charger_with_a_low_target_gets_it_in_one_step() -> None:
    async with rig("A") as r:
        r.dispatcher.submit({"A": target(0.0, safe_a=6.0)})
        await r.until(lambda: r.dispatcher.acked_a("A") == 0.0)
        assert [c.current_a for c in r.calls("A")] == [0.0]


async def test_lease_is_refreshed_at_half_life_with_the_same_value() -> None:
    async with rig("A") as r:
        await settle_at(r, {"A": 10.0})
        r.log.clear()
        await r.clock.sleep(CONFIG.lease_s * 1.6)
        calls = r.calls("A")
        assert len(calls) >= 2
        assert all(c.current_a == 10.0 for c in calls)
        assert r.dispatcher.counters.refreshes >= 2


async def test_paused_charger_keeps_its_lease_while_its_increase_is_held_back() -> None:
    config = DispatchConfig(lease_s=20.0, settle_s=5.0, command_timeout_s=5.0, retry_initial_s=2.0)
    async with rig("A", "B", config=config) as r:
        r.dispatcher.submit({"A": target(0.0), "B": target(16.0)})
        await r.until(lambda: r.dispatcher.acked_a("A") == 0.0 and r.dispatcher.acked_a("B") == 16.0)
        r.log.clear()
        r.chargers["B"].delay_s = 30.0  # B's decrease hangs far longer than A's lease
        r.dispatcher.submit({"A": target(6.0), "B": target(10.0)})
        await r.clock.sleep(25.0)
        a_calls = r.calls("A")
        assert a_calls, "A's lease lapsed: it would fall back to its safe current"
        assert all(c.current_a == 0.0 for c in a_calls)


async def test_failed_decrease_is_retried_and_blocks_increases_until_reallocation() -> None:
    async with rig("A", "B") as r:
        await settle_at(r, {"A": 16.0, "B": 6.0})
        r.log.clear()
        r.chargers["A"].answers = [CommandOutcome.TIMEOUT, CommandOutcome.TIMEOUT]
        r.dispatcher.submit({"A": target(8.0), "B": target(14.0)})
        await r.until(lambda: len(r.calls("A")) >= 2)
        assert r.dispatcher.budget_a("A") == 16.0  # unknown which value holds: count the higher
        assert not r.calls("B"), "increase went out while a decrease had failed"
        # The loop re-allocates with A budgeted at 16 A: B gets its increase in the new generation.
        r.dispatcher.submit({"A": target(8.0), "B": target(14.0)})
        await r.until(lambda: r.dispatcher.acked_a("B") == 14.0 and r.dispatcher.acked_a("A") == 8.0)
        retries = [c for c in r.calls("A") if c.outcome is CommandOutcome.TIMEOUT]
        assert len(retries) == 2
        assert retries[1].started_s - retries[0].started_s >= CONFIG.retry_initial_s
        assert r.changes, "the loop was not told about acks and failures"


async def test_never_more_than_one_command_in_flight_per_charger() -> None:
    async with rig("A") as r:
        r.chargers["A"].delay_s = 3.0
        for value in (6.0, 30.0, 7.0, 25.0, 0.0, 12.0, 9.5):
            r.dispatcher.submit({"A": target(value)})
            await r.clock.sleep(0.7)
        await r.until(lambda: r.dispatcher.acked_a("A") == 9.5)
        assert r.chargers["A"].max_in_flight == 1


async def test_small_increases_are_not_sent_but_starting_a_paused_car_is() -> None:
    async with rig("A", "B") as r:
        await settle_at(r, {"A": 10.0, "B": 0.0})
        r.log.clear()
        r.dispatcher.submit({"A": target(10.6), "B": target(6.0)})
        await r.until(lambda: r.dispatcher.acked_a("B") == 6.0)
        await r.clock.sleep(CONFIG.settle_s * 2)
        assert not r.calls("A")
        assert r.dispatcher.acked_a("A") == 10.0


async def test_small_decreases_are_sent_and_values_round_down_to_a_tenth() -> None:
    async with rig("A") as r:
        await settle_at(r, {"A": 10.0})
        r.dispatcher.submit({"A": target(9.87)})
        await r.until(lambda: r.dispatcher.acked_a("A") == 9.8)


async def test_a_driver_exception_is_a_failed_command_not_a_dead_dispatcher() -> None:
    async with rig("A", "B") as r:
        r.chargers["A"].raise_error = True
        r.dispatcher.submit({"A": target(6.0, safe_a=6.0), "B": target(6.0, safe_a=6.0)})
        await r.until(lambda: r.dispatcher.acked_a("B") == 6.0)
        await r.until(lambda: r.dispatcher.counters.by_outcome.get("rejected", 0) >= 1)
        assert r.dispatcher.acked_a("A") is None


async def test_forget_makes_a_rebooted_charger_unknown_and_resends() -> None:
    async with rig("A") as r:
        await settle_at(r, {"A": 16.0})
        r.log.clear()
        r.dispatcher.forget("A")
        assert r.dispatcher.budget_a("A") is None
        await r.until(lambda: r.dispatcher.acked_a("A") == 16.0)
        assert [c.current_a for c in r.calls("A")] == [16.0]


async def test_cancelling_the_dispatcher_cancels_commands_in_flight() -> None:
    clock = ScaledClock(SPEED, EPOCH)
    log: list[Call] = []
    slow = RecordingCharger("A", clock, log, delay_s=1000.0)
    dispatcher = Dispatcher({"A": slow}, clock, CONFIG)
    task = asyncio.get_running_loop().create_task(dispatcher.run())
    dispatcher.submit({"A": target(6.0)})
    for _ in range(1000):
        if log:
            break
        await asyncio.sleep(0.001)
    assert dispatcher.outstanding() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert slow.in_flight == 0
