"""Base-load profiles and arrivals: shapes, and determinism for a seed."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.arrivals import ArrivalProcess, generate_arrivals
from simulator.baseload import BaseLoadProfile, BaseLoadSpec, evening_shape


def test_arrivals_are_deterministic_for_a_seed() -> None:
    a = generate_arrivals(ArrivalProcess(rate_per_h=(6.0,)), 24 * 3600, seed=7)
    b = generate_arrivals(ArrivalProcess(rate_per_h=(6.0,)), 24 * 3600, seed=7)
    c = generate_arrivals(ArrivalProcess(rate_per_h=(6.0,)), 24 * 3600, seed=8)
    assert a == b
    assert a != c


def test_arrival_count_matches_the_rate() -> None:
    counts = [
        len(generate_arrivals(ArrivalProcess(rate_per_h=(10.0,)), 10 * 3600, seed=s)) for s in range(40)
    ]
    assert np.mean(counts) == pytest.approx(100, rel=0.1)


def test_hourly_rates_thin_the_process() -> None:
    rates = tuple(20.0 if 17 <= h < 19 else 0.0 for h in range(24))
    arrivals = generate_arrivals(ArrivalProcess(rate_per_h=rates), 24 * 3600, seed=1)
    assert arrivals
    assert all(17 * 3600 <= a.arrival_s < 19 * 3600 for a in arrivals)


def test_arrivals_have_tags_deadlines_and_unfinished_batteries() -> None:
    process = ArrivalProcess(rate_per_h=(5.0,), tags=("AA", "BB"))
    for a in generate_arrivals(process, 12 * 3600, seed=3):
        assert a.id_tag in ("AA", "BB")
        assert a.departure_s - a.arrival_s >= process.min_dwell_s
        assert a.soc < a.target_soc


def test_evening_peak_shape() -> None:
    assert evening_shape(18.5 * 3600) == pytest.approx(1.0)
    assert evening_shape(3 * 3600) < 0.35
    assert evening_shape(7.5 * 3600) > 0.5


def test_lift_steps_with_inrush_and_is_deterministic() -> None:
    spec = BaseLoadSpec("lift", "main", kind="lift", amps=(0, 20, 0), noise_fraction=0.0, starts_per_h=30)
    p1, p2 = BaseLoadProfile(spec, 3600, seed=5), BaseLoadProfile(spec, 3600, seed=5)
    series = np.array([p1.currents_a(t, 0.0)[1] for t in np.arange(0, 3600, 0.5)])
    assert np.array_equal(series, [p2.currents_a(t, 0.0)[1] for t in np.arange(0, 3600, 0.5)])
    assert set(np.round(np.unique(series), 6)) == {1.0, 20.0, 50.0}


def test_ventilation_duty_cycle() -> None:
    spec = BaseLoadSpec("vent", "main", kind="ventilation", amps=(8, 8, 8), noise_fraction=0.0, duty=0.25)
    p = BaseLoadProfile(spec, 7200, seed=1)
    on = np.mean([p.currents_a(t, 0.0)[0] > 0 for t in np.arange(0, 7200, 1.0)])
    assert on == pytest.approx(0.25, abs=0.01)


def test_noise_is_bounded_and_seeded() -> None:
    spec = BaseLoadSpec("b", "main", amps=(10, 10, 10), noise_fraction=0.1)
    a = BaseLoadProfile(spec, 3600, seed=1)
    b = BaseLoadProfile(spec, 3600, seed=2)
    va = np.array([a.currents_a(t, 0) for t in range(0, 3600, 30)])
    assert np.all((va >= 9.0) & (va <= 11.0))
    assert not np.array_equal(va, [b.currents_a(t, 0) for t in range(0, 3600, 30)])


def test_negative_amps_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        BaseLoadSpec("x", "main", amps=(-1, 0, 0))


def test_a_step_switches_on_at_its_time_and_off_after_its_duration() -> None:
    spec = BaseLoadSpec("sauna", "main", kind="step", amps=(40, 0, 0), noise_fraction=0.0, at_s=300)
    endless = BaseLoadProfile(spec, 3600, seed=1)
    assert endless.currents_a(299.9, 0.0)[0] == 0.0
    assert list(endless.currents_a(300.0, 0.0)) == [40.0, 0.0, 0.0]
    assert endless.currents_a(3599.0, 0.0)[0] == 40.0
    brief = BaseLoadProfile(BaseLoadSpec("s", "main", kind="step", at_s=10, duration_s=5), 60, seed=1)
    assert [bool(brief.currents_a(t, 0.0)[0]) for t in (9.9, 10.0, 14.9, 15.0)] == [False, True, True, False]
    with pytest.raises(ValueError, match="duration_s"):
        BaseLoadSpec("s", "main", kind="step", duration_s=0)
