"""Readings and charger statuses folded into one `SiteSnapshot` for the allocator.

This is where the controller's memory lives, so that `allocate` needs none: the latest meter lists,
every charger's latest status, the lines each car has been seen drawing on, when each car was last
started or paused (rotation), and cloud-lowered fuse limits. Time comes in as arguments.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TypeVar

from controller.allocation import (
    Allocation,
    Charger,
    Fuse,
    Grid,
    Meter,
    Policy,
    SiteSnapshot,
    Vehicle,
    base_at_meters,
)
from controller.allocation.model import ROTATION
from controller.settings import ChargerSection, SiteSettings
from controller.site.meter import MeterTracker
from controller.site.three_wire import AronInputs, ThreeWireEstimator, ev_phasors
from drivers.contracts import LINES, ChargerEvent, ChargerStatus, ConnectorState, Line, MeterReading

# A terminal carrying less than this is not counted as a line the car draws on.
ACTIVE_LINE_THRESHOLD_A = 1.0
# A car follows a new limit within 5 s (IEC 61851-1); a charger reports its currents every ~10 s.
# In between, the meter already sees the new current while the charger's report does not.
CAR_RESPONSE_S = 5.0
FOLLOW_WINDOW_S = 20.0
HOLD_LIMIT_S = 30.0
# A car raised this long before a meter list may not show in it yet: it follows within 5 s of the
# charger applying its new limit (IEC 61851-1), and the charger takes a second or two to apply it.
LIST_LAG_S = 8.0
# The setpoints' power is looked up back to a response time before the oldest snapshot held.
EV_POWER_MEMORY_S = HOLD_LIMIT_S + 2 * CAR_RESPONSE_S
SETPOINT_MEMORY_S = 60.0
START_MEMORY = timedelta(hours=1)
_V = TypeVar("_V")
# Why a charging car was paused when the allocator said rotation but nobody took its place.
ROOM = "room"
# A car paused this soon after it was started has not had its turn: it keeps its place in the queue.
BRIEF_START = timedelta(seconds=60)

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
    paused_at: datetime | None = None
    queued_since: datetime | None = None  # waiting_since before the latest start
    pause_reason: str | None = None  # the allocator's reason while the car is paused
    start_times: deque[datetime] = field(default_factory=deque)
    measured_mono: float | None = None  # when the reported currents last changed
    setpoint_seen: float | None = None
    setpoint_before: float | None = None  # the value before the latest change
    setpoint_changed_mono: float | None = None
    # (since, value) of the setpoints seen over the last SETPOINT_MEMORY_S, and the one before.
    setpoint_history: deque[tuple[float, float | None]] = field(default_factory=deque)


@dataclass(frozen=True, slots=True)
class _Consistent:
    """The latest snapshot whose meter reading and charger reports tell the same story, with the
    meter at its full list as read (no power-frame estimate on top) and that list's time and power:
    a held base load is carried forward from the list, as the live estimate is."""

    snapshot: SiteSnapshot
    list_mono: float
    power_w: float | None


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
        self._root_fuse = next(f.id for f in settings.fuses if f.parent is None)
        # Aidon/Kaifa power frames are net of export; a rise is spread at the single-phase voltage.
        self._meter = MeterTracker(phase_voltage_v=settings.grid.nominal_voltage_v)
        # A three-wire meter's IL2, worked out from its own measurements (IT only).
        self._three_wire = ThreeWireEstimator() if settings.grid.type == "IT" else None
        self.meter_readings = 0
        # The EV power the setpoints allowed over the last minute (see _with_meter).
        self._ev_power_history: deque[tuple[float, float]] = deque()
        self._consistent: _Consistent | None = None
        self._held_base: tuple[float, float, float] | None = None
        self.held_cycles = 0
        # True while the last snapshot held the base load: its allocation may lower setpoints (the
        # held base is no lower than the readings' truth) but must not raise any (see ControlLoop).
        self.holding = False

    # ------------------------------------------------------------------------------------ inputs

    def ingest_meter(self, reading: MeterReading) -> None:
        self.meter_readings += 1
        derived_a = None
        inputs = None if self._three_wire is None else AronInputs.from_reading(reading)
        if inputs is not None and self._three_wire is not None:
            estimate = self._three_wire.estimate(inputs, self._ev_phasors(), reading.received.monotonic_s)
            derived_a = None if estimate is None else estimate.i2_a
        self._meter.ingest(reading, derived_l2_a=derived_a)

    def _ev_phasors(self) -> tuple[complex, complex]:
        """The cars' line phasors (L1, L3) as their chargers last reported them."""
        loads = []
        for track in self._tracks.values():
            status = track.status
            if status is None or status.state not in _HAS_CAR:
                continue
            lines = track.active_lines or tuple(track.config.lines)
            drawn = _drawing(track.config.lines, status.measured_current_a, self._grid.type)
            values = [drawn[LINES.index(line)] for line in lines]
            known = [v for v in values if v is not None]
            if known:
                loads.append((lines, min(known)))
        return ev_phasors(loads)

    def ingest_charger(self, event: ChargerEvent) -> bool:
        """Fold one driver event in; True when it changes what the allocator should see."""
        if not isinstance(event, ChargerStatus):
            return False
        track = self._tracks.get(event.charger_id)
        if track is None:
            return False
        previous = track.status
        if event.last_seen is not None and (
            previous is None or previous.measured_current_a != event.measured_current_a
        ):
            track.measured_mono = event.last_seen.monotonic_s
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
        for cid, track in self._tracks.items():
            value = setpoint_a(cid)
            if value != track.setpoint_seen:
                self._note_setpoint(track, track.setpoint_seen, value, now_utc)
                track.setpoint_before = track.setpoint_seen
                track.setpoint_seen = value
                track.setpoint_changed_mono = now_mono
                _remember(track.setpoint_history, now_mono, value, SETPOINT_MEMORY_S)
        full_mono = self._meter.last_full_mono
        chargers = tuple(
            self._charger(track, now_mono, track.setpoint_seen, full_mono) for track in self._tracks.values()
        )
        snapshot = SiteSnapshot(
            now=now_utc, grid=self._grid, fuses=fuses, chargers=chargers, policy=self._policy
        )
        self.holding = False
        if self._meter_fuse is None:
            # DESIGN §7.5: a site without a meter runs every charger at its safe current. A meter on
            # the main fuse that is never read is exactly that to the allocator (limited_by failsafe).
            return replace(snapshot, meters=(Meter(self._root_fuse, (None, None, None), None),))
        return self._with_meter(snapshot, now_mono, self._ev_power_w(setpoint_a))

    def _with_meter(self, snapshot: SiteSnapshot, now_mono: float, ev_power_w: float) -> SiteSnapshot:
        """The snapshot with the meter, its base load held while the readings cannot be matched.

        The meter sees a car's new current within seconds; its charger reports it up to a report
        interval later. Until every raised charger has reported, measured less reported counts the
        cars' rise as base load - and on IT with an unmetered L2 twice over (Kirchhoff) - so the site
        pauses the cars it just started and starts them again once the reports arrive. Meanwhile the
        base load of the last snapshot without such a mismatch is held, raised by any rise of the
        meter's total power that the setpoints do not explain (applied to every line, the safe
        side), for at most HOLD_LIMIT_S. While it is held nobody gets more current (`holding`): the
        hold only spares cars a pause the readings do not support. A base-load rise hidden behind a
        car that did not follow its last increase is the remaining exposure: at most that increase,
        until its charger reports.
        """
        assert self._meter_fuse is not None
        history = self._ev_power_history
        _remember(history, now_mono, ev_power_w, EV_POWER_MEMORY_S)
        full_mono = self._meter.last_full_mono
        explained_w = 0.0 if full_mono is None else self._ev_change_w(full_mono, now_mono)
        view = self._meter.view(now_mono, explained_rise_w=explained_w)
        meter = Meter(self._meter_fuse, view.currents_a, view.age_s)
        snapshot = replace(snapshot, meters=(meter,))
        if view.age_s is None:
            self._consistent = None
            return snapshot
        aligned = None if full_mono is None else self._aligned_base(snapshot, full_mono)
        if aligned is not None:
            meter = replace(meter, base_a=aligned)
            snapshot = replace(snapshot, meters=(meter,))
        mismatched = any(self._unreported_rise(track, now_mono) for track in self._tracks.values())
        if not mismatched:
            assert full_mono is not None
            as_read = replace(meter, currents_a=self._meter.full_currents_a, base_a=None)
            aligned_read = self._aligned_base(replace(snapshot, meters=(as_read,)), full_mono)
            self._consistent = _Consistent(
                replace(snapshot, meters=(replace(as_read, base_a=aligned_read),)),
                full_mono,
                self._meter.full_power_w,
            )
            self._held_base = None
            return snapshot
        consistent = self._consistent
        if consistent is None or now_mono - consistent.list_mono > HOLD_LIMIT_S:
            return snapshot
        if self._held_base is None:
            (was,) = consistent.snapshot.meters
            self._held_base = _triple(was.base_a) or base_at_meters(consistent.snapshot)[self._meter_fuse]
        rise_w = 0.0
        latest_w = self._meter.latest_power_w
        if latest_w is not None and consistent.power_w is not None:
            explained_w = self._ev_change_w(consistent.list_mono, now_mono)
            rise_w = max(0.0, latest_w - consistent.power_w - explained_w)
        rise_a = rise_w / self._grid.nominal_voltage_v
        held = self._held_base
        base = (held[0] + rise_a, held[1] + rise_a, held[2] + rise_a)
        self.held_cycles += 1
        self.holding = True
        return replace(snapshot, meters=(replace(meter, base_a=base),))

    def _aligned_base(self, snapshot: SiteSnapshot, list_mono: float) -> tuple[float, float, float] | None:
        """The base load as of the meter's last full list, when a car's report may be newer than it.

        The list's currents are what the meter saw when it was taken; a charger's report is not
        taken with it. One that came after it may show a car raised since (the demo garage ran
        3-5 % over its main fuse for 10-20 s reading the base low by such raises); one that came
        long before may show a current the car has left since (a car lowered and then paused, its
        last report still at the old current: requirement (a)'s fuse stayed 1.6 A over for 10 s).
        Against the list, each car is taken at no more than the lowest setpoint in force in the
        LIST_LAG_S before it - a car draws no more than its limit once it has followed, and the
        lower value is the one that leaves less headroom. None when no car needs it (the
        allocator's own reading is the same) or when the list is unusable (the allocator then
        falls back to safe currents, and a base given here would hide that).
        """
        (meter,) = snapshot.meters
        unknown = sum(1 for value in meter.currents_a if value is None)
        if unknown > (1 if self._grid.type == "IT" else 0):
            return None
        chargers = []
        capped_any = False
        for charger in snapshot.chargers:
            track = self._tracks[charger.id]
            vehicle = charger.vehicle
            now_a = track.setpoint_seen
            floor_a = _floor(track.setpoint_history, list_mono - LIST_LAG_S, list_mono)
            if vehicle is not None and now_a is not None and floor_a is not None:
                drawing = _capped(vehicle.drawing_a, floor_a)
                if drawing != vehicle.drawing_a:
                    charger = replace(charger, vehicle=replace(vehicle, drawing_a=drawing))
                    capped_any = True
            chargers.append(charger)
        if not capped_any:
            return None
        assert self._meter_fuse is not None
        return base_at_meters(replace(snapshot, chargers=tuple(chargers)))[self._meter_fuse]

    def _ev_change_w(self, seen_mono: float, now_mono: float) -> float:
        """How much the setpoints changed the cars' power between a reading taken at `seen_mono` and
        now: what a change of the meter's total power since that reading owes to the controller.

        A reading taken within a response time (5 s) of a change may or may not show it; at the
        reading the lowest value of the 5 s before it is taken, as the base load read from that
        list takes each car (`_aligned_base`, `_capped`): a raise then counts as made after the
        reading - taking the cars' rise for new base load paused the cars just started - and a
        decrease as shown in it, not counted twice (a rotation's turn read a 30 A base rise out of
        that). Now, a raise counts at once and a decrease only once the cars have had the response
        time to follow it; before that the meter still shows them drawing. Without the decreases,
        a base-load step that made the daemon lower the cars was netted against their fall and
        hidden until the next full list: the daemon raised the cars into the step and ran the fuse
        28 % over for 20 s.
        """
        history = self._ev_power_history
        if not history:
            return 0.0
        before_w = min(
            [_in_force(history, seen_mono - CAR_RESPONSE_S)]
            + [p for t, p in history if seen_mono - CAR_RESPONSE_S < t <= seen_mono]
        )
        now_w = max(
            [_in_force(history, now_mono - CAR_RESPONSE_S)]
            + [p for t, p in history if now_mono - CAR_RESPONSE_S < t <= now_mono]
        )
        return now_w - before_w

    @staticmethod
    def _unreported_rise(track: _Track, now_mono: float) -> bool:
        """A raised (or started) car whose charger has not reported since it could have followed."""
        status, before, value = track.status, track.setpoint_before, track.setpoint_seen
        if status is None or status.state not in _HAS_CAR or before is None or value is None:
            return False
        changed = track.setpoint_changed_mono
        if value <= before or changed is None or now_mono - changed >= FOLLOW_WINDOW_S:
            return False
        return track.measured_mono is None or track.measured_mono < changed + CAR_RESPONSE_S

    def _ev_power_w(self, setpoint_a: Callable[[str], float | None]) -> float:
        """The power the setpoints allow the cars that say they are charging.

        Its rise is what the controller's own increases may explain of a rise in the meter's total
        power. Only cars whose charger reports them charging count: a car that does not take its
        start (full, or its own timer) reports SuspendedEV at once, and counting its setpoint would
        hide as much base-load rise behind it. An unknown setpoint counts as none, for the same
        reason: what is explained must not be more than the cars can be doing.
        """
        volts = self._grid.nominal_voltage_v
        total_w = 0.0
        for charger_id, track in self._tracks.items():
            status = track.status
            if status is None or not status.online or status.state is not ConnectorState.CHARGING:
                continue
            amps = setpoint_a(charger_id) or 0.0
            lines = len(track.config.lines)
            if self._grid.type == "IT":
                total_w += amps * volts * (math.sqrt(3) if lines == 3 else 1.0)
            else:
                total_w += amps * volts * lines
        return total_w

    def _charger(
        self, track: _Track, now_mono: float, setpoint_a: float | None, meter_full_mono: float | None
    ) -> Charger:
        cfg = track.config
        status = track.status
        online = status is not None and status.online and not self._silent(status, now_mono)
        vehicle: Vehicle | None = None
        given_a = setpoint_a
        if status is not None and status.state in _HAS_CAR:
            drawing = _drawing(cfg.lines, status.measured_current_a, self._grid.type)
            before = track.setpoint_before
            if setpoint_a is not None and before is not None and self._unanswered(track, status, now_mono):
                if setpoint_a < before:
                    # A decrease: a meter list taken since may already see the car lower than its
                    # report says; taking the lower value leaves less headroom, the safe side. A list
                    # taken before the decrease saw the car at its report: capping the car against it
                    # counted the decrease again as new base load, and every cycle until the next
                    # list shed more, until every car was paused.
                    changed = track.setpoint_changed_mono
                    if meter_full_mono is None or changed is None or meter_full_mono >= changed:
                        drawing = _capped(drawing, setpoint_a)
                elif before > 0:
                    # An increase the report does not show yet: the report still answers the old
                    # setpoint, so that is the one to judge it against (not a tapering car).
                    given_a = before
            vehicle = Vehicle(
                connected=True,
                wants_energy=_wants_energy(status),
                active_lines=track.active_lines,
                drawing_a=drawing,
                charging_since=track.charging_since,
                waiting_since=track.waiting_since,
                paused_at=track.paused_at,
                start_times=tuple(track.start_times),
            )
        return Charger(
            id=cfg.id,
            fuse=cfg.fuse,
            lines=tuple(cfg.lines),
            max_a=cfg.max_a,
            min_a=cfg.min_a,
            setpoint_a=given_a,
            vehicle=vehicle,
            safe_current_a=cfg.safe_current_a,
            online=online,
        )

    @staticmethod
    def _unanswered(track: _Track, status: ChargerStatus, now_mono: float) -> bool:
        """Is the reported current older than the car's answer to its latest setpoint?

        A car follows within ~5 s; a charger reports every ~10 s; the meter sees the change first.
        Counting the car at its new setpoint during that window would hide a base-load rise behind a
        car that did not follow an increase, so only decreases are taken at once (see `_charger`).
        """
        changed = track.setpoint_changed_mono
        if status.state is not ConnectorState.CHARGING or changed is None:
            return False
        if now_mono - changed >= FOLLOW_WINDOW_S:
            return False
        return track.measured_mono is None or track.measured_mono < changed + CAR_RESPONSE_S

    def _silent(self, status: ChargerStatus, now_mono: float) -> bool:
        # A charger with a car sends MeterValues every sample interval; one that stops while it may
        # be charging is budgeted at its maximum until it answers (DESIGN.md §5).
        if status.state not in _WANTS_ENERGY or status.last_seen is None:
            return False
        return now_mono - status.last_seen.monotonic_s > self._charger_silent_after_s

    # ------------------------------------------------------------------------------- decisions

    @staticmethod
    def _note_setpoint(track: _Track, old: float | None, new: float | None, now_utc: datetime) -> None:
        """A car starts or pauses when its setpoint on the charger does, not when an allocation says
        so: a decision the dispatcher has not sent yet (increases come in paced waves) is no start.

        Only a restart after a pause for rotation counts against `max_starts_per_hour`: that is the
        switching the controller chooses. A pause forced by a fuse line is safety; counting the
        restart after it let a few minutes of tight readings use up a car's starts and leave it
        waiting for the rest of the hour while current was free. The restart hold (`paused_at`)
        keeps such pauses from repeating every few seconds.

        A car paused within BRIEF_START of being started has not had its turn (at a rotation's turn
        the next cars were started and paused again before they drew anything): it keeps its place
        in the queue and the start is not counted. Queueing it anew from the pause put cars that had
        just had their turn before it, and four of 24 waited 900 s against a 660 s bound.
        """
        was_on = bool(old)
        is_on = bool(new)
        if is_on and not was_on:
            if track.pause_reason == ROTATION:
                track.start_times.append(now_utc)
            track.queued_since = track.waiting_since
            track.charging_since = now_utc
            track.waiting_since = None
            track.pause_reason = None
        elif was_on and not is_on:
            started = track.charging_since
            brief = started is not None and now_utc - started < BRIEF_START
            if brief and track.start_times and track.start_times[-1] == started:
                track.start_times.pop()
            track.charging_since = None
            track.waiting_since = track.queued_since if brief and track.queued_since else now_utc
            track.queued_since = None
            track.paused_at = now_utc

    def note_allocation(self, allocation: Allocation, now_utc: datetime) -> None:
        """Forget starts older than an hour; mark cars that start waiting or leave; remember why a
        charging car was paused, for as long as it waits.

        The allocator calls a pause `rotation` whenever the car's minimum would fit alone. A car it
        pauses so that a waiting car can charge has yielded its place: its restart is a rotation
        start. One it pauses while nobody waiting is started in its place was paused because the
        room shrank (a base load rose, the meter froze): the fuse's doing, like a pause a fuse line
        forces, and its restart is not counted against `max_starts_per_hour`. Counting those left
        four of six cars in the fault-drill garage waiting at `start_limit` for twenty minutes while
        current was free.
        """
        horizon = now_utc - START_MEMORY
        taken_over = any(
            decision.state == "charging" and not self._tracks[cid].setpoint_seen
            for cid, decision in allocation.chargers.items()
            if cid in self._tracks
        )
        for charger_id, decision in allocation.chargers.items():
            track = self._tracks.get(charger_id)
            if track is None:
                continue
            while track.start_times and track.start_times[0] < horizon:
                track.start_times.popleft()
            if decision.state == "idle":
                track.charging_since = None
                track.waiting_since = None
                track.queued_since = None
                track.paused_at = None
                track.pause_reason = None
            elif decision.state == "paused":
                if track.setpoint_seen:
                    # The decision that pauses a charging car says why it stops.
                    reason = decision.limited_by
                    track.pause_reason = ROOM if reason == ROTATION and not taken_over else reason
                elif track.pause_reason is None:
                    track.pause_reason = decision.limited_by
                if track.waiting_since is None and not track.setpoint_seen:
                    track.waiting_since = now_utc

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


def _in_force(history: deque[tuple[float, float]], at_mono: float) -> float:
    """The value of a (since, value) history at `at_mono`; its oldest value before it begins."""
    value = history[0][1]
    for since, candidate in history:
        if since > at_mono:
            break
        value = candidate
    return value


def _remember(history: deque[tuple[float, _V]], now_mono: float, value: _V, memory_s: float) -> None:
    history.append((now_mono, value))
    # Keep the one value that was in force at the start of the memory, and what came after it.
    while len(history) > 1 and history[1][0] <= now_mono - memory_s:
        history.popleft()


def _floor(history: deque[tuple[float, float | None]], start_mono: float, end_mono: float) -> float | None:
    """The lowest setpoint in force at some time in [start, end]; None when one of them was unknown
    or there is no history."""
    in_force: list[float | None] = []
    for since, value in history:
        if since <= start_mono:
            in_force = [value]
        elif since <= end_mono:
            in_force.append(value)
    if not in_force or any(value is None for value in in_force):
        return None
    return min(value for value in in_force if value is not None)


def _triple(
    values: tuple[float | None, float | None, float | None] | None,
) -> tuple[float, float, float] | None:
    if values is None or values[0] is None or values[1] is None or values[2] is None:
        return None
    return (values[0], values[1], values[2])


def _capped(
    drawing: tuple[float | None, float | None, float | None], current_a: float
) -> tuple[float | None, float | None, float | None]:
    """The measured current per line, no more than `current_a` (unknown lines stay unknown)."""
    return (
        None if drawing[0] is None else min(drawing[0], current_a),
        None if drawing[1] is None else min(drawing[1], current_a),
        None if drawing[2] is None else min(drawing[2], current_a),
    )


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
