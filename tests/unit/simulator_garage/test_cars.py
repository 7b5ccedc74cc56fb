"""The car model: response delay, ~95 % draw, taper, faulty cars, exact energy integration."""

from __future__ import annotations

import itertools

import pytest

from simulator.cars import Car, CarSpec


def make(spec: CarSpec, soc: float = 0.2, ppa: float = 230.0) -> Car:
    return Car(spec, soc=soc, power_per_amp_w=ppa)


def run(car: Car, until_s: float, dt_s: float = 0.25, pilot_a: float | None = None) -> list[float]:
    """Step to `until_s`, returning the current after each step."""
    out = []
    t = car._now_s
    while t < until_s - 1e-12:
        if pilot_a is not None:
            car.set_pilot(pilot_a, t)
        t = min(until_s, t + dt_s)
        car.advance(t)
        out.append(car.current_a)
    return out


def test_follows_a_new_limit_after_its_response_delay() -> None:
    car = make(CarSpec(max_current_a=32, phases=1, response_delay_s=3.0))
    car.set_pilot(16.0, 0.0)
    car.advance(2.9)
    assert car.current_a == 0.0
    car.advance(3.1)
    assert car.current_a == 16.0
    car.set_pilot(10.0, 10.0)
    car.advance(12.9)
    assert car.current_a == 16.0
    car.advance(13.0)
    assert car.current_a == 10.0


def test_energy_is_exact_across_a_change_inside_a_step() -> None:
    car = make(CarSpec(max_current_a=32, phases=1, response_delay_s=1.3, battery_kwh=1000))
    car.set_pilot(20.0, 0.0)
    wh = car.advance(10.0)
    # 1.3 s at 0 A, then 8.7 s at 20 A x 230 V: one 10 s step, split at the change.
    assert wh == pytest.approx(20 * 230 * 8.7 / 3600, rel=1e-12)
    assert car.energy_wh == pytest.approx(wh, rel=1e-12)


def test_energy_over_an_hour_matches_the_power() -> None:
    car = make(CarSpec(max_current_a=16, phases=3, response_delay_s=0.0, battery_kwh=500), ppa=690.0)
    run(car, 3600.0, pilot_a=16.0)
    assert car.energy_wh == pytest.approx(16 * 690.0, rel=1e-9)
    assert car.soc == pytest.approx(0.2 + 16 * 690.0 * 0.92 / 500_000, rel=1e-9)


def test_draws_95_percent_of_the_setpoint() -> None:
    car = make(CarSpec(max_current_a=32, draw_ratio=0.95, response_delay_s=0))
    assert run(car, 1.0, pilot_a=20.0)[-1] == pytest.approx(19.0)


def test_never_more_than_its_own_maximum() -> None:
    car = make(CarSpec(max_current_a=16, response_delay_s=0))
    assert run(car, 1.0, pilot_a=32.0)[-1] == 16.0


def test_below_the_minimum_current_the_car_pauses() -> None:
    car = make(CarSpec(max_current_a=16, response_delay_s=0))
    assert run(car, 1.0, pilot_a=5.0)[-1] == 0.0
    assert run(car, 2.0, pilot_a=6.0)[-1] == 6.0


def test_taper_above_80_percent_and_stop_at_target() -> None:
    car = Car(
        CarSpec(max_current_a=32, phases=1, battery_kwh=10, response_delay_s=0),
        soc=0.79,
        target_soc=0.95,
        power_per_amp_w=230.0,
    )
    currents = run(car, 4 * 3600.0, dt_s=5.0, pilot_a=32.0)
    assert currents[0] == 32.0
    tapering = [c for c in currents if 0 < c < 32]
    assert tapering
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(tapering))
    assert currents[-1] == 0.0
    assert not car.wants_energy
    assert car.soc >= 0.95


def test_faulty_car_ignores_the_setpoint_but_not_a_pause() -> None:
    car = make(CarSpec(max_current_a=32, ignores_setpoint=True, response_delay_s=0))
    assert run(car, 1.0, pilot_a=10.0)[-1] == 32.0
    assert run(car, 2.0, pilot_a=0.0)[-1] == 0.0


def test_energy_wanted_is_grid_side() -> None:
    car = Car(CarSpec(battery_kwh=50, charge_efficiency=0.9), soc=0.5, target_soc=0.8, power_per_amp_w=230)
    assert car.energy_wanted_wh == pytest.approx(15_000 / 0.9)


@pytest.mark.parametrize(
    "kwargs",
    [{"battery_kwh": 0}, {"phases": 4}, {"min_current_a": 40}, {"draw_ratio": 1.2}, {"response_delay_s": -1}],
)
def test_bad_specs_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CarSpec(**kwargs)  # type: ignore[arg-type]


def test_a_cut_supply_stops_the_current_at_once_and_a_new_pilot_restarts_after_the_delay() -> None:
    car = make(CarSpec(max_current_a=16, phases=1, response_delay_s=3.0))
    run(car, 10.0, pilot_a=16.0)
    assert car.current_a == 16.0
    taken = car.energy_wh
    car.cut_supply()
    car.advance(12.0)
    assert car.current_a == 0.0
    assert car.energy_wh == taken
    car.set_pilot(16.0, 20.0)
    car.advance(22.9)
    assert car.current_a == 0.0
    car.advance(23.0)
    assert car.current_a == 16.0
