"""The latest picture of one meter, with the conservative estimate between full lists.

Per-line currents come only in the full list (every 10 s); Aidon and Kaifa send the total power every
2-2.5 s in between. A rise of total power since the last full list is added in full to every line's
current, as if all of it landed on each line: that overstates a balanced rise threefold, but an
overload is acted on within one power-only frame instead of up to 10 s later (DESIGN.md §5). A fall in
power is not applied: waiting for the next full list to release current is the safe side.

The part of a change that the controller's own setpoints explain is left out (`explained_rise_w`):
counting the cars it just allowed to ramp as new base load on every line made the site pause them
all and start them again at the next full list, every time. It is negative when the controller
lowered the cars: their fall is then no fall of the base load, and a base-load rise that made the
controller lower them stays visible instead of being netted against it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from drivers.contracts import LINES, Line, MeterList, MeterReading

LineValues = tuple[float | None, float | None, float | None]
# How far back the total power is remembered: a list is read against the cars' cuts of the
# seconds before it (site/base_load.py).
POWER_MEMORY_S = 60.0


@dataclass(frozen=True, slots=True)
class MeterView:
    """What the snapshot needs of a meter: per-line currents (None where not reported) and their age."""

    currents_a: LineValues
    age_s: float | None
    power_rise_w: float


class MeterTracker:
    """Folds a meter's readings into its current estimate. Pure: time comes in as arguments."""

    def __init__(self, *, phase_voltage_v: float) -> None:
        self._phase_voltage_v = phase_voltage_v
        self._full: MeterReading | None = None
        self._full_power_w: float | None = None
        self._latest_power_w: float | None = None
        self._latest_mono: float | None = None
        self._derived_l2_a: float | None = None
        self._powers: deque[tuple[float, float]] = deque()  # (received, net power)
        self.readings = 0

    def ingest(self, reading: MeterReading, derived_l2_a: float | None = None) -> None:
        """`derived_l2_a`: IL2 worked out from a three-wire meter's own measurements (three_wire),
        for a full list that lacks it."""
        self.readings += 1
        power_w = _net_import_w(reading)
        self._latest_mono = reading.received.monotonic_s
        if power_w is not None:
            self._latest_power_w = power_w
            self._powers.append((self._latest_mono, power_w))
            while self._powers and self._powers[0][0] < self._latest_mono - POWER_MEMORY_S:
                self._powers.popleft()
        if reading.list_type is not MeterList.POWER_ONLY and any(
            reading.current_a(line) is not None for line in LINES
        ):
            self._full = reading
            self._full_power_w = power_w
            self._derived_l2_a = derived_l2_a

    def _line_a(self, full: MeterReading, line: Line) -> float | None:
        if line == "L2" and self._derived_l2_a is not None:
            return self._derived_l2_a
        return full.current_a(line)

    @property
    def latest_power_w(self) -> float | None:
        return self._latest_power_w

    def power_before_w(self, mono: float, *, inclusive: bool = False) -> float | None:
        """The net power of the last reading received before `mono` (or at it, `inclusive`; None:
        none remembered)."""
        before = [
            power_w
            for received, power_w in self._powers
            if received < mono or (inclusive and received == mono)
        ]
        return before[-1] if before else None

    @property
    def full_power_w(self) -> float | None:
        """The net power when the last full list was taken."""
        return self._full_power_w

    @property
    def full_currents_a(self) -> LineValues:
        """The last full list's line currents as read (magnitudes; None where not reported)."""
        full = self._full
        if full is None:
            return (None, None, None)
        return (
            _abs_plus(self._line_a(full, "L1"), 0.0),
            _abs_plus(self._line_a(full, "L2"), 0.0),
            _abs_plus(self._line_a(full, "L3"), 0.0),
        )

    @property
    def last_full_mono(self) -> float | None:
        return None if self._full is None else self._full.received.monotonic_s

    @property
    def last_reading_mono(self) -> float | None:
        return self._latest_mono

    def view(self, now_mono: float, explained_rise_w: float = 0.0) -> MeterView:
        full = self._full
        if full is None:
            return MeterView((None, None, None), None, 0.0)
        rise_w = 0.0
        if self._latest_power_w is not None and self._full_power_w is not None:
            rise_w = max(0.0, self._latest_power_w - self._full_power_w - explained_rise_w)
        rise_a = rise_w / self._phase_voltage_v
        currents = tuple(_abs_plus(self._line_a(full, line), rise_a) for line in LINES)
        age_s = max(0.0, now_mono - full.received.monotonic_s)
        return MeterView((currents[0], currents[1], currents[2]), age_s, rise_w)


def _net_import_w(reading: MeterReading) -> float | None:
    if reading.active_power_import_w is None:
        return None
    return reading.active_power_import_w - (reading.active_power_export_w or 0.0)


def _abs_plus(current_a: float | None, rise_a: float) -> float | None:
    # Aidon reports a negative current while exporting; a fuse is loaded by the magnitude.
    return None if current_a is None else abs(current_a) + rise_a
