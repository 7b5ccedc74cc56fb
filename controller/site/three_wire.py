"""Line 2's current on a three-wire (Aron) meter, from what the meter itself measures.

A three-wire meter on IT (Aidon 6525/6540, Landis+Gyr E350, some Kamstrup firmware) has two
elements: I1 against U12 and I3 against U32. It reports |I1|, |I3|, the line-to-line voltages and the
total active and reactive power, but no IL2 (or IL2 = 0). With S = P + jQ the two elements' complex
powers S1 = U12·conj(I1) and S3 = U32·conj(I3) satisfy S1 + S3 = S, |S1| = |U12||I1| and
|S3| = |U32||I3|: a triangle with known sides, so S1 is fixed up to its mirror image across S. Each
choice gives the phasors I1, I3 and IL2 = |-(I1 + I3)|. docs/three_wire.md works it through.

- **Which of the two.** A passive load draws each branch current at most `LAG_DEG` behind and
  `LEAD_DEG` ahead of its line-to-line voltage. A candidate whose line currents cannot be split into
  such branch currents is not what the meter saw. When both can, the one that continues the last
  resolved state (moved by the cars' known change since) is taken if it is clearly nearer;
  otherwise the larger.
- **Distortion.** The meter's currents are RMS values with harmonics, its powers are (nearly) the
  fundamental's, so the sinusoidal triangle undershoots: on the real Kaifa and Kamstrup IT frames of
  ../shared (which send the IL2 they compute) by 0.2-1.4 A. The value used is the largest IL2 over
  every split of each RMS current into a fundamental and a harmonic part of at most
  `harmonic_a + harmonic_fraction x I`, the harmonic parts adding on L2 in the worst case.
- **No answer** (None: the caller keeps the Kirchhoff bound IL2 <= IL1 + IL3) when an input is
  missing, there is export (a source below the meter), or the inputs do not form a triangle within
  their rounding.

Pure: no clock, no I/O; the tracking state is the estimator's only memory.
"""

from __future__ import annotations

import cmath
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from drivers.contracts import MeterReading

# Branch currents of a passive load: lagging up to PF 0.34 (a motor at light load), leading up to
# PF 0.97 (LED drivers, filters). Wider leading sectors leave most lists ambiguous.
LAG_DEG = 70.0
LEAD_DEG = 15.0
# A candidate is taken from history only when it is this much nearer than the other (distance ratio).
DECISIVE_RATIO = 0.5
ANCHOR_MAX_AGE_S = 60.0
# Two consecutive lists are paired only this close together, and when the cars changed this much.
PAIR_MAX_AGE_S = 30.0
PAIR_MIN_CHANGE_A = 3.0
# What the meter's rounding and the spread of its sampling may put on each current (amps).
ROUNDING_A = 0.1
# How far the cars' currents as their chargers report them may be from what they draw.
EV_SLACK_A = 2.0
EV_SLACK_FRACTION = 0.1
# Points per axis of the search over fundamental/harmonic splits.
GRID = 17
SQRT3 = math.sqrt(3.0)
# Unit star-voltage phasors (L1 at 0 degrees, positive sequence): the frame of every phasor here.
STAR = (1.0 + 0.0j, cmath.rect(1.0, -2 * math.pi / 3), cmath.rect(1.0, 2 * math.pi / 3))


@dataclass(frozen=True, slots=True)
class Harmonics:
    """How much of each RMS line current may be harmonics: `allowance_a + fraction x I`."""

    allowance_a: float = 1.5
    fraction: float = 0.05

    def bound_a(self, current_a: float) -> float:
        return min(current_a, self.allowance_a + self.fraction * current_a)


@dataclass(frozen=True, slots=True)
class AronInputs:
    """One full list of a three-wire meter: RMS currents, line-to-line voltages, net powers."""

    i1_a: float
    i3_a: float
    p_w: float
    q_var: float
    u12_v: float
    u23_v: float
    u13_v: float | None = None  # Aidon sends it; Landis+Gyr sends 0 (then the supply is taken balanced)

    @classmethod
    def from_reading(cls, reading: MeterReading) -> AronInputs | None:
        """The inputs of a full list that lacks IL2 (absent or sent as 0 next to a live line)."""
        i1, i2, i3 = reading.current_l1_a, reading.current_l2_a, reading.current_l3_a
        p_in, q_in = reading.active_power_import_w, reading.reactive_power_import_var
        u12, u13, u23 = reading.voltage_l1_v, reading.voltage_l2_v, reading.voltage_l3_v
        if i1 is None or i3 is None or p_in is None or q_in is None or not u12 or not u23:
            return None
        if i2 is not None and not (i2 == 0 and max(abs(i1), abs(i3)) > 0):
            return None  # the meter sends IL2 itself
        p_w = p_in - (reading.active_power_export_w or 0.0)
        q_var = q_in - (reading.reactive_power_export_var or 0.0)
        return cls(abs(i1), abs(i3), p_w, q_var, u12, u23, u13 or None)

    def u32_angle(self) -> float:
        """Angle of U32 (radians, U12 at 30 degrees): from the voltage triangle when all three
        line-to-line voltages are known, else that of a balanced supply (90 degrees)."""
        if self.u13_v is None:
            return math.pi / 2
        a, b, c = self.u12_v, self.u23_v, self.u13_v
        cos_alpha = (a * a + b * b - c * c) / (2 * a * b)
        return math.radians(30.0) + math.acos(max(-1.0, min(1.0, cos_alpha)))


@dataclass(frozen=True, slots=True)
class Candidate:
    """One solution of the triangle: the line phasors I1, I3 and |I2| (no distortion)."""

    sign: int  # +1 or -1: which side of S the element-1 power lies on
    i1: complex
    i3: complex

    @property
    def i2_a(self) -> float:
        return abs(self.i1 + self.i3)


@dataclass(frozen=True, slots=True)
class Estimate:
    """IL2 to use, and how it was decided: `resolved` (one candidate fits a passive load),
    `tracked` (history told them apart), `ambiguous` (the larger of the two)."""

    i2_a: float
    how: str
    low_a: float  # the two candidates' IL2 without distortion (for the record)
    high_a: float


def _element_powers(
    i1_a: float, i3_a: float, inputs: AronInputs, sign: int
) -> tuple[complex, complex] | None:
    m1, m3 = inputs.u12_v * i1_a, inputs.u23_v * i3_a
    s = math.hypot(inputs.p_w, inputs.q_var)
    x = (s * s + m1 * m1 - m3 * m3) / (2 * s)
    y2 = m1 * m1 - x * x
    if y2 < 0:
        return None
    rotation = complex(inputs.p_w, inputs.q_var) / s
    s1 = complex(x, sign * math.sqrt(y2)) * rotation
    return s1, complex(inputs.p_w, inputs.q_var) - s1


def candidates(inputs: AronInputs, tolerance_va: float) -> tuple[Candidate, Candidate] | None:
    """Both solutions, or None when the inputs do not form a triangle within `tolerance_va`."""
    m1, m3 = inputs.u12_v * inputs.i1_a, inputs.u23_v * inputs.i3_a
    s = math.hypot(inputs.p_w, inputs.q_var)
    if s <= tolerance_va or s > m1 + m3 + tolerance_va or s < abs(m1 - m3) - tolerance_va:
        return None
    u12 = cmath.rect(inputs.u12_v, math.radians(30.0))
    u32 = cmath.rect(inputs.u23_v, inputs.u32_angle())
    found = []
    for sign in (1, -1):
        powers = _element_powers(inputs.i1_a, inputs.i3_a, inputs, sign)
        if powers is None:  # within the tolerance: the elements' powers are collinear
            x = (s * s + m1 * m1 - m3 * m3) / (2 * s)
            rotation = complex(inputs.p_w, inputs.q_var) / s
            s1 = complex(max(-m1, min(m1, x)), 0.0) * rotation
            powers = (s1, complex(inputs.p_w, inputs.q_var) - s1)
        s1, s3 = powers
        found.append(Candidate(sign, (s1 / u12).conjugate(), (s3 / u32).conjugate()))
    return found[0], found[1]


def passive(candidate: Candidate, inputs: AronInputs, tolerance_a: float) -> bool:
    """Can the candidate's line currents be split into branch currents that a passive load draws?

    I1 = J12 - J31 and I3 = J31 - J23 fix the branch currents up to one common phasor k
    (J12 = I1 + k, J23 = -I3 + k, J31 = k). Each J_xy must lie in its voltage's sector; that is six
    half-planes in the plane of k, feasible when some vertex of their arrangement satisfies all six
    (within `tolerance_a` each).
    """
    u12 = math.radians(30.0)
    u32 = inputs.u32_angle()
    u23 = u32 - math.pi
    u31 = cmath.phase(-(cmath.rect(inputs.u12_v, u12) + cmath.rect(inputs.u23_v, u23)))
    offsets = (candidate.i1, -candidate.i3, 0j)
    normals: list[complex] = []
    limits: list[float] = []
    for offset, angle in zip(offsets, (u12, u23, u31), strict=True):
        for normal in (
            cmath.rect(1.0, angle - math.radians(LAG_DEG) + math.pi / 2),
            cmath.rect(1.0, angle + math.radians(LEAD_DEG) - math.pi / 2),
        ):
            normals.append(normal)
            # Re((offset + k) conj(normal)) >= -tolerance
            limits.append(-(offset * normal.conjugate()).real - tolerance_a)
    a = np.array([[n.real, n.imag] for n in normals])
    b = np.array(limits)
    for i in range(6):
        for j in range(i + 1, 6):
            pair = a[[i, j]]
            if abs(np.linalg.det(pair)) < 1e-12:
                continue
            k = np.linalg.solve(pair, b[[i, j]])
            if bool(np.all(a @ k >= b - 1e-9)):
                return True
    return False


def distorted_bound_a(
    candidate: Candidate, inputs: AronInputs, harmonics: Harmonics, tolerance_va: float
) -> float:
    """The largest IL2 on the candidate's branch of the triangle over every split of I1 and I3
    into a fundamental (which P and Q see) and harmonics of at most `harmonics` (which they do not,
    and which add on L2 at worst: |H2| <= |H1| + |H3|); never below the candidate itself. A split
    that misses the triangle by less than the inputs' rounding counts as closing it."""
    sign = candidate.sign
    h1_max, h3_max = harmonics.bound_a(inputs.i1_a), harmonics.bound_a(inputs.i3_a)
    # The RMS values as sent may be up to the rounding below the true ones.
    i1_top, i3_top = inputs.i1_a + ROUNDING_A, inputs.i3_a + ROUNDING_A
    f1 = np.linspace(math.sqrt(inputs.i1_a**2 - h1_max**2), i1_top, GRID)[:, None]
    f3 = np.linspace(math.sqrt(inputs.i3_a**2 - h3_max**2), i3_top, GRID)[None, :]
    m1, m3 = inputs.u12_v * f1, inputs.u23_v * f3
    s = math.hypot(inputs.p_w, inputs.q_var)
    x = (s * s + m1 * m1 - m3 * m3) / (2 * s)
    y2 = m1 * m1 - x * x
    ok = y2 >= -2.0 * (inputs.u12_v * inputs.i1_a + tolerance_va) * tolerance_va
    rotation = complex(inputs.p_w, inputs.q_var) / s
    s1 = (x + 1j * sign * np.sqrt(np.maximum(y2, 0.0))) * rotation
    s3 = complex(inputs.p_w, inputs.q_var) - s1
    u12 = cmath.rect(inputs.u12_v, math.radians(30.0))
    u32 = cmath.rect(inputs.u23_v, inputs.u32_angle())
    fundamental = np.abs(np.conj(s1 / u12) + np.conj(s3 / u32))
    harmonic = np.sqrt(np.maximum(i1_top**2 - f1**2, 0.0)) + np.sqrt(np.maximum(i3_top**2 - f3**2, 0.0))
    total = np.where(ok, np.hypot(fundamental, harmonic), 0.0)
    return max(float(total.max()), candidate.i2_a)


@dataclass(frozen=True, slots=True)
class _Anchor:
    i1: complex
    i3: complex
    ev: tuple[complex, complex]
    at_mono: float


@dataclass(frozen=True, slots=True)
class _Previous:
    found: tuple[Candidate, Candidate]
    ev: tuple[complex, complex]
    at_mono: float


class ThreeWireEstimator:
    """IL2 for each full list of one three-wire meter; remembers the last resolved state."""

    def __init__(self, harmonics: Harmonics | None = None) -> None:
        self._harmonics = harmonics or Harmonics()
        self._anchor: _Anchor | None = None
        self._previous: _Previous | None = None
        self.counts: dict[str, int] = {}

    def estimate(
        self, inputs: AronInputs, ev_phasors: tuple[complex, complex], now_mono: float
    ) -> Estimate | None:
        """`ev_phasors`: the cars' line phasors on L1 and L3 below the meter now (from their
        chargers' reports), to carry the last resolved state forward. None: keep Kirchhoff."""
        if inputs.p_w <= 0:
            return self._count(None, "export")  # a source below the meter: loads are not all passive
        harmonics = self._harmonics
        # How far the RMS currents may lie from their fundamentals: the slack of every test below.
        tolerance_a = ROUNDING_A + sum(
            current - math.sqrt(current**2 - harmonics.bound_a(current) ** 2)
            for current in (inputs.i1_a, inputs.i3_a)
        )
        tolerance_va = tolerance_a * max(inputs.u12_v, inputs.u23_v)
        found = candidates(inputs, tolerance_va)
        if found is None:
            return self._count(None, "inconsistent")
        low, high = sorted(found, key=lambda c: c.i2_a)
        fitting = [c for c in found if passive(c, inputs, tolerance_a)]
        chosen: Candidate | None = None
        how = "ambiguous"
        if len(fitting) == 1:
            chosen, how = fitting[0], "resolved"
        elif len(fitting) == 2:
            # Both fit a passive load; what is left after the cars (as their chargers report them)
            # must fit one too - with room for reports that lag.
            ev_slack_a = (
                tolerance_a + EV_SLACK_A + EV_SLACK_FRACTION * (abs(ev_phasors[0]) + abs(ev_phasors[1]))
            )
            beside_cars = [
                c
                for c in found
                if passive(Candidate(c.sign, c.i1 - ev_phasors[0], c.i3 - ev_phasors[1]), inputs, ev_slack_a)
            ]
            if len(beside_cars) == 1:
                chosen, how = beside_cars[0], "resolved"
            else:
                chosen = self._tracked(found, ev_phasors, now_mono) or self._paired(
                    found, ev_phasors, now_mono
                )
                how = "tracked" if chosen is not None else "ambiguous"
        self._previous = _Previous(found, ev_phasors, now_mono)
        if chosen is None:
            value = max(distorted_bound_a(c, inputs, harmonics, tolerance_va) for c in found)
        else:
            value = distorted_bound_a(chosen, inputs, harmonics, tolerance_va)
            self._anchor = _Anchor(chosen.i1, chosen.i3, ev_phasors, now_mono)
        # Never above the Kirchhoff bound, which holds whatever the load.
        value = min(value, inputs.i1_a + inputs.i3_a)
        return self._count(Estimate(value, how, low.i2_a, high.i2_a), how)

    def _tracked(
        self, found: tuple[Candidate, Candidate], ev: tuple[complex, complex], now_mono: float
    ) -> Candidate | None:
        anchor = self._anchor
        if anchor is None or now_mono - anchor.at_mono > ANCHOR_MAX_AGE_S:
            return None
        p1 = anchor.i1 + (ev[0] - anchor.ev[0])
        p3 = anchor.i3 + (ev[1] - anchor.ev[1])
        d = [abs(c.i1 - p1) + abs(c.i3 - p3) for c in found]
        near = 0 if d[0] <= d[1] else 1
        if d[near] < DECISIVE_RATIO * d[1 - near]:
            return found[near]
        return None

    def _paired(
        self, found: tuple[Candidate, Candidate], ev: tuple[complex, complex], now_mono: float
    ) -> Candidate | None:
        """With no resolved state to carry forward: the cars changed since the last list, and the
        true solutions of the two lists differ by just that change, the mirror images not."""
        previous = self._previous
        if previous is None or now_mono - previous.at_mono > PAIR_MAX_AGE_S:
            return None
        d1, d3 = ev[0] - previous.ev[0], ev[1] - previous.ev[1]
        if abs(d1) + abs(d3) < PAIR_MIN_CHANGE_A:
            return None  # too small a change to tell anything apart
        residual = [
            min(abs(new.i1 - old.i1 - d1) + abs(new.i3 - old.i3 - d3) for old in previous.found)
            for new in found
        ]
        near = 0 if residual[0] <= residual[1] else 1
        if residual[near] < DECISIVE_RATIO * residual[1 - near]:
            return found[near]
        return None

    def _count(self, result: Estimate | None, how: str) -> Estimate | None:
        self.counts[how] = self.counts.get(how, 0) + 1
        return result


def ev_phasors(loads: Iterable[tuple[tuple[str, ...], float]]) -> tuple[complex, complex]:
    """The line phasors on L1 and L3 of cars at unity power factor: (active lines, current) each.
    Two lines on IT: a branch current in phase with that line-to-line voltage; three lines: the
    current on each line in phase with its star voltage."""
    index = {"L1": 0, "L2": 1, "L3": 2}
    total = [0j, 0j, 0j]
    for lines, current_a in loads:
        if current_a <= 0:
            continue
        if len(lines) == 2:
            x, y = index[lines[0]], index[lines[1]]
            branch = (STAR[x] - STAR[y]) / SQRT3 * current_a
            total[x] += branch
            total[y] -= branch
        elif len(lines) == 3:
            for line in lines:
                total[index[line]] += STAR[index[line]] * current_a
    return total[0], total[2]
