"""Readings, charger statuses and what the dispatcher knows folded into one `SiteSnapshot`.

This is where the controller's memory lives, so that `allocate` needs none. Its parts:

- `tracks.py`: per charging point, the latest status, the lines its car draws on, the setpoints it
  held over the last minute;
- `base_load.py`: the meter's view of the base load (between full lists, against lagging reports,
  on three-wire meters);
- `rotation_memory.py`: when each car was started, paused and began waiting;
- here: each charger's `Drive` (what it may be drawing, from the dispatcher's `Budget`, or offline,
  silent, not driven) and cloud-lowered fuse limits.

Time comes in as arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from controller.allocation import Allocation, Charger, Drive, Fuse, Grid, Meter, Policy, SiteSnapshot, Vehicle
from controller.dispatch import Budget
from controller.settings import SiteSettings
from controller.site.base_load import BaseLoadEstimator
from controller.site.rotation_memory import RotationMemory
from controller.site.tracks import HAS_CAR, WANTS_ENERGY, ChargerTrack, capped
from drivers.contracts import ChargerEvent, ChargerStatus, ConnectorState, MeterReading


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
        self._grid = Grid(settings.grid.type, settings.grid.nominal_voltage_v)
        self._policy = policy_from_settings(settings)
        self._ratings_a = {f.id: f.limit_a for f in settings.fuses}
        self._limits_a: dict[str, float] = dict(self._ratings_a)
        self._fuses = tuple(settings.fuses)
        self._tracks = {c.id: ChargerTrack(c) for c in settings.chargers}
        self._rotation = RotationMemory(tuple(self._tracks))
        self._charger_silent_after_s = charger_silent_after_s
        self._root_fuse = next(f.id for f in settings.fuses if f.parent is None)
        self._base: BaseLoadEstimator | None = None
        if settings.meter is not None:
            below = _below(settings, settings.meter.fuse)
            tracks = {cid: t for cid, t in self._tracks.items() if t.config.fuse in below}
            self._base = BaseLoadEstimator(self._grid, settings.meter.fuse, tracks)

    # ------------------------------------------------------------------------------------ inputs

    @property
    def meter_readings(self) -> int:
        return 0 if self._base is None else self._base.readings

    @property
    def holding(self) -> bool:
        """The last snapshot held the base load: its allocation must raise nobody."""
        return self._base is not None and self._base.holding

    @property
    def held_cycles(self) -> int:
        return 0 if self._base is None else self._base.held_cycles

    @property
    def base_load(self) -> BaseLoadEstimator | None:
        """The meter's estimator (None without a meter)."""
        return self._base

    @property
    def meter_last_reading_mono(self) -> float | None:
        return None if self._base is None else self._base.last_reading_mono

    def ingest_meter(self, reading: MeterReading) -> None:
        if self._base is not None:
            self._base.ingest(reading)

    def ingest_charger(self, event: ChargerEvent) -> bool:
        """Fold one driver event in; True when it changes what the allocator should see."""
        if not isinstance(event, ChargerStatus):
            return False
        track = self._tracks.get(event.charger_id)
        if track is None:
            return False
        track.ingest(event, self._grid.type)
        return True

    def set_fuse_limit(self, fuse_id: str, limit_a: float | None) -> float:
        """Lower (or restore, with None) a fuse's limit at run time; never above its rating."""
        rating_a = self._ratings_a[fuse_id]
        applied = rating_a if limit_a is None else max(0.0, min(limit_a, rating_a))
        self._limits_a[fuse_id] = applied
        return applied

    def limits(self) -> Mapping[str, float]:
        return dict(self._limits_a)

    def status(self, charger_id: str) -> ChargerStatus | None:
        return self._tracks[charger_id].status

    def charger_ids(self) -> tuple[str, ...]:
        return tuple(self._tracks)

    def space(self, charger_id: str) -> str | None:
        """The charger's parking space label (site.toml `space`)."""
        return self._tracks[charger_id].config.space

    # --------------------------------------------------------------------------------- snapshots

    def snapshot(self, now_mono: float, now_utc: datetime, budgets: Mapping[str, Budget]) -> SiteSnapshot:
        """`budgets`: the dispatcher's, for the chargers it drives (any other is `not_driven`)."""
        fuses = tuple(Fuse(f.id, self._limits_a[f.id], f.parent, f.base_load_a) for f in self._fuses)
        for cid, track in self._tracks.items():
            budget = budgets.get(cid)
            old = track.setpoint_seen
            if track.note_setpoint(None if budget is None else budget.setpoint_a, now_mono):
                self._rotation.note_setpoint(cid, old, track.setpoint_seen, now_utc)
        full_mono = None if self._base is None else self._base.last_full_mono
        chargers = tuple(
            self._charger(track, now_mono, budgets.get(cid), full_mono) for cid, track in self._tracks.items()
        )
        snapshot = SiteSnapshot(
            now=now_utc, grid=self._grid, fuses=fuses, chargers=chargers, policy=self._policy
        )
        if self._base is None:
            # DESIGN §7.5: a site without a meter runs every charger at its safe current. A meter on
            # the main fuse that is never read is exactly that to the allocator (limited_by failsafe).
            return replace(snapshot, meters=(Meter(self._root_fuse, (None, None, None), None),))
        return self._base.with_meter(snapshot, now_mono)

    def _charger(
        self, track: ChargerTrack, now_mono: float, budget: Budget | None, meter_full_mono: float | None
    ) -> Charger:
        cfg = track.config
        status = track.status
        drive, setpoint_a, may_draw_a = self._drive(status, budget, now_mono, cfg.max_a)
        vehicle: Vehicle | None = None
        given_a = setpoint_a
        if status is not None and status.state in HAS_CAR:
            drawing = track.drawing(self._grid.type)
            before = track.setpoint_before
            if setpoint_a is not None and before is not None and track.unanswered(now_mono):
                if setpoint_a < before:
                    # A decrease: a meter list taken since may already see the car lower than its
                    # report says; taking the lower value leaves less headroom, the safe side. A list
                    # taken before the decrease saw the car at its report: capping the car against it
                    # counted the decrease again as new base load, and every cycle until the next
                    # list shed more, until every car was paused.
                    changed = track.setpoint_changed_mono
                    if meter_full_mono is None or changed is None or meter_full_mono >= changed:
                        drawing = capped(drawing, setpoint_a)
                elif before > 0:
                    # An increase the report does not show yet: the report still answers the old
                    # setpoint, so that is the one to judge it against (not a tapering car).
                    given_a = before
            turns = self._rotation.turns(cfg.id)
            vehicle = Vehicle(
                connected=True,
                wants_energy=_wants_energy(status),
                active_lines=track.active_lines,
                drawing_a=drawing,
                charging_since=turns.charging_since,
                waiting_since=turns.waiting_since,
                paused_at=turns.paused_at,
                start_times=tuple(turns.start_times),
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
            drive=drive,
            may_draw_a=may_draw_a,
        )

    def _drive(
        self, status: ChargerStatus | None, budget: Budget | None, now_mono: float, max_a: float
    ) -> tuple[Drive, float | None, float | None]:
        """(drive, setpoint, what it may draw) of one charger."""
        if budget is None:
            return Drive.NOT_DRIVEN, None, max_a
        if status is None or not status.online or self._silent(status, now_mono):
            return Drive.OFFLINE, budget.setpoint_a, max_a
        return budget.drive, budget.setpoint_a, min(max_a, budget.may_draw_a)

    def _silent(self, status: ChargerStatus, now_mono: float) -> bool:
        # A charger with a car sends MeterValues every sample interval; one that stops while it may
        # be charging is budgeted at its maximum until it answers (DESIGN.md §5).
        if status.state not in WANTS_ENERGY or status.last_seen is None:
            return False
        return now_mono - status.last_seen.monotonic_s > self._charger_silent_after_s

    def note_allocation(self, allocation: Allocation, now_utc: datetime) -> None:
        setpoints = {cid: track.setpoint_seen for cid, track in self._tracks.items()}
        self._rotation.note_allocation(allocation, setpoints, now_utc)


def _wants_energy(status: ChargerStatus) -> bool:
    if status.state in WANTS_ENERGY:
        return True
    # Plugged in with a transaction already running (authorised), not yet drawing.
    return status.state is ConnectorState.PREPARING and status.transaction_id is not None


def _below(settings: SiteSettings, fuse_id: str) -> frozenset[str]:
    """The fuse and every fuse under it."""
    children: dict[str, list[str]] = {}
    for fuse in settings.fuses:
        if fuse.parent is not None:
            children.setdefault(fuse.parent, []).append(fuse.id)
    found = {fuse_id}
    stack = [fuse_id]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return frozenset(found)
