"""The hand-run meter's load: plausible values, and energy registers that integrate power."""

from __future__ import annotations

import math

import pytest

from simulator.han_meter import SlowLoad


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def monotonic(self) -> float:
        return self.now_s


@pytest.mark.parametrize(("grid", "phases"), [("TN", 3), ("IT", 3), ("TN", 1)])
def test_energy_integrates_power_and_currents_stay_plausible(grid: str, phases: int) -> None:
    clock = FakeClock()
    load = SlowLoad(
        clock,
        grid="IT" if grid == "IT" else "TN",
        phases=1 if phases == 1 else 3,
        mean_current_a=40.0,
        swing_a=15.0,
        energy_import_wh=1_000.0,
    )
    first = load()
    expected_wh = first.energy_import_wh
    previous = first
    for _ in range(60):
        clock.now_s += 10.0
        state = load()
        expected_wh += state.active_power_import_w * 10.0 / 3600.0
        assert state.energy_import_wh == pytest.approx(expected_wh)
        assert state.energy_import_wh > previous.energy_import_wh
        assert all(0.0 <= i <= 55.0 for i in state.current_a)
        previous = state
    if phases == 1:
        assert previous.current_a[1:] == (0.0, 0.0)
        assert previous.active_power_import_w == pytest.approx(230.0 * previous.current_a[0] * 0.95)
    elif grid == "IT":
        mean_i = sum(previous.current_a) / 3
        assert previous.active_power_import_w == pytest.approx(math.sqrt(3) * 230.0 * mean_i * 0.95)
    else:
        assert previous.active_power_import_w == pytest.approx(230.0 * sum(previous.current_a) * 0.95)


def test_currents_swing_over_the_period() -> None:
    clock = FakeClock()
    load = SlowLoad(clock, grid="TN", mean_current_a=40.0, swing_a=15.0, period_s=900.0)
    samples = []
    for step in range(90):
        clock.now_s = step * 10.0
        samples.append(load().current_a[0])
    assert max(samples) == pytest.approx(55.0, abs=0.1)
    assert min(samples) == pytest.approx(25.0, abs=0.1)


def test_power_factor_must_be_sane() -> None:
    with pytest.raises(ValueError, match="power_factor"):
        SlowLoad(FakeClock(), grid="TN", power_factor=0.0)
