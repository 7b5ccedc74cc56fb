"""The product's HAN reader against the simulator's virtual meter, through a real pty.

The two codecs were written apart (drivers/han from the captures and specifications, simulator/han_meter
from the vendors' descriptions), so agreement here is evidence, not a bug cancelling itself out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drivers.clock import ScaledClock
from drivers.contracts import MeterList, MeterReading, MeterVendor
from drivers.han.reader import HanReader
from simulator.clock import SimClock
from simulator.han_meter import (
    FaultInjector,
    MeterState,
    PtyOutput,
    Silence,
    Vendor,
    VirtualMeter,
    default_profile,
)

pytestmark = pytest.mark.integration

SPEED = 40.0
# Start just before an hour so the hourly list (hh:00:10) arrives within the test.
EPOCH = datetime(2026, 11, 22, 16, 59, 50, tzinfo=UTC)

STATE = MeterState(
    current_a=(41.3, 27.9, 33.4),
    voltage_v=(231.0, 229.0, 232.0),
    active_power_import_w=12_840.0,
    active_power_export_w=0.0,
    reactive_power_import_var=910.0,
    reactive_power_export_var=0.0,
    energy_import_wh=48_123_450.0,
    energy_export_wh=0.0,
    reactive_energy_import_varh=3_210_000.0,
    reactive_energy_export_varh=12_340.0,
)


@dataclass
class Link:
    readings: list[MeterReading]
    reader: HanReader
    output: PtyOutput
    meter: VirtualMeter
    clock: ScaledClock

    async def wait_for(self, predicate: Callable[[], bool], sim_s: float = 60.0) -> None:
        deadline = self.clock.monotonic() + sim_s
        while not predicate():
            assert self.clock.monotonic() < deadline, "not reached in simulated time"
            await self.clock.sleep(0.5)


@asynccontextmanager
async def link(
    tmp_path: Path, vendor: Vendor, grid: str, faults: FaultInjector | None = None
) -> AsyncIterator[Link]:
    profile = default_profile(vendor, phases=3, grid="IT" if grid == "IT" else "TN")
    sim_clock = SimClock(SPEED, EPOCH)
    clock = ScaledClock(SPEED, EPOCH)
    readings: list[MeterReading] = []
    async with PtyOutput(tmp_path / "ttyHAN") as output:
        meter = VirtualMeter(profile, lambda: STATE, sim_clock, output, faults)
        reader = HanReader(
            str(tmp_path / "ttyHAN"),
            clock=clock,
            sink=readings.append,
            silence_after_s=30.0,
            reconnect_initial_s=1.0,
            reconnect_max_s=2.0,
        )
        async with asyncio.TaskGroup() as tasks:
            meter_task = tasks.create_task(meter.run(), name="virtual-meter")
            reader_task = tasks.create_task(reader.run(), name="han-reader")
            try:
                yield Link(readings, reader, output, meter, clock)
            finally:
                meter_task.cancel()
                reader_task.cancel()


VENDORS = [
    (Vendor.AIDON, MeterVendor.AIDON, "IT"),
    (Vendor.KAIFA, MeterVendor.KAIFA, "IT"),
    (Vendor.KAMSTRUP, MeterVendor.KAMSTRUP, "TN"),
    (Vendor.LANDIS_GYR, MeterVendor.LANDIS_GYR, "IT"),
]


@pytest.mark.parametrize(("vendor", "expected_vendor", "grid"), VENDORS, ids=[v[0].value for v in VENDORS])
async def test_reader_decodes_the_virtual_meter_for_each_vendor(
    tmp_path: Path, vendor: Vendor, expected_vendor: MeterVendor, grid: str
) -> None:
    async with link(tmp_path, vendor, grid) as lk:
        await lk.wait_for(lambda: any(r.list_type is MeterList.FULL_WITH_ENERGY for r in lk.readings))
        await lk.wait_for(lambda: sum(r.list_type is MeterList.FULL for r in lk.readings) >= 2)

    full = [r for r in lk.readings if r.list_type is not MeterList.POWER_ONLY]
    # A power-only list carries no vendor mark (L&G's equals Aidon's): judge vendors on full lists.
    assert {r.vendor for r in full} == {expected_vendor}
    for reading in full:
        assert reading.current_l1_a == pytest.approx(STATE.current_a[0], abs=0.1)
        assert reading.current_l3_a == pytest.approx(STATE.current_a[2], abs=0.1)
        if vendor is Vendor.AIDON:
            assert reading.current_l2_a is None, "three-wire Aidon sends no IL2: it must stay absent"
        elif vendor is Vendor.LANDIS_GYR:
            assert reading.current_l2_a == 0.0  # L&G IT sends IL2 as 0; the site model bounds it
        else:
            assert reading.current_l2_a == pytest.approx(STATE.current_a[1], abs=0.1)
        assert reading.active_power_import_w == pytest.approx(STATE.active_power_import_w, abs=1.0)
        assert reading.received.utc.tzinfo is UTC
    hourly = [r for r in lk.readings if r.list_type is MeterList.FULL_WITH_ENERGY]
    assert hourly[0].energy_import_wh == pytest.approx(STATE.energy_import_wh, abs=10.0)
    assert hourly[0].meter_time is not None
    assert hourly[0].meter_time.utcoffset() is not None
    if vendor is not Vendor.KAMSTRUP:
        assert any(r.list_type is MeterList.POWER_ONLY for r in lk.readings)
    assert lk.reader.counters["bad_fcs"] == 0
    assert lk.reader.counters["bad_hcs"] == 0


async def test_reader_survives_the_adapter_unplugged_and_replugged(tmp_path: Path) -> None:
    async with link(tmp_path, Vendor.KAIFA, "IT") as lk:
        await lk.wait_for(lambda: len(lk.readings) >= 3)
        lk.output.unplug()
        await lk.wait_for(lambda: lk.reader.counters["disconnects"] >= 1)
        before = len(lk.readings)
        lk.output.replug()
        await lk.wait_for(lambda: len(lk.readings) >= before + 3)
        assert lk.reader.counters["connects"] >= 2


async def test_reader_reports_a_silent_meter_and_its_return(tmp_path: Path) -> None:
    faults = FaultInjector(seed=7)
    async with link(tmp_path, Vendor.AIDON, "IT", faults) as lk:
        await lk.wait_for(lambda: len(lk.readings) >= 2)
        faults.inject(Silence(duration_s=60.0))
        await lk.wait_for(lambda: lk.reader.silent, sim_s=90.0)
        assert lk.reader.counters["silences"] == 1
        await lk.wait_for(lambda: not lk.reader.silent, sim_s=90.0)
