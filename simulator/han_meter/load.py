"""A plausible slowly varying load for running the meter by hand (`python -m simulator.han_meter`)."""

from __future__ import annotations

import math
from typing import Protocol

from .model import Grid, MeterState, Phases


class MonotonicClock(Protocol):
    def monotonic(self) -> float: ...


class SlowLoad:
    """Line currents swinging around `mean_current_a` over `period_s`, unbalanced between lines,
    at a fixed power factor; energy registers integrate the power between samples."""

    def __init__(
        self,
        clock: MonotonicClock,
        *,
        grid: Grid,
        phases: Phases = 3,
        mean_current_a: float = 40.0,
        swing_a: float = 15.0,
        period_s: float = 900.0,
        power_factor: float = 0.95,
        voltage_v: float = 230.0,
        energy_import_wh: float = 12_345_678.0,
    ) -> None:
        if not 0 < power_factor <= 1:
            raise ValueError("power_factor must be in (0, 1]")
        self._clock = clock
        self.grid = grid
        self.phases = phases
        self.mean_current_a = mean_current_a
        self.swing_a = swing_a
        self.period_s = period_s
        self.power_factor = power_factor
        self.voltage_v = voltage_v
        self._energy_wh = energy_import_wh
        self._reactive_energy_varh = energy_import_wh * 0.1
        self._last_s: float | None = None

    def _currents(self, t_s: float) -> tuple[float, float, float]:
        def line(k: int) -> float:
            angle = 2 * math.pi * t_s / self.period_s + k * 2 * math.pi / 3
            return max(0.0, self.mean_current_a + self.swing_a * math.sin(angle))

        if self.phases == 1:
            return (line(0), 0.0, 0.0)
        return (line(0), line(1), line(2))

    def _powers(self, currents: tuple[float, float, float]) -> tuple[float, float]:
        if self.phases == 1:
            apparent_va = self.voltage_v * currents[0]
        elif self.grid == "IT":
            # Three-wire: voltages are line-to-line, S = sqrt(3) * U_LL * I_line (balanced estimate).
            apparent_va = math.sqrt(3) * self.voltage_v * sum(currents) / 3
        else:
            apparent_va = self.voltage_v * sum(currents)
        p_w = apparent_va * self.power_factor
        q_var = apparent_va * math.sin(math.acos(self.power_factor))
        return p_w, q_var

    def __call__(self) -> MeterState:
        t_s = self._clock.monotonic()
        currents = self._currents(t_s)
        p_w, q_var = self._powers(currents)
        if self._last_s is not None and t_s > self._last_s:
            hours = (t_s - self._last_s) / 3600.0
            self._energy_wh += p_w * hours
            self._reactive_energy_varh += q_var * hours
        self._last_s = t_s
        v = self.voltage_v
        return MeterState(
            current_a=currents,
            voltage_v=(v, v * 1.004, v * 0.997),
            active_power_import_w=p_w,
            reactive_power_import_var=q_var,
            energy_import_wh=self._energy_wh,
            reactive_energy_import_varh=self._reactive_energy_varh,
        )
