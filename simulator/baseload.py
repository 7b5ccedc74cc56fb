"""Non-EV load of the building: evening peak, ventilation, a lift motor's step, a switched load; noise.

A base load is three currents. On TN they are line currents (L1, L2, L3 to neutral); on IT they are
branch currents (L1-L2, L2-L3, L3-L1), because an IT load is itself a three-wire load and its line
currents then obey Kirchhoff (I_L2 <= I_L1 + I_L3) by construction. Everything random is drawn up
front from the seed, so a profile is a pure function of time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

BaseLoadKind = Literal["constant", "evening_peak", "ventilation", "lift", "step"]
NOISE_WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class BaseLoadSpec:
    """`amps`: per line (TN) or per branch (IT) at full load. Ventilation cycles `period_s` with
    `duty`; a lift runs `run_s` at full load `starts_per_h` times an hour, `inrush_factor` x for
    `inrush_s` at each start; the evening peak follows the hour of day (the garage passes local
    seconds of day); a step is off until `at_s`, then at full load for `duration_s` (default: to the
    end) - a load switched on that the controller cannot foresee (a sauna, a heat pump, a test)."""

    id: str
    fuse: str
    kind: BaseLoadKind = "constant"
    amps: tuple[float, float, float] = (10.0, 10.0, 10.0)
    power_factor: float = 1.0
    noise_fraction: float = 0.05
    period_s: float = 1800.0
    duty: float = 0.6
    starts_per_h: float = 6.0
    run_s: float = 25.0
    inrush_factor: float = 2.5
    inrush_s: float = 1.0
    idle_fraction: float = 0.05
    at_s: float = 0.0
    duration_s: float = math.inf

    def __post_init__(self) -> None:
        if any(a < 0 for a in self.amps):
            raise ValueError(f"base load {self.id!r}: amps must not be negative")
        if self.at_s < 0 or not self.duration_s > 0:
            raise ValueError(f"base load {self.id!r}: at_s must be >= 0 and duration_s > 0")
        if not 0 <= self.noise_fraction < 1:
            raise ValueError(f"base load {self.id!r}: noise_fraction must be in [0, 1)")


def evening_shape(local_s_of_day: float) -> float:
    """0.3 at night, a morning bump to ~0.6 at 07:30 and the peak 1.0 around 18:30."""
    h = (local_s_of_day / 3600.0) % 24.0

    def bump(center: float, width: float) -> float:
        d = min(abs(h - center), 24.0 - abs(h - center))
        return math.exp(-((d / width) ** 2))

    return min(1.0, 0.3 + 0.7 * bump(18.5, 2.2) + 0.3 * bump(7.5, 1.2))


class BaseLoadProfile:
    def __init__(self, spec: BaseLoadSpec, duration_s: float, seed: int) -> None:
        self.spec = spec
        rng = np.random.default_rng([seed, _stable_hash(spec.id)])
        windows = int(duration_s // NOISE_WINDOW_S) + 2
        self._noise: npt.NDArray[np.float64] = 1.0 + spec.noise_fraction * rng.uniform(-1, 1, (windows, 3))
        self._phase_s = float(rng.uniform(0, spec.period_s))
        starts: list[float] = []
        if spec.kind == "lift" and spec.starts_per_h > 0:
            t = 0.0
            while t < duration_s:
                t += float(rng.exponential(3600.0 / spec.starts_per_h))
                starts.append(t)
        self._lift_starts = np.array(starts)
        self._amps = np.array(spec.amps, dtype=np.float64)

    def _level(self, t_s: float, local_s_of_day: float) -> float:
        spec = self.spec
        if spec.kind == "constant":
            return 1.0
        if spec.kind == "evening_peak":
            return evening_shape(local_s_of_day)
        if spec.kind == "step":
            return 1.0 if spec.at_s <= t_s < spec.at_s + spec.duration_s else 0.0
        if spec.kind == "ventilation":
            return 1.0 if ((t_s + self._phase_s) % spec.period_s) < spec.duty * spec.period_s else 0.0
        i = int(np.searchsorted(self._lift_starts, t_s, side="right")) - 1
        if i < 0:
            return spec.idle_fraction
        since = t_s - float(self._lift_starts[i])
        if since < spec.inrush_s:
            return spec.inrush_factor
        return 1.0 if since < spec.run_s else spec.idle_fraction

    def currents_a(self, t_s: float, local_s_of_day: float) -> npt.NDArray[np.float64]:
        """The three currents (per line on TN, per branch on IT) at `t_s` seconds from the start."""
        w = min(int(t_s // NOISE_WINDOW_S), len(self._noise) - 1)
        out: npt.NDArray[np.float64] = self._amps * self._level(t_s, local_s_of_day) * self._noise[max(w, 0)]
        return out


def _stable_hash(text: str) -> int:
    # Python's hash() of a str changes between processes; a seed must not.
    value = 0
    for ch in text.encode():
        value = (value * 131 + ch) % (2**31 - 1)
    return value
