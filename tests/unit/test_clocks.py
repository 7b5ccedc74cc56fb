"""Both clocks scale time the same way; an accelerated run must agree with the daemon on the wall clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from drivers.clock import ScaledClock, SystemClock
from simulator.clock import SimClock

EPOCH = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)


def test_scaled_clock_runs_faster_than_real_time() -> None:
    clock = ScaledClock(50.0, EPOCH)
    t0 = clock.monotonic()
    time.sleep(0.02)
    elapsed_sim_s = clock.monotonic() - t0
    assert elapsed_sim_s >= 50.0 * 0.02 * 0.99
    assert clock.loop_seconds(10.0) == pytest.approx(0.2)
    assert clock.utc_now() > EPOCH


def test_sim_clock_and_scaled_clock_agree_on_the_wall_clock() -> None:
    daemon = ScaledClock(20.0, EPOCH)
    garage = SimClock(20.0, EPOCH)
    time.sleep(0.01)
    # Constructed a moment apart, they differ by that moment times the speed, not more.
    assert abs((daemon.utc_now() - garage.utc_now()).total_seconds()) < 20.0 * 0.05


async def test_sleep_is_in_simulated_seconds() -> None:
    clock = SimClock(100.0, EPOCH)
    t0 = clock.monotonic()
    await clock.sleep(1.0)
    assert clock.monotonic() - t0 >= 1.0


@pytest.mark.parametrize("speed", [0.0, -1.0])
def test_clocks_refuse_non_positive_speed(speed: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        ScaledClock(speed, EPOCH)
    with pytest.raises(ValueError, match="positive"):
        SimClock(speed, EPOCH)


def test_clocks_refuse_naive_epochs() -> None:
    naive = datetime(2026, 11, 22, 16, 0)
    with pytest.raises(ValueError, match="aware"):
        ScaledClock(1.0, naive)
    with pytest.raises(ValueError, match="aware"):
        SimClock(1.0, naive)


def test_system_clock_is_utc() -> None:
    assert SystemClock().utc_now().tzinfo is UTC


def test_a_restarted_process_rejoins_the_same_timeline() -> None:
    garage = SimClock(30.0, EPOCH)
    time.sleep(0.01)
    restarted = ScaledClock(30.0, EPOCH, real_start_s=garage.real_start_s)
    assert abs((restarted.utc_now() - garage.utc_now()).total_seconds()) < 30.0 * 0.005
