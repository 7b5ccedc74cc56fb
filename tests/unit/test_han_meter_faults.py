"""Fault drills do what they say, and the same seed gives the same bytes."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from simulator.clock import SimClock
from simulator.han_meter import (
    DropBytes,
    Fault,
    FaultInjector,
    FlipBits,
    Freeze,
    Garbage,
    ListType,
    MemoryOutput,
    MeterState,
    ScheduledFault,
    SentFrame,
    Silence,
    Vendor,
    VirtualMeter,
    default_profile,
    slots_between,
)
from tests.unit.han_meter_support import check_frame, split_frames

T0 = datetime(2026, 11, 22, 16, 30, tzinfo=UTC)
STATE = MeterState(
    current_a=(10.0, 11.0, 12.0), voltage_v=(230.0, 231.0, 232.0), active_power_import_w=7_500.0
)


class Ticking:
    """Ground truth that changes on every sample, so that frozen values are noticeable."""

    def __init__(self) -> None:
        self.samples = 0

    def __call__(self) -> MeterState:
        self.samples += 1
        return replace(STATE, active_power_import_w=1_000.0 + self.samples)


async def drive(
    vendor: Vendor, faults: FaultInjector, start: datetime, seconds: float
) -> tuple[MemoryOutput, list[SentFrame], VirtualMeter]:
    """Send every slot of (start, start + seconds] through a meter, without waiting for time."""
    out = MemoryOutput()
    sent: list[SentFrame] = []
    meter = VirtualMeter(
        default_profile(vendor), Ticking(), SimClock(1.0, start), out, faults, on_frame=sent.append
    )
    for slot in slots_between(vendor, start, start + timedelta(seconds=seconds)):
        await meter.send_slot(slot)
    return out, sent, meter


async def test_garbage_appears_between_frames() -> None:
    faults = FaultInjector(seed=7)
    faults.inject(Garbage(n_bytes=20, frames=2))
    out, sent, _ = await drive(Vendor.AIDON, faults, T0, 10.0)
    frames, gaps = split_frames(out.data)
    assert len(frames) == len(sent) == 4
    assert all(check_frame(f).ok for f in frames)
    assert [len(g) for g in gaps] == [20, 20, 0, 0, 0]
    assert faults.injected["Garbage"] == 1


async def test_flipped_bits_make_the_frame_fail_its_crc() -> None:
    faults = FaultInjector(seed=3)
    faults.schedule(T0 + timedelta(seconds=5), FlipBits(bits=3))
    clean, _, _ = await drive(Vendor.KAIFA, FaultInjector(seed=3), T0, 10.0)
    out, sent, _ = await drive(Vendor.KAIFA, faults, T0, 10.0)
    frames, gaps = split_frames(out.data)
    expected, _ = split_frames(clean.data)
    assert [f.data for f in sent] == frames
    assert set(gaps) == {b""}
    checks = [check_frame(f) for f in frames]
    # Slots at 2, 4 s are clean; the one at 6 s is the first at or after the scheduled 5 s.
    assert [c.ok for c in checks] == [True, True, False, True, True]
    bad, good = frames[2], expected[2]
    assert len(bad) == len(good)
    assert sum(bin(a ^ b).count("1") for a, b in zip(bad, good, strict=True)) == 3
    assert bad[0] == bad[-1] == 0x7E


async def test_dropped_bytes_shorten_the_frame() -> None:
    faults = FaultInjector(seed=11)
    faults.inject(DropBytes(n_bytes=2))
    _, sent, _ = await drive(Vendor.KAMSTRUP, faults, T0, 20.0)
    clean, _, _ = await drive(Vendor.KAMSTRUP, FaultInjector(), T0, 20.0)
    assert len(sent) == 2
    assert len(sent[0].data) == len(clean.chunks[0]) - 2
    assert not check_frame(sent[0].data).ok
    assert sent[1].data == clean.chunks[1]


async def test_silence_sends_nothing_for_its_duration() -> None:
    start = T0 + timedelta(seconds=30)
    faults = FaultInjector(seed=1, schedule=[ScheduledFault(start, Silence(duration_s=25.0))])
    out, sent, meter = await drive(Vendor.AIDON, faults, T0, 120.0)
    quiet = [
        s
        for s in slots_between(Vendor.AIDON, T0, T0 + timedelta(seconds=120))
        if start <= s.utc < start + timedelta(seconds=25)
    ]
    assert len(quiet) == 10
    assert all(not start <= f.utc < start + timedelta(seconds=25) for f in sent)
    assert meter.frames_silenced == 10
    assert len(sent) == 48 - 10
    frames, _ = split_frames(out.data)
    assert len(frames) == len(sent)


async def test_silence_in_real_time_produces_no_bytes() -> None:
    # Through run(): an accelerated meter goes quiet for 20 simulated seconds.
    clock = SimClock(200.0, T0)
    faults = FaultInjector(seed=5)
    faults.inject(Silence(duration_s=20.0))
    out = MemoryOutput()
    sent: list[SentFrame] = []
    done = asyncio.Event()

    def record(frame: SentFrame) -> None:
        sent.append(frame)
        done.set()

    meter = VirtualMeter(default_profile(Vendor.KAIFA), lambda: STATE, clock, out, faults, on_frame=record)
    task = asyncio.create_task(meter.run())
    try:
        async with asyncio.timeout(30):
            await done.wait()
        silenced_at_first_frame = meter.frames_silenced
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # The first frame after 20 s of silence (10 Kaifa slots of 2 s); nothing on the line before it.
    assert silenced_at_first_frame == 10
    assert out.chunks[0] == sent[0].data
    first_slot = sent[0].utc - timedelta(seconds=2 * 10)
    assert timedelta(0) < first_slot - T0 <= timedelta(seconds=2)


async def test_frozen_values_repeat_while_the_clock_runs() -> None:
    faults = FaultInjector(seed=2)
    faults.schedule(T0 + timedelta(seconds=10), Freeze(duration_s=30.0))
    _, sent, _ = await drive(Vendor.KAMSTRUP, faults, T0, 60.0)
    # Kamstrup full lists at 10..60 s: 10, 20, 30 frozen (same values, own time), then fresh ones.
    bodies = [f.data[30:-3] for f in sent]  # after the APDU date-time, before the FCS
    times = [f.data[17:29] for f in sent]
    assert bodies[0] == bodies[1] == bodies[2]
    assert len(set(times)) == 6
    assert len({bodies[2], bodies[3], bodies[4], bodies[5]}) == 4


async def scripted_stream(seed: int) -> bytes:
    faults = FaultInjector(seed=seed)
    script: list[Fault] = [
        Garbage(n_bytes=8),
        FlipBits(bits=2),
        DropBytes(n_bytes=3),
        Garbage(n_bytes=5, frames=3),
    ]
    for i, fault in enumerate(script):
        faults.schedule(T0 + timedelta(seconds=5 * i + 1), fault)
    out, _, _ = await drive(Vendor.AIDON, faults, T0, 40.0)
    return out.data


async def test_same_seed_same_bytes() -> None:
    a, b, other = await scripted_stream(42), await scripted_stream(42), await scripted_stream(43)
    assert a == b
    assert a != other


@pytest.mark.parametrize(
    "fault",
    [Garbage(n_bytes=0), FlipBits(bits=0), DropBytes(frames=0), Silence(duration_s=0), Freeze(duration_s=-1)],
)
def test_nonsense_faults_are_refused(fault: Fault) -> None:
    with pytest.raises(ValueError, match=">"):
        FaultInjector().inject(fault)


def test_scheduled_faults_need_aware_times() -> None:
    with pytest.raises(ValueError, match="aware"):
        FaultInjector().schedule(datetime(2026, 1, 1), Silence(duration_s=1.0))


async def test_faults_wait_for_a_frame_that_is_sent() -> None:
    # A bit flip requested during silence hits the first frame after it.
    faults = FaultInjector(seed=9)
    faults.inject(Silence(duration_s=10.0))
    faults.inject(FlipBits())
    _, sent, _ = await drive(Vendor.KAMSTRUP, faults, T0, 30.0)
    assert [check_frame(f.data).ok for f in sent] == [False, True]
    assert sent[0].list_type is ListType.FULL
