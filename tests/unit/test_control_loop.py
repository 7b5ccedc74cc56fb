"""The control loop's triggers: a meter reading runs a cycle at once, charger reports and dispatcher
acknowledgements are folded into cycles at least `min_gap_s` apart, and nothing is dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from controller.dispatch import ChargerLimits, DispatchConfig, Dispatcher
from controller.loop import ControlLoop, Cycle
from controller.site.snapshot import SiteState
from drivers.clock import ScaledClock
from drivers.contracts import (
    CommandOutcome,
    CommandResult,
    ConnectorState,
    CurrentLimiter,
    MeterList,
    MeterReading,
    MeterVendor,
    ReceiveTime,
)
from tests.unit.test_site_state import settings, status

EPOCH = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)


@dataclass
class Accepting:
    charger_id: str

    async def set_current(
        self, current_a: float, *, lease_s: float, phases: int | None = None, timeout_s: float = 10.0
    ) -> CommandResult:
        return CommandResult(CommandOutcome.ACCEPTED)

    async def install_safe_limit(self, safe_current_a: float, *, timeout_s: float = 10.0) -> CommandResult:
        return CommandResult(CommandOutcome.ACCEPTED)


@dataclass
class Rig:
    clock: ScaledClock
    loop: ControlLoop
    site: SiteState
    cycles: list[Cycle]
    cycled: asyncio.Event

    def observe(self, cycle: Cycle) -> None:
        self.cycles.append(cycle)
        self.cycled.set()


@asynccontextmanager
async def running(tmp_path: Path, *, min_gap_s: float, tick_s: float = 3600.0) -> AsyncIterator[Rig]:
    site_settings = settings(tmp_path)
    clock = ScaledClock(1.0, EPOCH)
    drivers: dict[str, CurrentLimiter] = {c.id: Accepting(c.id) for c in site_settings.chargers}
    dispatcher = Dispatcher(
        drivers,
        clock,
        DispatchConfig(lease_s=60.0),
        limits={c.id: ChargerLimits(c.safe_current_a, c.max_a) for c in site_settings.chargers},
    )
    site = SiteState(site_settings)
    loop = ControlLoop(site, dispatcher, clock, tick_s=tick_s, min_gap_s=min_gap_s)
    rig = Rig(clock, loop, site, [], asyncio.Event())
    loop.add_observer(rig.observe)
    task = asyncio.create_task(loop.run(), name="loop")
    try:
        yield rig
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def reading(clock: ScaledClock, current_a: float) -> MeterReading:
    return MeterReading(
        MeterVendor.KAIFA,
        MeterList.FULL,
        ReceiveTime(clock.monotonic(), clock.utc_now()),
        active_power_import_w=current_a * 230.0 * 3,
        active_power_export_w=0.0,
        current_l1_a=current_a,
        current_l2_a=current_a,
        current_l3_a=current_a,
    )


async def until(rig: Rig, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Waits for a cycle after which `predicate` holds."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            rig.cycled.clear()
            await rig.cycled.wait()


async def cycles_reach(rig: Rig, count: int) -> None:
    await until(rig, lambda: len(rig.cycles) >= count)


def drawing_a(cycle: Cycle, charger_id: str) -> tuple[float | None, ...]:
    vehicle = next(c for c in cycle.snapshot.chargers if c.id == charger_id).vehicle
    assert vehicle is not None
    return vehicle.drawing_a


async def test_a_stream_of_measurement_reports_costs_one_cycle_per_gap(tmp_path: Path) -> None:
    async with running(tmp_path, min_gap_s=0.2) as rig:
        sent = 0
        started = rig.clock.monotonic()
        while rig.clock.monotonic() - started < 1.0:
            measured = (float(sent % 20), float(sent % 20), float(sent % 20))
            rig.loop.charger_sink(
                status("three", ConnectorState.CHARGING, measured, seen_s=rig.clock.monotonic())
            )
            sent += 1
            await asyncio.sleep(0.005)
        elapsed_s = rig.clock.monotonic() - started
        last_current = float((sent - 1) % 20)
        # Folded, not dropped: a cycle sees the last report.
        await until(rig, lambda: bool(rig.cycles) and drawing_a(rig.cycles[-1], "three")[0] == last_current)
    assert sent > 50
    # At most one cycle per gap (plus the first, which nothing preceded), however many reports came.
    assert 2 <= len(rig.cycles) <= elapsed_s / 0.2 + 2
    for earlier, later in zip(rig.cycles, rig.cycles[1:], strict=False):
        assert later.started_mono - earlier.started_mono >= 0.2 - 1e-9
    # The first report is news (nothing was known of the charger); the rest only measurements.
    assert rig.cycles[0].trigger == "charger"
    assert {c.trigger for c in rig.cycles[1:]} == {"report"}


async def test_a_meter_reading_cuts_the_gap_short_and_runs_the_folded_reports(tmp_path: Path) -> None:
    # A gap far longer than the test: only the meter can cause the second cycle.
    async with running(tmp_path, min_gap_s=3600.0) as rig:
        rig.loop.charger_sink(
            status("three", ConnectorState.CHARGING, (5.0, 5.0, 5.0), seen_s=rig.clock.monotonic())
        )
        rig.loop.meter_sink(reading(rig.clock, 20.0))
        await cycles_reach(rig, 1)
        assert rig.cycles[0].trigger == "meter"
        rig.loop.charger_sink(
            status("three", ConnectorState.CHARGING, (9.0, 9.0, 9.0), seen_s=rig.clock.monotonic())
        )
        await asyncio.sleep(0.2)
        assert len(rig.cycles) == 1  # held: a report alone does not run a cycle inside the gap
        rig.loop.meter_sink(reading(rig.clock, 30.0))
        await cycles_reach(rig, 2)
    cycle = rig.cycles[1]
    assert cycle.trigger == "meter"
    assert drawing_a(cycle, "three") == (9.0, 9.0, 9.0)
    (meter,) = cycle.snapshot.meters
    assert meter.currents_a == (30.0, 30.0, 30.0)


async def test_meter_readings_are_never_held(tmp_path: Path) -> None:
    async with running(tmp_path, min_gap_s=3600.0) as rig:
        for n in range(5):
            rig.loop.meter_sink(reading(rig.clock, 10.0 + n))
            await cycles_reach(rig, n + 1)
    assert [c.trigger for c in rig.cycles] == ["meter"] * 5


async def test_a_tick_runs_when_nothing_arrives(tmp_path: Path) -> None:
    # A silent meter sends nothing: the tick is what notices it going stale.
    async with running(tmp_path, min_gap_s=3600.0, tick_s=0.05) as rig:
        await cycles_reach(rig, 3)
    assert {c.trigger for c in rig.cycles} == {"tick"}


async def test_a_state_change_or_a_charger_gone_runs_a_cycle_inside_the_gap(tmp_path: Path) -> None:
    async with running(tmp_path, min_gap_s=3600.0) as rig:
        rig.loop.meter_sink(reading(rig.clock, 20.0))
        await cycles_reach(rig, 1)
        now = rig.clock.monotonic
        rig.loop.charger_sink(status("three", ConnectorState.SUSPENDED_EV, (0.0, 0.0, 0.0), seen_s=now()))
        await cycles_reach(rig, 2)  # the first word from a charger
        rig.loop.charger_sink(status("three", ConnectorState.SUSPENDED_EV, (0.1, 0.0, 0.0), seen_s=now()))
        rig.loop.charger_sink(status("three", ConnectorState.CHARGING, (9.0, 9.0, 9.0), seen_s=now()))
        await cycles_reach(rig, 3)  # the car started: folded with the report before it
        assert drawing_a(rig.cycles[2], "three") == (9.0, 9.0, 9.0)
        rig.loop.charger_sink(
            status("three", ConnectorState.CHARGING, (9.0, 9.0, 9.0), seen_s=now(), online=False)
        )
        await cycles_reach(rig, 4)  # gone: budgeted at its maximum from now
        rig.loop.charger_sink(status("three", ConnectorState.CHARGING, (9.0, 9.0, 9.0), seen_s=now()))
        rig.loop.poke()  # an acknowledgement that changed a budget
        await cycles_reach(rig, 5)
        rig.loop.charger_sink(status("three", ConnectorState.CHARGING, (8.0, 8.0, 8.0), seen_s=now()))
        await asyncio.sleep(0.2)
    # Back online with nothing else new, then a measurement only: neither is worth a cycle of its own.
    assert len(rig.cycles) == 5
    assert [c.trigger for c in rig.cycles] == ["meter", "charger", "charger", "charger", "dispatch"]
