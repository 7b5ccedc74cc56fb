"""Trip models of gG fuses (IEC 60269) and miniature circuit breakers (IEC 60898), one per fuse line.

The model is a time-to-trip curve plus a damage accumulator (Miner's rule): while the current is
above the conventional non-tripping current, damage grows by dt / t_trip(I); below it, the element
cools and damage decays with a time constant. The device opens when damage reaches 1. A constant
current from cold therefore trips exactly at t_trip(I), and a hot device trips sooner.

Why this curve, and why it is conservative (it trips no later than a compliant device must):
- at or below the conventional non-tripping current (gG: Inf, MCB: 1.13 In) it never trips: the
  standards require that;
- between that and the conventional tripping current (gG: If, MCB: 1.45 In) the time falls like a
  thermal element's, t = t_conv (k_f^2 - k_nt^2) / (k^2 - k_nt^2), reaching the conventional time at
  k_f (the latest moment the standard allows);
- above that the curve runs log-log through the standard's "must have operated by" points (gG: the
  Imax gates at 5 s and 0.1 s; MCB: 2.55 In by 60 s, 120 s above 32 A) and beyond the last point as
  constant I^2 t (adiabatic);
- an MCB's magnetic release trips within the step from the lower end of its band (B 3 In, C 5 In,
  D 10 In), the earliest a compliant breaker may.
Cooling is slow (15 min time constant by default): a long memory of past overloads errs toward
tripping. Gate values for ratings between the tabulated ones are interpolated in log(In).
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

DEFAULT_COOLING_TIME_CONSTANT_S = 900.0
# Damage at which the device opens; a hair below 1 so that float rounding in the integration of a
# constant current never makes the trip later than the curve says.
TRIP_DAMAGE = 1.0 - 1e-9

DeviceKind = Literal["gG", "B", "C", "D", "none"]


@dataclass(frozen=True, slots=True)
class TripCurve:
    """Time to trip as a function of the multiple k = I / In. Times are "must have operated by"."""

    name: str
    rated_a: float
    non_trip_multiple: float
    conventional_multiple: float
    conventional_time_s: float
    points: tuple[tuple[float, float], ...] = ()
    instantaneous_multiple: float | None = None
    cooling_time_constant_s: float = DEFAULT_COOLING_TIME_CONSTANT_S

    def __post_init__(self) -> None:
        if self.rated_a <= 0:
            raise ValueError(f"{self.name}: rated current must be positive")
        if not 1.0 <= self.non_trip_multiple < self.conventional_multiple:
            raise ValueError(f"{self.name}: need 1 <= non-trip multiple < conventional multiple")
        ks = [self.conventional_multiple] + [k for k, _ in self.points]
        ts = [self.conventional_time_s] + [t for _, t in self.points]
        if any(b <= a for a, b in itertools.pairwise(ks)) or any(b >= a for a, b in itertools.pairwise(ts)):
            raise ValueError(f"{self.name}: curve points must rise in current and fall in time")

    def time_to_trip_s(self, multiple: FloatArray) -> FloatArray:
        """Seconds to trip from cold at a constant multiple of In; inf where it never trips."""
        k = np.asarray(multiple, dtype=np.float64)
        out = np.full(k.shape, np.inf)
        knt2, kf = self.non_trip_multiple**2, self.conventional_multiple
        thermal = (k > self.non_trip_multiple) & (k <= kf)
        out[thermal] = self.conventional_time_s * (kf * kf - knt2) / (k[thermal] ** 2 - knt2)
        log_k = np.log([kf] + [p[0] for p in self.points])
        log_t = np.log([self.conventional_time_s] + [p[1] for p in self.points])
        k_last, t_last = math.exp(log_k[-1]), math.exp(log_t[-1])
        mid = (k > kf) & (k <= k_last)
        if mid.any():
            out[mid] = np.exp(np.interp(np.log(k[mid]), log_k, log_t))
        high = k > k_last
        out[high] = t_last * (k_last / k[high]) ** 2
        if self.instantaneous_multiple is not None:
            out[k >= self.instantaneous_multiple] = 0.0
        return out


# IEC 60269-1 gG gates: rated current -> (Imax at 5 s, Imax at 0.1 s) in amperes.
_GG_GATES: tuple[tuple[float, float, float], ...] = (
    (16, 65, 150),
    (20, 85, 200),
    (25, 110, 260),
    (32, 150, 350),
    (40, 190, 450),
    (50, 250, 610),
    (63, 320, 820),
    (80, 425, 1100),
    (100, 580, 1450),
    (125, 715, 1910),
    (160, 950, 2590),
    (200, 1250, 3420),
    (250, 1650, 4500),
    (315, 2200, 6000),
    (400, 2840, 8060),
    (500, 3800, 10600),
    (630, 5100, 14140),
    (800, 7000, 19000),
    (1000, 9500, 24000),
    (1250, 13000, 35000),
)


def _gg_gate_multiples(rated_a: float) -> tuple[float, float]:
    ratings = [g[0] for g in _GG_GATES]
    m5 = [g[1] / g[0] for g in _GG_GATES]
    m01 = [g[2] / g[0] for g in _GG_GATES]
    if rated_a <= ratings[0]:
        return m5[0], m01[0]
    if rated_a >= ratings[-1]:
        return m5[-1], m01[-1]
    i = bisect.bisect_right(ratings, rated_a)
    f = (math.log(rated_a) - math.log(ratings[i - 1])) / (math.log(ratings[i]) - math.log(ratings[i - 1]))
    return m5[i - 1] + f * (m5[i] - m5[i - 1]), m01[i - 1] + f * (m01[i] - m01[i - 1])


def gg_fuse(rated_a: float, cooling_time_constant_s: float = DEFAULT_COOLING_TIME_CONSTANT_S) -> TripCurve:
    """A gG fuse-link (IEC 60269-1 conventional currents and times, gates for 5 s and 0.1 s)."""
    if rated_a <= 4:
        k_nt, k_f = 1.5, 2.1
    elif rated_a < 16:
        k_nt, k_f = 1.5, 1.9
    else:
        k_nt, k_f = 1.25, 1.6
    if rated_a <= 63:
        t_conv = 3600.0
    elif rated_a <= 160:
        t_conv = 7200.0
    elif rated_a <= 400:
        t_conv = 10800.0
    else:
        t_conv = 14400.0
    m5, m01 = _gg_gate_multiples(rated_a)
    return TripCurve(
        name=f"gG {rated_a:g} A",
        rated_a=rated_a,
        non_trip_multiple=k_nt,
        conventional_multiple=k_f,
        conventional_time_s=t_conv,
        points=((max(m5, k_f * 1.01), 5.0), (max(m01, m5 * 1.01), 0.1)),
        cooling_time_constant_s=cooling_time_constant_s,
    )


_MAGNETIC_LOWER = {"B": 3.0, "C": 5.0, "D": 10.0}


def mcb(
    rated_a: float,
    characteristic: Literal["B", "C", "D"],
    *,
    instantaneous_multiple: float | None = None,
    cooling_time_constant_s: float = DEFAULT_COOLING_TIME_CONSTANT_S,
) -> TripCurve:
    """A miniature circuit breaker (IEC 60898-1): thermal release plus magnetic release."""
    return TripCurve(
        name=f"MCB {characteristic}{rated_a:g}",
        rated_a=rated_a,
        non_trip_multiple=1.13,
        conventional_multiple=1.45,
        conventional_time_s=3600.0 if rated_a <= 63 else 7200.0,
        points=((2.55, 60.0 if rated_a <= 32 else 120.0),),
        instantaneous_multiple=(
            _MAGNETIC_LOWER[characteristic] if instantaneous_multiple is None else instantaneous_multiple
        ),
        cooling_time_constant_s=cooling_time_constant_s,
    )


def trip_curve(kind: DeviceKind, rated_a: float) -> TripCurve | None:
    """The curve of a device kind; `none` is a node that never trips (a board, a metering point)."""
    if kind == "none":
        return None
    if kind == "gG":
        return gg_fuse(rated_a)
    return mcb(rated_a, kind)


class TripAccumulator:
    """Damage per device and line for a set of curves; vectorised over lines, looped over devices
    only while they are overloaded (the common step, nothing above its non-trip current, is one
    numpy expression)."""

    def __init__(self, curves: list[TripCurve | None]) -> None:
        self._curves = curves
        n = len(curves)
        self.damage = np.zeros((n, 3))
        self._rated = np.array([c.rated_a if c else np.inf for c in curves])
        self._knt = np.array([c.non_trip_multiple if c else np.inf for c in curves])
        self._tau = np.array([c.cooling_time_constant_s if c else 1.0 for c in curves])

    def step(self, line_currents_a: FloatArray, dt_s: float) -> BoolArray:
        """Advance by dt with these per-line currents (devices x 3); returns devices tripped now."""
        k = line_currents_a / self._rated[:, None]
        over = k > self._knt[:, None]
        self.damage *= np.where(over, 1.0, np.exp(-dt_s / self._tau)[:, None])
        if over.any():
            for i in np.flatnonzero(over.any(axis=1)):
                curve = self._curves[i]
                assert curve is not None
                t = curve.time_to_trip_s(k[i])
                with np.errstate(divide="ignore"):
                    inc = np.where(over[i], dt_s / t, 0.0)
                self.damage[i] += inc
        tripped: BoolArray = np.any(self.damage >= TRIP_DAMAGE, axis=1)
        return tripped

    def reset(self, device: int) -> None:
        """A replaced fuse-link or a re-closed breaker starts cold."""
        self.damage[device] = 0.0
