"""The electrical model: phasor line currents, base load from meters and configuration, fail-safe
triggers. Expected values come from complex arithmetic or are worked out in the comments."""

from __future__ import annotations

import cmath
import math
from dataclasses import replace

import numpy as np
import pytest

from controller.allocation import allocate, predict_fuse_currents
from controller.allocation.compiled import compile_site
from controller.allocation.electrical import base_load, line_currents
from controller.allocation.model import Charger, Drive, Fuse, Grid, Meter, Policy, SiteSnapshot, Vehicle
from drivers.contracts import Line
from tests.unit.allocation.reference import NOW

THREE: tuple[Line, ...] = ("L1", "L2", "L3")


def test_phasor_line_currents_match_complex_branch_sums() -> None:
    rng = np.random.default_rng(7)
    branches = rng.uniform(0, 100, size=(500, 3))
    lines = line_currents(branches, phasor=True)
    for (b12, b23, b31), got in zip(branches, lines, strict=True):
        i12, i23, i31 = (cmath.rect(a, math.radians(d)) for a, d in ((b12, 30), (b23, -90), (b31, 150)))
        assert got == pytest.approx([abs(i12 - i31), abs(i23 - i12), abs(i31 - i23)])


def test_balanced_branches_give_sqrt3_times_the_branch_current() -> None:
    assert line_currents(np.array([[10.0, 10.0, 10.0]]), phasor=True)[0] == pytest.approx(
        [10 * math.sqrt(3)] * 3
    )
    assert line_currents(np.array([[10.0, 0.0, 0.0]]), phasor=True)[0] == pytest.approx([10.0, 10.0, 0.0])


def _site(grid: str, fuses: tuple[Fuse, ...], meters: tuple[Meter, ...], *chargers: Charger) -> SiteSnapshot:
    return SiteSnapshot(
        now=NOW,
        grid=Grid(type="IT" if grid == "IT" else "TN"),
        fuses=fuses,
        meters=meters,
        chargers=chargers,
        policy=Policy(increase_step_a=None),
    )


def test_unmetered_fuses_carry_their_own_and_their_childrens_base() -> None:
    fuses = (
        Fuse("main", 200.0, base_load_a=5.0),
        Fuse("b1", 100.0, parent="main", base_load_a=3.0),
        Fuse("b2", 100.0, parent="main"),
        Fuse("c1", 32.0, parent="b1", base_load_a=2.0),
    )
    meters = (Meter("b2", (10.0, 20.0, 30.0), age_s=1.0),)
    snapshot = _site("TN", fuses, meters)
    base = base_load(compile_site(snapshot), snapshot.meters)
    assert base.failsafe is None
    by_fuse = dict(zip([f.id for f in fuses], base.line_a.tolist(), strict=True))
    assert by_fuse["c1"] == [2.0, 2.0, 2.0]
    assert by_fuse["b1"] == [5.0, 5.0, 5.0]  # 3 own + 2 from c1
    assert by_fuse["b2"] == [10.0, 20.0, 30.0]  # measured
    assert by_fuse["main"] == [20.0, 30.0, 40.0]  # 5 own + 5 from b1 + b2's measured base


def test_it_ev_estimate_errs_low_so_the_base_errs_high() -> None:
    # A charger wired to three lines, car's lines unknown, drawing 16/16/0: that is a single-phase car
    # on L1-L2, or something else; counted as a three-phase car at the smallest reading, 0 A.
    car = Charger("a", "main", THREE, 32.0, setpoint_a=16.0, vehicle=Vehicle(drawing_a=(16.0, 16.0, 0.0)))
    snapshot = _site("IT", (Fuse("main", 100.0),), (Meter("main", (40.0, 40.0, 20.0), age_s=1.0),), car)
    base = base_load(compile_site(snapshot), snapshot.meters)
    assert base.line_a[0].tolist() == [40.0, 40.0, 20.0]


def test_tn_base_subtracts_what_the_chargers_measure_and_never_goes_below_zero() -> None:
    car = Charger("a", "main", THREE, 32.0, setpoint_a=16.0, vehicle=Vehicle(drawing_a=(16.0, 10.0, 16.0)))
    offline = replace(car, id="b", drive=Drive.OFFLINE)
    snapshot = _site(
        "TN", (Fuse("main", 100.0),), (Meter("main", (40.0, 8.0, 20.0), age_s=1.0),), car, offline
    )
    base = base_load(compile_site(snapshot), snapshot.meters)
    # The offline charger's last reading is not trusted: only a's current is subtracted.
    assert base.line_a[0].tolist() == [24.0, 0.0, 4.0]


@pytest.mark.parametrize(
    ("grid", "currents", "age_s", "reason"),
    [
        ("TN", (10.0, None, 10.0), 1.0, "does not report L2"),
        ("IT", (10.0, None, None), 1.0, "does not report L2, L3"),
        ("IT", (0.0, 0.0, 12.0), 1.0, "does not report L1, L2"),
        ("TN", (10.0, 10.0, 10.0), 31.0, "stale"),
        ("IT", (10.0, 10.0, 10.0), None, "has not been read"),
    ],
)
def test_an_unusable_meter_puts_every_charger_on_its_safe_current(
    grid: str, currents: tuple[float | None, float | None, float | None], age_s: float | None, reason: str
) -> None:
    chargers = (
        Charger("a", "main", THREE, 32.0, setpoint_a=20.0, vehicle=Vehicle()),
        Charger("b", "main", THREE, 32.0, safe_current_a=0.0, vehicle=Vehicle()),
        Charger("c", "main", THREE, 16.0, drive=Drive.OFFLINE),
    )
    snapshot = _site(grid, (Fuse("main", 100.0),), (Meter("main", currents, age_s=age_s),), *chargers)
    allocation = allocate(snapshot)
    assert allocation.failsafe is not None
    assert reason in allocation.failsafe
    assert [(d.current_a, d.state, d.limited_by) for d in allocation.chargers.values()] == [
        (6.0, "charging", "failsafe"),
        (0.0, "paused", "failsafe"),
        (0.0, "idle", "offline"),
    ]


def test_a_fresh_meter_at_the_stale_limit_is_still_used() -> None:
    snapshot = _site(
        "TN",
        (Fuse("main", 40.0),),
        (Meter("main", (10.0, 10.0, 10.0), age_s=30.0),),
        Charger("a", "main", THREE, 32.0, vehicle=Vehicle()),
    )
    allocation = allocate(snapshot)
    assert allocation.failsafe is None
    assert allocation.chargers["a"].current_a == pytest.approx(28.0)  # 40 - 2 - 10


def test_predicted_currents_for_given_setpoints() -> None:
    fuses = (Fuse("main", 63.0), Fuse("c1", 32.0, parent="main"))
    chargers = (
        Charger("pair", "c1", ("L1", "L2"), 32.0, setpoint_a=10.0, vehicle=Vehicle()),
        Charger("three", "c1", THREE, 32.0, setpoint_a=5.0, vehicle=Vehicle()),
        Charger("off", "main", ("L2", "L3"), 16.0, drive=Drive.OFFLINE),
    )
    snapshot = _site("IT", fuses, (Meter("main", (5.0, 6.0, 7.0), age_s=1.0),), *chargers)
    predicted = predict_fuse_currents(snapshot, {"pair": 12.0})
    # c1: b12 = 12 + 5/sqrt3, b23 = b31 = 5/sqrt3 (the three-phase car keeps its setpoint of 5 A).
    x = 5 / math.sqrt(3)
    b12, b23, b31 = 12 + x, x, x
    c1 = [
        math.sqrt(b12**2 + b31**2 + b12 * b31),
        math.sqrt(b12**2 + b23**2 + b12 * b23),
        math.sqrt(b23**2 + b31**2 + b23 * b31),
    ]
    assert predicted["c1"] == pytest.approx(c1)
    # main adds the offline charger at 16 A on L2-L3 and the measured base (nothing measured as drawn).
    b23 += 16
    main = [
        5 + math.sqrt(b12**2 + b31**2 + b12 * b31),
        6 + math.sqrt(b12**2 + b23**2 + b12 * b23),
        7 + math.sqrt(b23**2 + b31**2 + b23 * b31),
    ]
    assert predicted["main"] == pytest.approx(main)
    with pytest.raises(KeyError):
        predict_fuse_currents(snapshot, {"nope": 1.0})


def test_a_site_without_chargers_is_allocated() -> None:
    allocation = allocate(_site("IT", (Fuse("main", 63.0),), (Meter("main", (10.0, None, 12.0), age_s=1.0),)))
    assert allocation.chargers == {}
    assert allocation.fuses["main"].predicted_a == pytest.approx((10.0, 22.0, 12.0))


def test_allocate_checks_snapshots_built_in_code_too() -> None:
    from controller.allocation import SnapshotError

    bad = _site("TN", (Fuse("main", 63.0),), (), Charger("a", "nowhere", THREE, 32.0))
    with pytest.raises(SnapshotError, match=r"chargers\[0\]\.fuse: unknown fuse 'nowhere'"):
        allocate(bad)
