"""The fail-safe budget (DESIGN §5): safe currents on every wired line plus worst-case base load."""

from __future__ import annotations

import math

import pytest

from controller.allocation import check_failsafe_budget
from controller.allocation.model import Charger, Fuse, Grid, Policy, SiteSnapshot
from drivers.contracts import Line
from tests.unit.allocation.reference import NOW

THREE: tuple[Line, ...] = ("L1", "L2", "L3")


def _site(grid: str, fuses: tuple[Fuse, ...], chargers: tuple[Charger, ...]) -> SiteSnapshot:
    return SiteSnapshot(
        now=NOW,
        grid=Grid(type="IT" if grid == "IT" else "TN"),
        fuses=fuses,
        chargers=chargers,
        policy=Policy(safety_margin_a=2.0),
    )


def test_tn_budget_fits_and_names_the_lines_that_do_not() -> None:
    chargers = (
        *(Charger(f"cp{i}", "c1", THREE, 32.0) for i in range(5)),
        Charger("single", "main", ("L1",), 32.0, safe_current_a=10.0),
    )
    snapshot = _site("TN", (Fuse("main", 63.0, base_load_a=15.0), Fuse("c1", 32.0, parent="main")), chargers)
    check = check_failsafe_budget(snapshot)
    # main: 15 base + 5 x 6 A + 10 A on L1 = 55 <= 61; c1: 30 <= 30.
    assert check.fits
    assert check.fuses["main"].predicted_a == pytest.approx((55.0, 45.0, 45.0))
    assert check.fuses["c1"].predicted_a == pytest.approx((30.0, 30.0, 30.0))

    worse = check_failsafe_budget(snapshot, {"main": (20.0, 30.0, 10.0)})
    # L1: 20 + 30 + 10 = 60 fits; L2: 30 + 30 = 60 fits; raise L2 further and it does not.
    assert worse.fits
    worst = check_failsafe_budget(snapshot, {"main": (20.0, 32.0, 10.0)})
    assert not worst.fits
    assert worst.overloaded == ("fuse:main:L2",)


def test_it_budget_uses_phasor_sums_on_every_wired_line() -> None:
    pairs: list[tuple[Line, ...]] = [("L1", "L2"), ("L2", "L3"), ("L3", "L1")]
    chargers = tuple(Charger(f"cp{i}", "main", pairs[i % 3], 32.0, safe_current_a=8.0) for i in range(6))
    snapshot = _site("IT", (Fuse("main", 30.0),), chargers)
    check = check_failsafe_budget(snapshot)
    # Two cars per pair: 16 A on every branch, sqrt(3) * 16 = 27.7 A per line <= 28.
    assert check.fuses["main"].predicted_a == pytest.approx((16 * math.sqrt(3),) * 3)
    assert check.fits
    with pytest.raises(KeyError):
        check_failsafe_budget(snapshot, {"nope": (1.0, 1.0, 1.0)})


def test_it_budget_counts_a_three_line_charger_in_full_on_every_line() -> None:
    # It may carry a single-phase car on any pair (8 A on two lines) or a three-phase car (8 A on all
    # three); 8 A on every line on top of the pair chargers bounds both.
    pairs: list[tuple[Line, ...]] = [("L1", "L2"), ("L2", "L3"), ("L3", "L1")]
    chargers = (
        *(Charger(f"cp{i}", "main", pairs[i], 32.0, safe_current_a=8.0) for i in range(3)),
        Charger("three", "main", THREE, 32.0, safe_current_a=8.0),
    )
    check = check_failsafe_budget(_site("IT", (Fuse("main", 40.0),), chargers))
    assert check.fuses["main"].predicted_a == pytest.approx((8 * math.sqrt(3) + 8,) * 3)
