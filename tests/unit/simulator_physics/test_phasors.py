"""Line currents on IT and TN against hand-computed cases and DESIGN.md's closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.physics import (
    balanced_three_phase_load,
    branch_load,
    car_load,
    it_line_currents_closed_form,
    line_currents_a,
    line_load,
    power_per_amp_w,
    star_voltage_v,
)

SQRT3 = math.sqrt(3.0)


def currents(*loads: tuple[np.ndarray, float]) -> list[float]:
    coeffs = np.array([c for c, _ in loads])
    amps = np.array([a for _, a in loads])
    return [float(x) for x in line_currents_a(coeffs, amps)]


def test_it_three_phase_car_at_16_a_puts_16_a_on_each_line() -> None:
    assert currents((car_load("IT", ["L2", "L3", "L1"], 3), 16.0)) == pytest.approx([16.0, 16.0, 16.0])


def test_it_three_phase_car_is_three_branches_of_i_over_root_three() -> None:
    b = 16.0 / SQRT3
    as_branches = currents(
        (branch_load("L1", "L2"), b), (branch_load("L2", "L3"), b), (branch_load("L3", "L1"), b)
    )
    assert as_branches == pytest.approx([16.0, 16.0, 16.0])


def test_it_single_phase_car_loads_both_lines_of_its_pair() -> None:
    assert currents((car_load("IT", ["L2", "L3"], 1), 32.0)) == pytest.approx([0.0, 32.0, 32.0])


def test_it_two_single_phase_cars_on_l1_l2_and_l2_l3_add_as_phasors() -> None:
    # By hand: I_L2 = |16 e_12 (returning) + 16 e_23 (leaving)| = sqrt(16^2 + 16^2 + 16*16) = 16 sqrt(3).
    got = currents((branch_load("L1", "L2"), 16.0), (branch_load("L2", "L3"), 16.0))
    assert got == pytest.approx([16.0, 16.0 * SQRT3, 16.0])
    # Less than the naive sum of 32 A on L2: the capacity the naive model throws away.
    assert got[1] < 32.0


def test_it_unequal_branches_by_hand() -> None:
    # b12 = 10, b31 = 6: I_L1 = sqrt(100 + 36 + 60) = 14.0
    got = currents((branch_load("L1", "L2"), 10.0), (branch_load("L3", "L1"), 6.0))
    assert got == pytest.approx([14.0, 10.0, 6.0])


def test_tn_unbalanced_loads_are_plain_sums_per_line() -> None:
    got = currents(
        (line_load("L1"), 10.0),
        (line_load("L1"), 6.0),
        (car_load("TN", ["L2", "L3", "L1"], 3), 16.0),
        (car_load("TN", ["L3"], 1), 32.0),
    )
    assert got == pytest.approx([32.0, 16.0, 48.0])


def test_tn_two_phase_car_uses_the_first_two_terminals() -> None:
    assert currents((car_load("TN", ["L3", "L1", "L2"], 2), 10.0)) == pytest.approx([10.0, 0.0, 10.0])


def test_power_per_amp() -> None:
    it_star = star_voltage_v("IT", 230.0)
    assert power_per_amp_w(car_load("IT", ["L1", "L2"], 1), it_star) == pytest.approx(230.0)
    assert power_per_amp_w(car_load("IT", ["L1", "L2", "L3"], 3), it_star) == pytest.approx(SQRT3 * 230.0)
    assert power_per_amp_w(car_load("TN", ["L1", "L2", "L3"], 3), 230.0) == pytest.approx(690.0)
    assert power_per_amp_w(line_load("L2", power_factor=0.8), 230.0) == pytest.approx(0.8 * 230.0)


def test_lagging_load_adds_in_magnitude_only_when_in_phase() -> None:
    # A resistive and an inductive (pf 0) ... here pf 0.6: |10 + 10 e^{-j53.13deg}| = sqrt((10+6)^2 + 8^2)
    got = currents((line_load("L1"), 10.0), (line_load("L1", power_factor=0.6), 10.0))
    assert got[0] == pytest.approx(math.hypot(16.0, 8.0))


@pytest.mark.parametrize(
    ("grid", "lines", "phases"),
    [
        ("IT", ["L1"], 1),
        ("IT", ["L1", "L2"], 3),
        ("TN", ["L1"], 3),
        ("TN", ["L1", "L1"], 1),
        ("IT", ["L1", "L2", "L3"], 4),
    ],
)
def test_impossible_wiring_is_refused(grid: str, lines: list[str], phases: int) -> None:
    with pytest.raises(ValueError):
        car_load(grid, lines, phases)  # type: ignore[arg-type]


def test_balanced_load_needs_three_lines() -> None:
    with pytest.raises(ValueError, match="three different lines"):
        balanced_three_phase_load(["L1", "L2", "L2"])


amps = st.floats(min_value=0.0, max_value=400.0, allow_nan=False)


@given(b12=amps, b23=amps, b31=amps)
def test_closed_form_agrees_with_phasor_sum(b12: float, b23: float, b31: float) -> None:
    phasor = currents(
        (branch_load("L1", "L2"), b12), (branch_load("L2", "L3"), b23), (branch_load("L3", "L1"), b31)
    )
    closed = it_line_currents_closed_form(b12, b23, b31)
    assert phasor == pytest.approx(list(closed), abs=1e-9, rel=1e-9)


@given(
    cars=st.lists(
        st.tuples(
            st.sampled_from([("L1", "L2"), ("L2", "L3"), ("L3", "L1"), ("L2", "L1"), ("L1", "L2", "L3")]),
            amps,
        ),
        max_size=12,
    )
)
def test_mixed_it_cars_agree_with_closed_form_on_branch_sums(
    cars: list[tuple[tuple[str, ...], float]],
) -> None:
    # Fold every car into branch sums the way DESIGN.md does, then compare with the phasor model.
    b = {"12": 0.0, "23": 0.0, "31": 0.0}
    for lines, a in cars:
        if len(lines) == 3:
            for k in b:
                b[k] += a / SQRT3
        else:
            key = "".join(sorted(x[1] for x in lines))
            b[{"12": "12", "23": "23", "13": "31"}[key]] += a
    loads = [(car_load("IT", list(lines), 3 if len(lines) == 3 else 1), a) for lines, a in cars]
    got = currents(*loads) if loads else [0.0, 0.0, 0.0]
    assert got == pytest.approx(list(it_line_currents_closed_form(b["12"], b["23"], b["31"])), abs=1e-7)
