"""Electric cars as the charger sees them: they follow the pilot's current limit after a delay.

A car's current is piecewise constant: it changes only when the pilot change it is answering takes
effect (after the car's response delay, 1-5 s per IEC 61851-1) or at the start of a step (taper with
rising state of charge). Energy is integrated over those pieces, so for a given step the energy is
exact: the sum of current x power-per-amp x duration of every piece.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CarSpec:
    """A car model. `draw_ratio` < 1 makes a car draw less than its setpoint (many draw ~95 %);
    `ignores_setpoint` makes a faulty car draw its own maximum whatever the pilot says (a 0 A pilot
    still stops it: the charger opens its contactor)."""

    battery_kwh: float = 60.0
    max_current_a: float = 16.0
    phases: int = 3
    min_current_a: float = 6.0
    response_delay_s: float = 3.0
    taper_start_soc: float = 0.8
    taper_floor_a: float = 1.0
    draw_ratio: float = 1.0
    ignores_setpoint: bool = False
    charge_efficiency: float = 0.92
    model: str = "generic"

    def __post_init__(self) -> None:
        if self.battery_kwh <= 0:
            raise ValueError("battery_kwh must be positive")
        if self.phases not in (1, 2, 3):
            raise ValueError(f"phases must be 1, 2 or 3, got {self.phases}")
        if not 0 < self.min_current_a <= self.max_current_a:
            raise ValueError("need 0 < min_current_a <= max_current_a")
        if self.response_delay_s < 0:
            raise ValueError("response_delay_s must not be negative")
        if not 0 < self.taper_start_soc <= 1:
            raise ValueError("taper_start_soc must be in (0, 1]")
        if not 0 < self.draw_ratio <= 1:
            raise ValueError("draw_ratio must be in (0, 1]")
        if not 0 < self.charge_efficiency <= 1:
            raise ValueError("charge_efficiency must be in (0, 1]")


class Car:
    """One car's state while plugged in. `power_per_amp_w` comes from the grid and the charger's
    wiring (IT single-phase: the line-to-line voltage; TN three-phase: 3 x 230 V, ...)."""

    def __init__(
        self,
        spec: CarSpec,
        *,
        soc: float,
        target_soc: float = 1.0,
        power_per_amp_w: float,
        name: str = "car",
        start_s: float = 0.0,
    ) -> None:
        if not 0 <= soc <= 1 or not 0 < target_soc <= 1:
            raise ValueError("soc must be in [0, 1] and target_soc in (0, 1]")
        if power_per_amp_w <= 0:
            raise ValueError("power_per_amp_w must be positive")
        self.spec = spec
        self.name = name
        self.soc = soc
        self.target_soc = target_soc
        self.power_per_amp_w = power_per_amp_w
        self.energy_wh = 0.0
        self.current_a = 0.0
        # The limit the car is acting on now, and pilot changes it has seen but not yet answered.
        self._followed_limit_a = 0.0
        self._last_pilot_a = 0.0
        self._pending: deque[tuple[float, float]] = deque()
        self._now_s = start_s

    @property
    def wants_energy(self) -> bool:
        return self.soc < self.target_soc - 1e-9

    @property
    def energy_wanted_wh(self) -> float:
        """Grid energy still needed to reach the target state of charge."""
        missing_kwh = max(0.0, self.target_soc - self.soc) * self.spec.battery_kwh
        return missing_kwh * 1000.0 / self.spec.charge_efficiency

    def taper_cap_a(self) -> float:
        spec = self.spec
        if self.soc < spec.taper_start_soc:
            return spec.max_current_a
        if spec.taper_start_soc >= 1.0:
            return spec.max_current_a
        frac = (1.0 - self.soc) / (1.0 - spec.taper_start_soc)
        return max(spec.taper_floor_a, spec.max_current_a * frac)

    def set_pilot(self, limit_a: float, now_s: float) -> None:
        """The charger's pilot now offers `limit_a` (0 = no charging allowed)."""
        if limit_a != self._last_pilot_a:
            self._last_pilot_a = limit_a
            self._pending.append((now_s + self.spec.response_delay_s, limit_a))

    def cut_supply(self) -> None:
        """The charger lost its supply (power loss, tripped fuse, reset): the current stops now.

        Unlike a pilot change this takes no response delay - there is nothing left to draw. The
        car must already be advanced to the moment of the cut; a later pilot starts it again after
        its response delay, as from a standstill.
        """
        self._pending.clear()
        self._followed_limit_a = 0.0
        self._last_pilot_a = 0.0
        self.current_a = 0.0

    def _draw_for(self, limit_a: float) -> float:
        if not self.wants_energy or limit_a <= 0:
            return 0.0
        spec = self.spec
        if spec.ignores_setpoint:
            return min(spec.max_current_a, self.taper_cap_a()) * spec.draw_ratio
        if limit_a < spec.min_current_a:
            return 0.0
        return min(limit_a, spec.max_current_a, self.taper_cap_a()) * spec.draw_ratio

    def advance(self, until_s: float) -> float:
        """Charge until `until_s`; returns the grid energy (Wh) taken in that interval."""
        taken_wh = 0.0
        t = self._now_s
        while t < until_s:
            piece_end = until_s
            if self._pending and self._pending[0][0] <= t:
                self._followed_limit_a = self._pending.popleft()[1]
                continue
            if self._pending and self._pending[0][0] < until_s:
                piece_end = self._pending[0][0]
            self.current_a = self._draw_for(self._followed_limit_a)
            taken_wh += self._charge(self.current_a, piece_end - t)
            t = piece_end
        # A change due exactly at the end of the interval is what the car draws from now on.
        while self._pending and self._pending[0][0] <= until_s:
            self._followed_limit_a = self._pending.popleft()[1]
        self.current_a = self._draw_for(self._followed_limit_a)
        self._now_s = max(self._now_s, until_s)
        return taken_wh

    def _charge(self, current_a: float, seconds: float) -> float:
        if current_a <= 0 or seconds <= 0:
            return 0.0
        wh = current_a * self.power_per_amp_w * seconds / 3600.0
        self.energy_wh += wh
        self.soc = min(1.0, self.soc + wh * self.spec.charge_efficiency / (self.spec.battery_kwh * 1000.0))
        return wh

    def time_to_target_s(self, current_a: float) -> float:
        """Seconds to the target at a constant current, ignoring taper (a lower bound)."""
        if current_a <= 0:
            return math.inf
        return self.energy_wanted_wh * 3600.0 / (current_a * self.power_per_amp_w)
