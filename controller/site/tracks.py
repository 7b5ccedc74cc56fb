"""What the site remembers of one charging point: its latest status, the lines its car draws on, when
its reported currents last changed, and the setpoints it held over the last minute.

Time comes in as arguments (monotonic seconds); nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from controller.settings import ChargerSection
from drivers.contracts import LINES, ChargerStatus, ConnectorState, Line

# A terminal carrying less than this is not counted as a line the car draws on.
ACTIVE_LINE_THRESHOLD_A = 1.0
# A car follows a new limit within 5 s (IEC 61851-1); a charger reports its currents every ~10 s.
# In between, the meter already sees the new current while the charger's report does not.
CAR_RESPONSE_S = 5.0
# A car raised this long before a meter list may not show in it yet: it follows within 5 s of the
# charger applying its new limit (IEC 61851-1), and the charger takes a second or two to apply it.
LIST_LAG_S = 8.0
FOLLOW_WINDOW_S = 20.0
SETPOINT_MEMORY_S = 60.0
SQRT3 = math.sqrt(3.0)

WANTS_ENERGY = frozenset(
    {ConnectorState.CHARGING, ConnectorState.SUSPENDED_EV, ConnectorState.SUSPENDED_EVSE}
)
HAS_CAR = frozenset(
    {
        ConnectorState.PREPARING,
        ConnectorState.CHARGING,
        ConnectorState.SUSPENDED_EV,
        ConnectorState.SUSPENDED_EVSE,
        ConnectorState.FINISHING,
    }
)
LineValues = tuple[float | None, float | None, float | None]
_V = TypeVar("_V")


@dataclass(frozen=True, slots=True)
class Shown:
    """How much of a car's setpoint changes of the seconds before a meter list that list shows
    (site/base_load.py): by default none of a raise and all of a cut, the higher base load."""

    raise_share: float = 0.0
    cut_share: float = 1.0


@dataclass(slots=True)
class ChargerTrack:
    config: ChargerSection
    status: ChargerStatus | None = None
    active_lines: tuple[Line, ...] | None = None
    measured_mono: float | None = None  # when the currents were last reported
    setpoint_seen: float | None = None
    setpoint_before: float | None = None  # the value before the latest change
    setpoint_changed_mono: float | None = None
    # The charger's reported currents when the setpoint last changed: what the car drew before it.
    measured_before_change: LineValues | None = None
    # (since, value) of the setpoints held over the last SETPOINT_MEMORY_S, and the one before.
    setpoints: deque[tuple[float, float | None]] = field(default_factory=deque)

    def ingest(self, status: ChargerStatus, grid_type: str) -> None:
        previous = self.status
        fresh = status.currents_received
        if fresh is not None:
            # A report counts when it comes, also when it repeats the values: a car that already
            # stood at its new setpoint before the report, or did not follow, reads the same twice.
            if previous is None or previous.currents_received != fresh:
                self.measured_mono = fresh.monotonic_s
        elif status.last_seen is not None and (
            previous is None or previous.measured_current_a != status.measured_current_a
        ):
            # A driver that does not say when its currents came: only a change proves a new report.
            self.measured_mono = status.last_seen.monotonic_s
        self.status = status
        if status.state not in HAS_CAR:
            self.active_lines = None
        else:
            learned = active_lines(self.config.lines, status.measured_current_a, grid_type)
            if learned is not None:
                self.active_lines = learned

    def note_setpoint(self, value: float | None, now_mono: float) -> bool:
        """Remember the setpoint held now; True when it changed."""
        if value == self.setpoint_seen:
            return False
        self.setpoint_before = self.setpoint_seen
        self.setpoint_seen = value
        self.setpoint_changed_mono = now_mono
        self.measured_before_change = None if self.status is None else self.status.measured_current_a
        remember(self.setpoints, now_mono, value, SETPOINT_MEMORY_S)
        return True

    @property
    def has_car(self) -> bool:
        return self.status is not None and self.status.state in HAS_CAR

    @property
    def charging(self) -> bool:
        status = self.status
        return status is not None and status.online and status.state is ConnectorState.CHARGING

    def drawing(self, grid_type: str) -> LineValues:
        status = self.status
        if status is None:
            return (None, None, None)
        return drawing(self.config.lines, status.measured_current_a, grid_type)

    def unanswered(self, now_mono: float) -> bool:
        """Is the reported current older than the car's answer to its latest setpoint?

        A car follows within ~5 s; a charger reports every ~10 s; the meter sees the change first.
        Counting the car at its new setpoint during that window would hide a base-load rise behind a
        car that did not follow an increase, so only decreases are taken at once.
        """
        status, changed = self.status, self.setpoint_changed_mono
        if status is None or status.state is not ConnectorState.CHARGING or changed is None:
            return False
        if now_mono - changed >= FOLLOW_WINDOW_S:
            return False
        return self.measured_mono is None or self.measured_mono < changed + CAR_RESPONSE_S

    def unreported_rise(self, now_mono: float) -> bool:
        """A raised (or started) car whose charger has not reported since it could have followed."""
        before, value = self.setpoint_before, self.setpoint_seen
        if not self.has_car or before is None or value is None or value <= before:
            return False
        changed = self.setpoint_changed_mono
        if changed is None or now_mono - changed >= FOLLOW_WINDOW_S:
            return False
        return self.measured_mono is None or self.measured_mono < changed + CAR_RESPONSE_S

    def against_list_a(self, list_mono: float, shown: Shown = Shown()) -> float | None:
        """The most this car is taken to draw against a meter list: the lowest setpoint in force in
        the LIST_LAG_S before it (a car raised then may not show yet; one cut in the CAR_RESPONSE_S
        before it may have followed already), with the part of each such change that the list
        shows (`shown`) counted as made. None when a setpoint was unknown (also before the first)."""
        held: list[tuple[float, float | None]] = []
        for since, value in self.setpoints:
            if since <= list_mono - LIST_LAG_S:
                held = [(since, value)]
            elif since <= list_mono:
                held.append((since, value))
        if not held or any(value is None for _, value in held):
            return None
        values = [value or 0.0 for _, value in held]
        lowest = math.inf
        for k, value in enumerate(values):
            # The value before a raise counts only as far as the raise does not show yet ...
            raised = values[k + 1] - value if k + 1 < len(values) and values[k + 1] > value else 0.0
            # ... and a recent cut's value as far as the cut shows.
            recent = k > 0 and held[k][0] > list_mono - CAR_RESPONSE_S
            cut = values[k - 1] - value if recent and values[k - 1] > value else 0.0
            lifts = [share for share in (raised * shown.raise_share, cut * (1.0 - shown.cut_share)) if share]
            lowest = min(lowest, value + (min(lifts) if lifts else 0.0))
        return lowest

    def reported_at_list(self, list_mono: float, grid_type: str) -> LineValues:
        """The charger's report as an upper bound of what the car drew when a list was taken: a
        report that came after the list and after a setpoint change may show the car at its new
        value already, so the one from before the change counts too (the higher of the two)."""
        now = self.drawing(grid_type)
        changed = self.setpoint_changed_mono
        if (
            self.measured_mono is None
            or self.measured_mono <= list_mono
            or changed is None
            or changed <= list_mono - LIST_LAG_S
            or self.measured_before_change is None
        ):
            return now
        before = drawing(self.config.lines, self.measured_before_change, grid_type)
        return (_higher(now[0], before[0]), _higher(now[1], before[1]), _higher(now[2], before[2]))

    def changes(self, start_mono: float, end_mono: float) -> list[tuple[float, float, float]]:
        """(when, from, to) of the setpoint changes made in (start, end], unknown counting as 0."""
        out = []
        previous: float | None = None
        for since, value in self.setpoints:
            if start_mono < since <= end_mono and previous is not None:
                out.append((since, previous, value or 0.0))
            previous = value or 0.0
        return out

    def span_a(self, start_mono: float, end_mono: float) -> tuple[float, float]:
        """(lowest, highest) setpoint held at some time in [start, end], the oldest one standing for
        the time before it and an unknown one counting as 0: what the controller's own changes
        explain of the meter's must not be more than the cars can be doing."""
        history = self.setpoints
        if not history:
            return (0.0, 0.0)
        held = in_window(history, start_mono, end_mono)
        if history[0][0] > start_mono:
            held.insert(0, history[0][1])
        values = [v or 0.0 for v in held]
        return (min(values), max(values))

    def watts_per_amp(self, grid_type: str, voltage_v: float, *, least: bool) -> float:
        """Active power per ampere of setpoint: of the lines the car is known to use, else the
        least (`least`, for a rise the controller's own increase may explain) or the most (for a
        cut) a car on this charger can make of it."""
        lines = self.active_lines
        wired = len(self.config.lines)
        if grid_type == "IT":
            if lines is not None:
                return voltage_v * (SQRT3 if len(lines) == 3 else 1.0)
            return voltage_v * (1.0 if least or wired == 2 else SQRT3)
        if lines is not None:
            return voltage_v * len(lines)
        return voltage_v * (1 if least else wired)


def active_lines(lines: Sequence[Line], measured: LineValues, grid: str) -> tuple[Line, ...] | None:
    """Grid lines the car draws on, from per-terminal currents; None while it cannot be told."""
    active = [
        lines[k]
        for k in range(len(lines))
        if (value := measured[k]) is not None and abs(value) >= ACTIVE_LINE_THRESHOLD_A
    ]
    if not active:
        return None  # paused or not drawing: keep what was learned before
    if grid == "IT":
        if len(lines) == 2:
            return tuple(lines)  # a single-phase charger on IT always loads its line pair
        if len(active) == 1:
            return None  # one terminal of three: which pair is unknown, so assume all wired lines
    return tuple(active)


def drawing(lines: Sequence[Line], measured: LineValues, grid: str) -> LineValues:
    """Measured current per grid line (L1, L2, L3); None on lines not reported or not wired."""
    per_line: dict[str, float | None] = {"L1": None, "L2": None, "L3": None}
    if grid == "IT" and len(lines) == 2:
        # A single-phase charger on IT measures one branch current; it flows in both lines.
        branch = measured[0]
        value = None if branch is None else abs(branch)
        per_line[lines[0]] = value
        per_line[lines[1]] = value
    else:
        for k, line in enumerate(lines):
            raw = measured[k]
            per_line[line] = None if raw is None else abs(raw)
    return (per_line["L1"], per_line["L2"], per_line["L3"])


def capped(values: LineValues, current_a: float) -> LineValues:
    """The measured current per line, no more than `current_a` (unknown lines stay unknown)."""
    return (
        None if values[0] is None else min(values[0], current_a),
        None if values[1] is None else min(values[1], current_a),
        None if values[2] is None else min(values[2], current_a),
    )


def least_drawn_a(lines: Sequence[Line], values: LineValues) -> float | None:
    """A car's own current from its lines' readings: the smallest (a spread is not this car)."""
    known = [v for v in (values[LINES.index(line)] for line in lines) if v is not None]
    return min(known) if known else None


def remember(history: deque[tuple[float, _V]], now_mono: float, value: _V, memory_s: float) -> None:
    history.append((now_mono, value))
    # Keep the one value that was in force at the start of the memory, and what came after it.
    while len(history) > 1 and history[1][0] <= now_mono - memory_s:
        history.popleft()


def in_window(history: deque[tuple[float, _V]], start_mono: float, end_mono: float) -> list[_V]:
    """The values of a (since, value) history in force at some time in [start, end]."""
    held: list[_V] = []
    for since, value in history:
        if since <= start_mono:
            held = [value]
        elif since <= end_mono:
            held.append(value)
    return held


def _higher(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def triple(values: LineValues | None) -> tuple[float, float, float] | None:
    if values is None or values[0] is None or values[1] is None or values[2] is None:
        return None
    return (values[0], values[1], values[2])
