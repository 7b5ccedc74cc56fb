"""The dispatcher against recording chargers on an accelerated clock: one command in flight per
charger, leases, retries, and what each charger may be drawing (its `Budget`) in every case."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from controller.allocation import Drive
from controller.dispatch import Budget, ChargerLimits, DispatchConfig, Dispatcher
from drivers.clock import ScaledClock
from drivers.contracts import CommandOutcome, CommandResult

SPEED = 200.0
EPOCH = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)
CONFIG = DispatchConfig(lease_s=60.0, command_timeout_s=5.0, retry_initial_s=2.0)
LIMITS = ChargerLimits(safe_current_a=6.0, max_a=32.0)


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

    async def at(self, values: dict[str, float]) -> None:
        self.dispatcher.submit(values)
        await self.until(lambda: all(self.dispatcher.acked_a(k) == v for k, v in values.items()))
        self.log.clear()


@asynccontextmanager
async def rig(*ids: str, config: DispatchConfig = CONFIG) -> AsyncIterator[Rig]:
    clock = ScaledClock(SPEED, EPOCH)
    log: list[Call] = []
    chargers = {i: RecordingCharger(i, clock, log) for i in ids}
    changes: list[float] = []
    dispatcher = Dispatcher(
        chargers,
        clock,
        config,
        limits=dict.fromkeys(ids, LIMITS),
        on_change=lambda: changes.append(clock.monotonic()),
    )
    task = asyncio.get_running_loop().create_task(dispatcher.run(), name="dispatcher")
    try:
        yield Rig(clock, log, chargers, dispatcher, changes)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_budgets_from_unknown_through_in_flight_to_acknowledged() -> None:
    async with rig("A") as r:
        assert r.dispatcher.budget("A") == Budget(Drive.UNKNOWN, None, 32.0)
        r.chargers["A"].delay_s = 2.0
        r.dispatcher.submit({"A": 6.0})
        await r.until(lambda: bool(r.calls("A")))
        assert r.dispatcher.budget("A") == Budget(Drive.UNKNOWN, None, 32.0)  # nothing confirmed yet
        assert r.dispatcher.decreases_pending()  # the first limit may still lower what it draws
        await r.until(lambda: r.dispatcher.acked_a("A") == 6.0)
        assert r.dispatcher.budget("A") == Budget(Drive.ACKNOWLEDGED, 6.0, 6.0)
        r.dispatcher.submit({"A": 16.0})
        await r.until(lambda: len(r.calls("A")) == 2)
        assert r.dispatcher.budget("A") == Budget(Drive.IN_FLIGHT, 16.0, 16.0)
        assert not r.dispatcher.decreases_pending()
        await r.until(lambda: r.dispatcher.acked_a("A") == 16.0)
        r.dispatcher.submit({"A": 10.0})
        await r.until(lambda: len(r.calls("A")) == 3)
        # A decrease in flight: it may still draw the higher value.
        assert r.dispatcher.budget("A") == Budget(Drive.IN_FLIGHT, 10.0, 16.0)
        assert r.dispatcher.decreases_pending()
        await r.until(lambda: r.dispatcher.acked_a("A") == 10.0)
        ended = r.calls("A")[-1].ended_s
        assert ended is not None and r.dispatcher.last_decrease_ack_mono == pytest.approx(ended, abs=0.5)


async def test_a_failed_command_counts_the_higher_value_and_is_retried_with_backoff() -> None:
    async with rig("A") as r:
        await r.at({"A": 16.0})
        r.chargers["A"].answers = [CommandOutcome.TIMEOUT, CommandOutcome.TIMEOUT]
        r.dispatcher.submit({"A": 8.0})
        await r.until(lambda: len(r.calls("A")) >= 1 and r.calls("A")[0].outcome is not None)
        assert r.dispatcher.budget("A") == Budget(Drive.FAILED, 16.0, 16.0)
        # Not pending: the allocation already counts it at 16 A, so others may go on.
        assert not r.dispatcher.decreases_pending()
        await r.until(lambda: r.dispatcher.acked_a("A") == 8.0)
        first, second, third = r.calls("A")
        assert second.started_s - first.started_s >= CONFIG.retry_initial_s
        assert third.started_s - second.started_s >= 2 * CONFIG.retry_initial_s
        assert r.dispatcher.budget("A") == Budget(Drive.ACKNOWLEDGED, 8.0, 8.0)
        assert r.changes, "the loop was not told about acks and failures"


async def test_a_charger_that_refuses_limits_is_budgeted_at_its_maximum_until_one_holds() -> None:
    async with rig("A") as r:
        r.chargers["A"].answers = [CommandOutcome.REJECTED]  # not provisioned yet
        r.dispatcher.submit({"A": 6.0})
        await r.until(lambda: bool(r.calls("A")) and r.calls("A")[0].outcome is not None)
        assert r.dispatcher.budget("A") == Budget(Drive.REFUSED, None, 32.0)
        await r.until(lambda: r.dispatcher.acked_a("A") == 6.0)
        assert r.dispatcher.budget("A").drive is Drive.ACKNOWLEDGED


async def test_a_lapsed_lease_counts_the_safe_current_it_fell_back_to() -> None:
    config = DispatchConfig(lease_s=20.0, command_timeout_s=5.0, retry_initial_s=2.0, retry_max_s=60.0)
    async with rig("A", config=config) as r:
        await r.at({"A": 0.0})
        r.chargers["A"].answers = [CommandOutcome.TIMEOUT] * 20  # every refresh fails
        await r.until(lambda: r.dispatcher.budget("A").drive is Drive.LAPSED, limit_s=60.0)
        assert r.dispatcher.budget("A") == Budget(Drive.LAPSED, 0.0, 6.0)


async def test_lease_is_refreshed_at_half_life_with_the_same_value() -> None:
    async with rig("A") as r:
        await r.at({"A": 10.0})
        woken = len(r.changes)  # the first acknowledgement did change the budget
        await r.clock.sleep(CONFIG.lease_s * 1.6)
        calls = r.calls("A")
        assert len(calls) >= 2
        assert all(c.current_a == 10.0 for c in calls)
        assert r.dispatcher.counters.refreshes >= 2
        # A refresh acknowledged at the value held changes no budget: the loop is not woken for it.
        assert woken >= 1
        assert r.changes[woken:] == []


async def test_a_lower_value_wanted_behind_an_increase_in_flight_is_a_pending_decrease() -> None:
    async with rig("A") as r:
        await r.at({"A": 10.0})
        r.chargers["A"].delay_s = 3.0
        r.dispatcher.submit({"A": 16.0})
        await r.until(lambda: bool(r.calls("A")))
        r.dispatcher.submit({"A": 8.0})
        assert r.dispatcher.decreases_pending()
        await r.until(lambda: r.dispatcher.acked_a("A") == 8.0)
        assert [c.current_a for c in r.calls("A")] == [16.0, 8.0]


async def test_never_more_than_one_command_in_flight_per_charger() -> None:
    async with rig("A") as r:
        r.chargers["A"].delay_s = 3.0
        for value in (6.0, 30.0, 7.0, 25.0, 0.0, 12.0, 9.5):
            r.dispatcher.submit({"A": value})
            await r.clock.sleep(0.7)
        await r.until(lambda: r.dispatcher.acked_a("A") == 9.5)
        assert r.chargers["A"].max_in_flight == 1


async def test_values_round_down_to_a_tenth() -> None:
    async with rig("A") as r:
        await r.at({"A": 10.0})
        r.dispatcher.submit({"A": 9.87})
        await r.until(lambda: r.dispatcher.acked_a("A") == 9.8)


async def test_a_driver_exception_is_a_failed_command_not_a_dead_dispatcher() -> None:
    async with rig("A", "B") as r:
        r.chargers["A"].raise_error = True
        r.dispatcher.submit({"A": 6.0, "B": 6.0})
        await r.until(lambda: r.dispatcher.acked_a("B") == 6.0)
        await r.until(lambda: r.dispatcher.counters.by_outcome.get("rejected", 0) >= 1)
        assert r.dispatcher.acked_a("A") is None
        assert r.dispatcher.budget("A").drive is Drive.REFUSED


async def test_forget_makes_a_rebooted_charger_unknown_and_resends() -> None:
    async with rig("A") as r:
        await r.at({"A": 16.0})
        r.dispatcher.forget("A")
        assert r.dispatcher.budget("A") == Budget(Drive.UNKNOWN, None, 32.0)
        await r.until(lambda: r.dispatcher.acked_a("A") == 16.0)
        assert [c.current_a for c in r.calls("A")] == [16.0]


async def test_cancelling_the_dispatcher_cancels_commands_in_flight() -> None:
    clock = ScaledClock(SPEED, EPOCH)
    log: list[Call] = []
    slow = RecordingCharger("A", clock, log, delay_s=1000.0)
    dispatcher = Dispatcher({"A": slow}, clock, CONFIG)
    task = asyncio.get_running_loop().create_task(dispatcher.run())
    dispatcher.submit({"A": 6.0})
    for _ in range(1000):
        if log:
            break
        await asyncio.sleep(0.001)
    assert dispatcher.outstanding() == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert slow.in_flight == 0
