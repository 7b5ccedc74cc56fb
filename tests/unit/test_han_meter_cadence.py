"""Each vendor's cadence, aligned to the simulated wall clock, with the hourly list at hh:00:10."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from simulator.clock import SimClock
from simulator.han_meter import (
    ListType,
    MemoryOutput,
    MeterState,
    SentFrame,
    Slot,
    Vendor,
    VirtualMeter,
    default_profile,
    encode,
    slots_between,
)
from simulator.han_meter.cosem_time import OSLO
from tests.unit.han_meter_support import check_frame, split_frames

HOUR_START = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)  # 18:00 in Oslo (CET)

STATE = MeterState(
    current_a=(12.0, 8.5, 10.25),
    voltage_v=(231.0, 229.5, 230.2),
    active_power_import_w=7_000.0,
    reactive_power_export_var=300.0,
    energy_import_wh=42_000_000.0,
)

# Per hour: (power-only, full, hourly) frames.
PER_HOUR = {
    Vendor.AIDON: (1080, 359, 1),  # every 2.5 s; full list every 10 s
    Vendor.KAIFA: (1440, 359, 1),  # every 2 s; full list every 10 s
    Vendor.KAMSTRUP: (0, 359, 1),  # full list every 10 s only
    Vendor.LANDIS_GYR: (1080, 359, 1),
}


@pytest.mark.parametrize("vendor", list(Vendor))
def test_an_hour_of_slots_per_vendor(vendor: Vendor) -> None:
    slots = slots_between(
        vendor, HOUR_START - timedelta(milliseconds=1), HOUR_START + timedelta(hours=1, seconds=-0.001)
    )
    kinds = Counter(s.list_type for s in slots)
    assert (kinds[ListType.POWER], kinds[ListType.FULL], kinds[ListType.HOURLY]) == PER_HOUR[vendor]
    hourly = [s for s in slots if s.list_type is ListType.HOURLY]
    local = hourly[0].utc.astimezone(OSLO)
    assert (local.hour, local.minute, local.second, local.microsecond) == (18, 0, 10, 0)
    for slot in slots:
        seconds = (slot.utc - HOUR_START).total_seconds()
        if slot.list_type is ListType.FULL:
            assert seconds % 10 == 0
        if slot.list_type is ListType.POWER:
            assert seconds % (2.0 if vendor is Vendor.KAIFA else 2.5) == 0
            assert seconds % 10 != 0


def test_hourly_list_is_at_hh_00_10_oslo_time_in_summer_too() -> None:
    summer = datetime(2026, 7, 1, 9, 59, 55, tzinfo=UTC)
    slots = slots_between(Vendor.KAMSTRUP, summer, summer + timedelta(seconds=30))
    assert [(s.utc.astimezone(OSLO).strftime("%H:%M:%S"), int(s.list_type)) for s in slots] == [
        ("12:00:00", 2),
        ("12:00:10", 3),
        ("12:00:20", 2),
    ]


async def test_accelerated_meters_send_every_slot_of_their_vendor() -> None:
    # Four simulated minutes across 18:00 Oslo time, at 240x: one real second.
    epoch = HOUR_START - timedelta(minutes=2, seconds=0.3)
    end = epoch + timedelta(minutes=4)
    clock = SimClock(240.0, epoch)
    vendors = list(Vendor)
    sent: dict[Vendor, list[SentFrame]] = {v: [] for v in vendors}
    past_the_end = asyncio.Event()

    def recorder(vendor: Vendor) -> Callable[[SentFrame], None]:
        def record(frame: SentFrame) -> None:
            sent[vendor].append(frame)
            if all(frames and frames[-1].utc > end for frames in sent.values()):
                past_the_end.set()

        return record

    outputs = {v: MemoryOutput() for v in vendors}
    meters = {
        v: VirtualMeter(default_profile(v, 3, "IT"), lambda: STATE, clock, outputs[v], on_frame=recorder(v))
        for v in vendors
    }
    tasks = [asyncio.create_task(m.run(), name=f"meter-{v}") for v, m in meters.items()]
    try:
        async with asyncio.timeout(60):
            await past_the_end.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    for vendor in vendors:
        frames = sent[vendor]
        first = frames[0]
        assert first.utc - epoch < timedelta(seconds=10)  # started on the first slot after start
        expected = slots_between(vendor, first.utc - timedelta(milliseconds=1), end)
        got = [Slot(f.utc, f.list_type) for f in frames if f.utc <= end]
        assert got == expected, vendor
        kinds = Counter(f.list_type for f in frames)
        assert meters[vendor].frames_sent == kinds
        assert kinds[ListType.HOURLY] == 1
        # What reached the output is exactly the frames, each one valid.
        wire, gaps = split_frames(outputs[vendor].data)
        assert wire == [f.data for f in frames]
        assert set(gaps) == {b""}
        assert all(check_frame(frame).ok for frame in wire)
        hourly = next(f for f in frames if f.list_type is ListType.HOURLY)
        assert hourly.utc == HOUR_START + timedelta(seconds=10)


async def test_hourly_clock_and_registers_follow_the_vendor() -> None:
    # Aidon freezes its registers at hh:00:00 and names that time; Kaifa names the sending time.
    clock = SimClock(1.0, HOUR_START)
    hour_local = HOUR_START.astimezone(OSLO)
    at_hour = replace(STATE, energy_import_wh=1_000_000.0)
    ten_s_later = replace(STATE, energy_import_wh=1_000_020.0, active_power_import_w=7_200.0)
    for vendor, expected_clock, expected_registers in (
        (Vendor.AIDON, hour_local, at_hour),
        (Vendor.KAIFA, hour_local + timedelta(seconds=10), ten_s_later),
    ):
        samples = iter([at_hour, ten_s_later])
        out = MemoryOutput()
        profile = default_profile(vendor)
        meter = VirtualMeter(profile, samples.__next__, clock, out)
        await meter.send_slot(Slot(HOUR_START, ListType.FULL))
        await meter.send_slot(Slot(HOUR_START + timedelta(seconds=10), ListType.HOURLY))
        want = replace(ten_s_later, energy_import_wh=expected_registers.energy_import_wh)
        assert out.chunks[1] == encode(profile, ListType.HOURLY, want, expected_clock)


async def test_a_meter_far_behind_skips_slots_instead_of_bursting() -> None:
    class StallingClock(SimClock):
        """The host is suspended for an hour during the meter's first sleep."""

        jump = timedelta(0)

        def utc_now(self) -> datetime:
            return super().utc_now() + self.jump

        async def sleep(self, seconds: float) -> None:
            if not self.jump:
                self.jump = timedelta(hours=1)
            await super().sleep(seconds)

    clock = StallingClock(100.0, HOUR_START + timedelta(seconds=1))
    sent: list[SentFrame] = []
    three_sent = asyncio.Event()

    def record(frame: SentFrame) -> None:
        sent.append(frame)
        if len(sent) == 3:
            three_sent.set()

    meter = VirtualMeter(
        default_profile(Vendor.KAMSTRUP), lambda: STATE, clock, MemoryOutput(), on_frame=record
    )
    task = asyncio.create_task(meter.run())
    try:
        async with asyncio.timeout(60):
            await three_sent.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # The hour's 360 slots were skipped, not sent late; sending resumed on the wall clock.
    assert 359 <= meter.slots_skipped <= 362
    assert sent[0].utc > HOUR_START + timedelta(hours=1)
    assert [b.utc - a.utc for a, b in itertools.pairwise(sent)] == [timedelta(seconds=10)] * (len(sent) - 1)
