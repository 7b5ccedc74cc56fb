"""Readings and charger statuses folded into one `SiteSnapshot` for the allocator.

This is where the controller's memory lives, so that `allocate` needs none: the latest meter lists,
every charger's latest status, the lines each car has been seen drawing on, when each car was last
started or paused (rotation), and cloud-lowered fuse limits. Time comes in as arguments.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.allocation import (
    Allocation,
    Charger,
    Fuse,
    Grid,
    Meter,
    Policy,
    SiteSnapshot,
    Vehicle,
)
from controller.settings import ChargerSection, SiteSettings
from controller.site.meter import MeterTracker
from drivers.contracts import ChargerEvent, ChargerStatus, ConnectorState, Line, MeterReading

# A terminal carrying less than this is not counted as a line the car draws on.
ACTIVE_LINE_THRESHOLD_A = 1.0
START_MEMORY = timedelta(hours=1)

_WANTS_ENERGY = frozenset(
    {ConnectorState.CHARGING, ConnectorState.SUSPENDED_EV, ConnectorState.SUSPENDED_EVSE}
)
_HAS_CAR = frozenset(
    {
        ConnectorState.PREPARING,
        ConnectorState.CHARGING,
        ConnectorState.SUSPENDED_EV,
        ConnectorState.SUSPENDED_EVSE,
        ConnectorState.FINISHING,
    }
)


@dataclass(slots=True)
class _Track:
    """Everything remembered about one charging point."""

    config: ChargerSection
    status: ChargerStatus | None = None
    active_lines: tuple[Line, ...] | None = None
    charging_since: datetime | None = None
    waiting_since: datetime | None = None
    start_times: deque[datetime] = field(default_factory=deque)
    last_state: str = "idle"


def policy_from_settings(settings: SiteSettings) -> Policy:
    p = settings.policy
    interval_s = settings.meter.full_list_interval_s if settings.meter is not None else 10.0
    return Policy(
        safety_margin_a=p.safety_margin_a,
        min_current_a=p.min_current_a,
        rotation_period_s=p.rotation_period_s,
        deadband_a=p.deadband_a,
        max_starts_per_hour=p.max_starts_per_hour,
        meter_stale_after_s=p.meter_stale_intervals * interval_s,
    )


class SiteState:
    def __init__(self, settings: SiteSettings, *, charger_silent_after_s: float = 30.0) -> None:
        self._settings = settings
        self._grid = Grid(settings.grid.type, settings.grid.nominal_voltage_v)
        self._policy = policy_from_settings(settings)
        self._ratings_a = {f.id: f.limit_a for f in settings.fuses}
        self._limits_a: dict[str, float] = dict(self._ratings_a)
        self._fuses = tuple(settings.fuses)
        self._tracks = {c.id: _Track(c) for c in settings.chargers}
        self._charger_silent_after_s = charger_silent_after_s
        self._meter_fuse = settings.meter.fuse if settings.meter is not None else None
        # Aidon/Kaifa power frames are net of export; a rise is spread at the single-phase voltage.
        self._meter = MeterTracker(phase_voltage_v=settings.grid.nominal_voltage_v)
        self.meter_readings = 0
        # EV power the setpoints allowed when the meter's last full list was taken (see snapshot).
        self._ev_power_at_full_w = 0.0
        self._full_lists_seen = 0

    # ------------------------------------------------------------------------------------ inputs

    def ingest_meter(self, reading: MeterReading) -> None:
        self.meter_readings += 1
        self._meter.ingest(reading)

    def ingest_charger(self, event: ChargerEvent) -> bool:
        """Fold one driver event in; True when it changes what the allocator should see."""
        if not isinstance(event, ChargerStatus):
            return False
        track = self._tracks.get(event.charger_id)
        if track is None:
            return False
        track.status = event
        if event.state not in _HAS_CAR:
            track.active_lines = None
        else:
            learned = _active_lines(track.config.lines, event.measured_current_a, self._grid.type)
            if learned is not None:
                track.active_lines = learned
        return True

    def set_fuse_limit(self, fuse_id: str, limit_a: float | None) -> float:
        """Lower (or restore, with None) a fuse's limit at run time; never above its rating."""
        rating_a = self._ratings_a[fuse_id]
        applied = rating_a if limit_a is None else max(0.0, min(limit_a, rating_a))
        self._limits_a[fuse_id] = applied
        return applied

    # --------------------------------------------------------------------------------- snapshots

    @property
    def meter_last_reading_mono(self) -> float | None:
        return self._meter.last_reading_mono

    def status(self, charger_id: str) -> ChargerStatus | None:
        return self._tracks[charger_id].status

    def charger_ids(self) -> tuple[str, ...]:
        return tuple(self._tracks)

    def snapshot(
        self, now_mono: float, now_utc: datetime, setpoint_a: Callable[[str], float | None]
    ) -> SiteSnapshot:
        fuses = tuple(Fuse(f.id, self._limits_a[f.id], f.parent, f.base_load_a) for f in self._fuses)
        meters: tuple[Meter, ...] = ()
        if self._meter_fuse is not None:
            ev_power_w = self._ev_power_w(setpoint_a)
            if self._meter.full_lists != self._full_lists_seen:
                self._full_lists_seen = self._meter.full_lists
                self._ev_power_at_full_w = ev_power_w
            # What the setpoints allowed the cars to add since the full list is not new base load.
            view = self._meter.view(now_mono, explained_rise_w=ev_power_w - self._ev_power_at_full_w)
            meters = (Meter(self._meter_fuse, view.currents_a, view.age_s),)
        chargers = tuple(
            self._charger(track, now_mono, setpoint_a(cid)) for cid, track in self._tracks.items()
        )
        return SiteSnapshot(
            now=now_utc, grid=self._grid, fuses=fuses, chargers=chargers, meters=meters, policy=self._policy
        )

    def _ev_power_w(self, setpoint_a: Callable[[str], float | None]) -> float:
        """Most power the chargers may draw at their current setpoints (unknown: their maximum)."""
        volts = self._grid.nominal_voltage_v
        total_w = 0.0
        for charger_id, track in self._tracks.items():
            amps = setpoint_a(charger_id)
            amps = track.config.max_a if amps is None else amps
            lines = len(track.config.lines)
            if self._grid.type == "IT":
                total_w += amps * volts * (math.sqrt(3) if lines == 3 else 1.0)
            else:
                total_w += amps * volts * lines
        return total_w

    def _charger(self, track: _Track, now_mono: float, setpoint_a: float | None) -> Charger:
        cfg = track.config
        status = track.status
        online = status is not None and status.online and not self._silent(status, now_mono)
        vehicle: Vehicle | None = None
        if status is not None and status.state in _HAS_CAR:
            vehicle = Vehicle(
                connected=True,
                wants_energy=_wants_energy(status),
                active_lines=track.active_lines,
                drawing_a=_drawing(cfg.lines, status.measured_current_a, self._grid.type),
                charging_since=track.charging_since,
                waiting_since=track.waiting_since,
                start_times=tuple(track.start_times),
            )
        return Charger(
            id=cfg.id,
            fuse=cfg.fuse,
            lines=tuple(cfg.lines),
            max_a=cfg.max_a,
            min_a=cfg.min_a,
            setpoint_a=setpoint_a,
            vehicle=vehicle,
            safe_current_a=cfg.safe_current_a,
            online=online,
        )

    def _silent(self, status: ChargerStatus, now_mono: float) -> bool:
        # A charger with a car sends MeterValues every sample interval; one that stops while it may
        # be charging is budgeted at its maximum until it answers (DESIGN.md §5).
        if status.state not in _WANTS_ENERGY or status.last_seen is None:
            return False
        return now_mono - status.last_seen.monotonic_s > self._charger_silent_after_s

    # ------------------------------------------------------------------------------- decisions

    def note_allocation(self, allocation: Allocation, now_utc: datetime) -> None:
        """Remember starts and pauses: the rotation and the per-hour start limit read them back."""
        horizon = now_utc - START_MEMORY
        for charger_id, decision in allocation.chargers.items():
            track = self._tracks.get(charger_id)
            if track is None:
                continue
            while track.start_times and track.start_times[0] < horizon:
                track.start_times.popleft()
            previous, state = track.last_state, decision.state
            track.last_state = state
            if state == previous:
                continue
            if state == "charging":
                track.charging_since = now_utc
                track.waiting_since = None
                track.start_times.append(now_utc)
            elif state == "paused":
                track.waiting_since = now_utc
                track.charging_since = None
            else:
                track.charging_since = None
                track.waiting_since = None

    def limits(self) -> Mapping[str, float]:
        return dict(self._limits_a)


def _wants_energy(status: ChargerStatus) -> bool:
    if status.state in _WANTS_ENERGY:
        return True
    # Plugged in with a transaction already running (authorised), not yet drawing.
    return status.state is ConnectorState.PREPARING and status.transaction_id is not None


def _active_lines(
    lines: tuple[Line, ...], measured: tuple[float | None, float | None, float | None], grid: str
) -> tuple[Line, ...] | None:
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


def _drawing(
    lines: tuple[Line, ...], measured: tuple[float | None, float | None, float | None], grid: str
) -> tuple[float | None, float | None, float | None]:
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
