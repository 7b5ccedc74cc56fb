"""Line currents as complex phasors on IT (230 V, three wires) and TN (400/230 V) grids.

Every load is described by a complex coefficient per grid line: the phasor current that one ampere of
the load's own current puts on that line. Line currents under a fuse are then the magnitude of the
sum of all coefficient vectors scaled by the loads' currents. That single rule covers:

- TN: a load on line x draws in phase with x's star voltage, so loads on one line add as plain sums;
- IT: a single-phase load between lines x and y is a branch current in phase with the line-to-line
  voltage V_x - V_y: it leaves through x and returns through y;
- IT: a three-phase car drawing line current I on each line (a balanced delta, branch I/sqrt(3)).

A power factor below 1 rotates the coefficient by -acos(pf) (lagging, inductive loads such as a lift
motor). The closed form in DESIGN.md section 3 is the unity-power-factor special case and is kept
here as a separate function so tests can hold the two against each other.
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

Grid = Literal["IT", "TN"]
Line = Literal["L1", "L2", "L3"]
LINES: tuple[Line, Line, Line] = ("L1", "L2", "L3")
LINE_INDEX: dict[str, int] = {"L1": 0, "L2": 1, "L3": 2}

ComplexArray = npt.NDArray[np.complex128]
FloatArray = npt.NDArray[np.float64]

SQRT3 = math.sqrt(3.0)

# Unit star-voltage phasors, positive sequence: L1 at 0 degrees, L2 at -120, L3 at +120.
STAR_UNIT: ComplexArray = np.array(
    [1.0 + 0.0j, cmath.rect(1.0, -2 * math.pi / 3), cmath.rect(1.0, 2 * math.pi / 3)], dtype=np.complex128
)


def line_index(line: str) -> int:
    try:
        return LINE_INDEX[line]
    except KeyError:
        raise ValueError(f"unknown line {line!r}; expected one of L1, L2, L3") from None


def star_voltage_v(grid: Grid, nominal_voltage_v: float) -> float:
    """Magnitude of the (possibly virtual) star voltage: IT nominal voltages are line-to-line."""
    return nominal_voltage_v / SQRT3 if grid == "IT" else nominal_voltage_v


def line_to_line_voltage_v(grid: Grid, nominal_voltage_v: float) -> float:
    return nominal_voltage_v if grid == "IT" else nominal_voltage_v * SQRT3


def branch_unit(x: int, y: int) -> complex:
    """Unit phasor of the line-to-line voltage V_x - V_y."""
    return complex((STAR_UNIT[x] - STAR_UNIT[y]) / SQRT3)


def _rotation(power_factor: float) -> complex:
    if not 0.0 < power_factor <= 1.0:
        raise ValueError(f"power factor must be in (0, 1], got {power_factor}")
    return cmath.rect(1.0, -math.acos(power_factor))


def line_load(line: str, power_factor: float = 1.0) -> ComplexArray:
    """TN: one ampere on `line`, returning through the neutral."""
    coeff = np.zeros(3, dtype=np.complex128)
    idx = line_index(line)
    coeff[idx] = STAR_UNIT[idx] * _rotation(power_factor)
    return coeff


def branch_load(x_line: str, y_line: str, power_factor: float = 1.0) -> ComplexArray:
    """IT: one ampere of branch current between two lines (out through x, back through y)."""
    x, y = line_index(x_line), line_index(y_line)
    if x == y:
        raise ValueError(f"a branch needs two different lines, got {x_line} twice")
    unit = branch_unit(x, y) * _rotation(power_factor)
    coeff = np.zeros(3, dtype=np.complex128)
    coeff[x] += unit
    coeff[y] -= unit
    return coeff


def balanced_three_phase_load(lines: Sequence[str], power_factor: float = 1.0) -> ComplexArray:
    """One ampere of line current on each of three lines (IT delta or TN star: the same line phasors)."""
    idx = [line_index(line) for line in lines]
    if len(idx) != 3 or len(set(idx)) != 3:
        raise ValueError(f"a three-phase load needs three different lines, got {list(lines)}")
    coeff = np.zeros(3, dtype=np.complex128)
    rot = _rotation(power_factor)
    for i in idx:
        coeff[i] = STAR_UNIT[i] * rot
    return coeff


def car_load(grid: Grid, terminal_lines: Sequence[str], phases: int) -> ComplexArray:
    """Coefficients of a car charging with `phases` phases on a charger wired to `terminal_lines`.

    The car uses the charger's terminals in order. TN: one ampere on each of the first `phases`
    terminals. IT: one phase is a branch between terminals 1 and 2; three phases are a balanced
    three-phase load; two phases are two branches, terminal 1-3 and terminal 2-3 (the car's neutral
    conductor lands on the third wire, as on a three-wire charger that maps N to a line).
    """
    lines = list(terminal_lines)
    if len({line_index(line) for line in lines}) != len(lines):
        raise ValueError(f"charger terminals wired to the same line twice: {lines}")
    if phases not in (1, 2, 3):
        raise ValueError(f"a car charges on 1, 2 or 3 phases, got {phases}")
    if grid == "TN":
        if phases > len(lines):
            raise ValueError(f"{phases}-phase car on a charger wired to {len(lines)} line(s)")
        coeff = np.zeros(3, dtype=np.complex128)
        for line in lines[:phases]:
            coeff += line_load(line)
        return coeff
    if len(lines) < 2:
        raise ValueError(f"an IT charger needs at least two wired lines, got {lines}")
    if phases == 1:
        return branch_load(lines[0], lines[1])
    if len(lines) < 3:
        raise ValueError(f"{phases}-phase car on an IT charger wired to two lines {lines}")
    if phases == 2:
        return (branch_load(lines[0], lines[2]) + branch_load(lines[1], lines[2])).astype(np.complex128)
    return balanced_three_phase_load(lines)


def line_currents_a(coefficients: ComplexArray, currents_a: FloatArray) -> FloatArray:
    """Line current magnitudes of loads (rows of `coefficients`) drawing `currents_a` each."""
    phasors: ComplexArray = currents_a @ coefficients
    magnitudes: FloatArray = np.abs(phasors)
    return magnitudes


def complex_power_va(phasors_a: ComplexArray, star_v: float) -> complex:
    """S = sum over lines of V_star * conj(I): P is the real part, Q the imaginary (lagging positive)."""
    return complex(np.sum(star_v * STAR_UNIT * np.conj(phasors_a)))


def power_per_amp_w(coefficients: ComplexArray, star_v: float) -> float:
    """Active power one ampere of this load draws (IT 1-phase: V_LL; IT 3-phase: sqrt(3) V_LL)."""
    return complex_power_va(coefficients, star_v).real


def it_line_currents_closed_form(b12: float, b23: float, b31: float) -> tuple[float, float, float]:
    """DESIGN.md section 3: line currents from branch sums at unity power factor on IT."""
    return (
        math.sqrt(b12 * b12 + b31 * b31 + b12 * b31),
        math.sqrt(b12 * b12 + b23 * b23 + b12 * b23),
        math.sqrt(b23 * b23 + b31 * b31 + b23 * b31),
    )
