"""Trip curves: the conventional points of IEC 60898 (MCB) and IEC 60269 (gG) hold in the model."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.physics import TripAccumulator, TripCurve, gg_fuse, mcb


def run_constant(curve: TripCurve, multiple: float, seconds: float, dt_s: float = 0.5) -> float | None:
    """Seconds until trip at a constant multiple of In from cold, None if it held."""
    acc = TripAccumulator([curve])
    currents = np.array([[multiple * curve.rated_a, 0.0, 0.0]])
    for n in range(1, round(seconds / dt_s) + 1):
        if acc.step(currents, dt_s)[0]:
            return round(n * dt_s, 9)
    return None


@pytest.mark.parametrize("characteristic", ["B", "C"])
def test_mcb_holds_1_13_in_for_an_hour(characteristic: str) -> None:
    assert run_constant(mcb(16, characteristic), 1.13, 3600.0, dt_s=1.0) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("rated", [6, 16, 32, 63])
def test_mcb_trips_at_1_45_in_within_an_hour(rated: float) -> None:
    t = run_constant(mcb(rated, "C"), 1.45, 3700.0, dt_s=1.0)
    assert t is not None
    assert t <= 3600.0


def test_mcb_trips_at_1_45_in_within_an_hour_after_an_hour_at_1_13() -> None:
    curve = mcb(16, "B")
    acc = TripAccumulator([curve])
    warm = np.array([[1.13 * 16, 1.13 * 16, 1.13 * 16]])
    for _ in range(3600):
        assert not acc.step(warm, 1.0)[0]
    hot = warm * (1.45 / 1.13)
    tripped_at = next((s for s in range(1, 3601) if acc.step(hot, 1.0)[0]), None)
    assert tripped_at is not None


def test_mcb_at_2_55_in_trips_between_1_s_and_60_s() -> None:
    t = run_constant(mcb(16, "B"), 2.55, 120.0, dt_s=0.1)
    assert t is not None
    assert 1.0 < t <= 60.0


@pytest.mark.parametrize(("characteristic", "multiple"), [("B", 3.0), ("B", 5.0), ("C", 5.0), ("C", 10.0)])
def test_mcb_magnetic_release_is_instantaneous(characteristic: str, multiple: float) -> None:
    assert run_constant(mcb(16, characteristic), multiple, 1.0, dt_s=0.1) == pytest.approx(0.1)  # type: ignore[arg-type]


def test_mcb_c_does_not_trip_instantly_at_4_in() -> None:
    t = run_constant(mcb(16, "C"), 4.0, 120.0, dt_s=0.1)
    assert t is not None
    assert t > 1.0


@pytest.mark.parametrize(
    ("rated", "conv_s"), [(16, 3600), (63, 3600), (100, 7200), (250, 10800), (630, 14400)]
)
def test_gg_conventional_points(rated: float, conv_s: float) -> None:
    fuse = gg_fuse(rated)
    assert run_constant(fuse, 1.25, conv_s, dt_s=10.0) is None
    t = run_constant(fuse, 1.6, conv_s + 100.0, dt_s=1.0)
    assert t is not None
    assert t <= conv_s


@pytest.mark.parametrize(
    ("rated", "imin_10s", "imax_5s", "imin_01s", "imax_01s"),
    [(16, 33, 65, 85, 150), (63, 160, 320, 450, 820), (125, 355, 715, 1100, 1910)],
)
def test_gg_curve_passes_between_the_gates(
    rated: float, imin_10s: float, imax_5s: float, imin_01s: float, imax_01s: float
) -> None:
    fuse = gg_fuse(rated)
    t = fuse.time_to_trip_s(np.array([imin_10s, imax_5s, imin_01s, imax_01s]) / rated)
    assert t[0] > 10.0  # must not melt within 10 s at Imin(10 s)
    assert t[1] <= 5.0 + 1e-9  # must have melted by 5 s at Imax(5 s)
    assert t[2] > 0.1
    assert t[3] <= 0.1 + 1e-9


def test_small_gg_fuse_uses_the_higher_conventional_multiples() -> None:
    fuse = gg_fuse(10)
    assert fuse.non_trip_multiple == 1.5
    assert run_constant(fuse, 1.5, 3600.0, dt_s=10.0) is None


def test_curve_is_monotonic_and_never_trips_at_rated_current() -> None:
    for curve in (gg_fuse(35), gg_fuse(200), mcb(20, "B"), mcb(80, "C")):
        k = np.linspace(0.5, 30.0, 500)
        t = curve.time_to_trip_s(k)
        assert np.all(np.diff(t[np.isfinite(t)]) <= 1e-9)
        assert np.isinf(curve.time_to_trip_s(np.array([1.0]))[0])


def test_damage_cools_down_below_the_non_trip_current() -> None:
    curve = mcb(16, "B")
    acc = TripAccumulator([curve])
    hot = np.array([[2.0 * 16, 0, 0]])
    for _ in range(30):
        acc.step(hot, 1.0)
    peak = acc.damage[0, 0]
    assert 0 < peak < 1
    for _ in range(900):
        acc.step(np.zeros((1, 3)), 1.0)
    assert acc.damage[0, 0] == pytest.approx(peak / np.e, rel=1e-6)


def test_interrupted_overload_trips_sooner_than_from_cold() -> None:
    # A preheated breaker trips in less than the cold time: the memory errs toward tripping.
    curve = mcb(16, "B")
    cold = run_constant(curve, 2.0, 600.0, dt_s=1.0)
    acc = TripAccumulator([curve])
    over = np.array([[32.0, 0, 0]])
    for _ in range(int(cold or 0) // 2):
        acc.step(over, 1.0)
    for _ in range(10):
        acc.step(np.zeros((1, 3)), 1.0)
    again = next(s for s in range(1, 600) if acc.step(over, 1.0)[0])
    assert cold is not None
    assert again < cold


def test_invalid_curve_is_refused() -> None:
    with pytest.raises(ValueError, match="rise in current"):
        TripCurve("bad", 16, 1.13, 1.45, 3600, points=((1.2, 60.0),))
