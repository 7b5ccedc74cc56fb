"""The meter's view of the base (non-EV) load, and what the cars' own changes explain of it.

The meter measures everything; the allocator needs the base load (measured less the cars). Three
things make that harder than a subtraction, and this module owns all three:

- **Between full lists** (Aidon, Kaifa: per-line currents every 10 s, total power every 2-2.5 s) a
  rise of total power is added to every line (site/meter.py), less what the controller's own
  setpoint changes explain of it. A raise explains the least power a car can make of it (one line,
  or one branch on IT, while its lines are unknown); a cut the most. Counting a single-phase car's
  raise on all three lines hid a base-load step behind it until the next full list.
- **Reports that lag the meter.** A list is read against each car taken at no more than the lowest
  setpoint it held just before the list (`_aligned_base`). While a raised car has not reported, the
  base load of the last list that matched the reports is held, raised by any unexplained rise, for at
  most HOLD_LIMIT_S, and nobody is raised meanwhile (`holding`).
- **Three-wire meters** send no IL2; it is worked out from their own measurements (three_wire.py).

Pure apart from its memory: time comes in as arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from controller.allocation import Grid, Meter, SiteSnapshot, base_at_meters
from controller.site.meter import POWER_MEMORY_S, MeterTracker
from controller.site.three_wire import AronInputs, ThreeWireEstimator, ev_phasors
from controller.site.tracks import (
    CAR_RESPONSE_S,
    LIST_LAG_S,
    ChargerTrack,
    Shown,
    capped,
    least_drawn_a,
    triple,
)
from drivers.contracts import MeterReading

HOLD_LIMIT_S = 30.0


@dataclass(frozen=True, slots=True)
class _Consistent:
    """The latest snapshot whose meter reading and charger reports tell the same story, with the
    meter at its full list as read (no power-frame estimate on top) and that list's time and power:
    a held base load is carried forward from the list, as the live estimate is."""

    snapshot: SiteSnapshot
    list_mono: float
    power_w: float | None


class BaseLoadEstimator:
    def __init__(self, grid: Grid, meter_fuse: str, tracks: Mapping[str, ChargerTrack]) -> None:
        """`tracks`: the charging points below the meter (shared with the site, read only here)."""
        self._grid = grid
        self._fuse = meter_fuse
        self._tracks = tracks
        # Aidon/Kaifa power frames are net of export; a rise is spread at the single-phase voltage.
        self._meter = MeterTracker(phase_voltage_v=grid.nominal_voltage_v)
        self._three_wire = ThreeWireEstimator() if grid.type == "IT" else None
        self._consistent: _Consistent | None = None
        self._held_base: tuple[float, float, float] | None = None
        self._shown_cache: dict[float, dict[str, Shown]] = {}
        self.held_cycles = 0
        self.readings = 0
        # True while the last snapshot held the base load: its allocation may lower setpoints (the
        # held base is no lower than the readings' truth) but must not raise any.
        self.holding = False

    @property
    def last_reading_mono(self) -> float | None:
        return self._meter.last_reading_mono

    @property
    def last_full_mono(self) -> float | None:
        """When the last list with per-line currents came."""
        return self._meter.last_full_mono

    @property
    def three_wire_counts(self) -> Mapping[str, int]:
        return {} if self._three_wire is None else dict(self._three_wire.counts)

    def ingest(self, reading: MeterReading) -> None:
        self.readings += 1
        derived_a = None
        inputs = None if self._three_wire is None else AronInputs.from_reading(reading)
        if inputs is not None and self._three_wire is not None:
            estimate = self._three_wire.estimate(inputs, self._ev_phasors(), reading.received.monotonic_s)
            derived_a = None if estimate is None else estimate.i2_a
        self._meter.ingest(reading, derived_l2_a=derived_a)

    def _ev_phasors(self) -> tuple[complex, complex]:
        """The cars' line phasors on L1 and L3 as their chargers last reported them."""
        loads = []
        for track in self._tracks.values():
            if not track.has_car:
                continue
            lines = track.active_lines or tuple(track.config.lines)
            drawn = least_drawn_a(lines, track.drawing(self._grid.type))
            if drawn is not None:
                loads.append((tuple(lines), drawn))
        return ev_phasors(loads)

    def with_meter(self, snapshot: SiteSnapshot, now_mono: float) -> SiteSnapshot:
        """The snapshot with the meter, its base load held while the readings cannot be matched.

        The meter sees a car's new current within seconds; its charger reports it up to a report
        interval later. Until every raised charger has reported, measured less reported counts the
        cars' rise as base load - and on IT with an unmetered L2 twice over - so the site pauses
        the cars it just started and starts them again once the reports arrive. Meanwhile the base
        load of the last snapshot without such a mismatch is held, raised by any rise of the meter's
        total power that the setpoints do not explain (applied to every line, the safe side), for
        at most HOLD_LIMIT_S. A base-load rise hidden behind a car that did not follow its last
        increase is the remaining exposure: at most that increase, until its charger reports.
        """
        self.holding = False
        full_mono = self._meter.last_full_mono
        explained_w = 0.0 if full_mono is None else self.explained_change_w(full_mono, now_mono)
        view = self._meter.view(now_mono, explained_rise_w=explained_w)
        meter = Meter(self._fuse, view.currents_a, view.age_s)
        snapshot = replace(snapshot, meters=(meter,))
        if view.age_s is None or full_mono is None:
            self._consistent = None
            return snapshot
        aligned = self._aligned_base(snapshot, full_mono)
        if aligned is not None:
            meter = replace(meter, base_a=aligned)
            snapshot = replace(snapshot, meters=(meter,))
        if not any(track.unreported_rise(now_mono) for track in self._tracks.values()):
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
            self._held_base = triple(was.base_a) or base_at_meters(consistent.snapshot)[self._fuse]
        rise_w = 0.0
        latest_w = self._meter.latest_power_w
        if latest_w is not None and consistent.power_w is not None:
            # While held, a raise of a car whose charger has not reported is credited with what its
            # wired lines allow: its report, which ends the hold, tells which it uses.
            explained_w = self.explained_change_w(consistent.list_mono, now_mono, unreported_in_full=True)
            rise_w = max(0.0, latest_w - consistent.power_w - explained_w)
        rise_a = rise_w / self._grid.nominal_voltage_v
        held = self._held_base
        self.held_cycles += 1
        self.holding = True
        return replace(
            snapshot, meters=(replace(meter, base_a=(held[0] + rise_a, held[1] + rise_a, held[2] + rise_a)),)
        )

    def _aligned_base(self, snapshot: SiteSnapshot, list_mono: float) -> tuple[float, float, float] | None:
        """The base load as of the meter's last full list, when a car's report may be newer than it.

        The list's currents are what the meter saw when it was taken; a charger's report is not
        taken with it. One that came after it may show a car raised or cut since; one that came
        long before may show a current the car has left since. Against the list each car is taken
        at its report (`reported_at_list`) but no more than `against_list_a`: the lowest setpoint
        of the LIST_LAG_S before it, with what the list's own power shows of the changes made then
        (`_shown`). None when no car needs it (the allocator's own reading is the same) or when the
        list is unusable (the allocator then falls back to safe currents, and a base given here
        would hide that).
        """
        (meter,) = snapshot.meters
        unknown = sum(1 for value in meter.currents_a if value is None)
        if unknown > (1 if self._grid.type == "IT" else 0):
            return None
        chargers = []
        capped_any = False
        shown = self._shown(list_mono)
        for charger in snapshot.chargers:
            track = self._tracks.get(charger.id)
            vehicle = charger.vehicle
            if track is not None and vehicle is not None and track.setpoint_seen is not None:
                taken_a = track.against_list_a(list_mono, shown.get(charger.id, Shown()))
                if taken_a is not None:
                    drawing = capped(track.reported_at_list(list_mono, self._grid.type), taken_a)
                    if drawing != vehicle.drawing_a:
                        charger = replace(charger, vehicle=replace(vehicle, drawing_a=drawing))
                        capped_any = True
            chargers.append(charger)
        if not capped_any:
            return None
        return base_at_meters(replace(snapshot, chargers=tuple(chargers)))[self._fuse]

    def _shown(self, list_mono: float) -> dict[str, Shown]:
        """`_read_shown`, worked out once per list: the changes it is read against are all older
        than the list, and its reading must not move as later reports arrive."""
        cached = self._shown_cache.get(list_mono)
        if cached is None:
            cached = self._read_shown(list_mono)
            recent = list_mono - POWER_MEMORY_S  # older lists are never read again
            self._shown_cache = {mono: v for mono, v in self._shown_cache.items() if mono > recent}
            self._shown_cache[list_mono] = cached
        return cached

    def _read_shown(self, list_mono: float) -> dict[str, Shown]:
        """How much of each car's setpoint changes of the seconds before a list the list shows, from
        the meter's own total power: its change since the last reading before the first of them.

        Read against a list, a car raised in the LIST_LAG_S before it is taken at its old value and
        one cut in the CAR_RESPONSE_S before it at its new one: either may or may not show yet, and
        these are the higher base loads. Taken so, three cars paused for a base-load step read as
        some 18 A more base load on a line and paused three more; three cars started read as base
        load and paused others. The power tells: of a raise, a car shows at least what the power
        rose by beyond every other raise (each counted at the most power it can make, and from up
        to LIST_LAG_S before the first change, as it may still be showing); of a cut, at most the
        fall those raises leave room for (each cut at the least power it can make). A base-load
        rise within those seconds can hide behind a change until the next list, at most the change.
        """
        volts = self._grid.nominal_voltage_v
        grid = self._grid.type
        window = {
            cid: track.changes(list_mono - LIST_LAG_S, list_mono)
            for cid, track in self._tracks.items()
            if track.has_car
        }
        first = min((when for changes in window.values() for when, _, _ in changes), default=None)
        # The power of that list itself, also when a newer list has come since (a held base is read
        # against the last consistent one).
        list_w = self._meter.power_before_w(list_mono, inclusive=True)
        before_w = None if first is None else self._meter.power_before_w(first)
        if first is None or list_w is None or before_w is None:
            return {}
        raise_w: dict[str, float] = {}
        cut_w: dict[str, float] = {}
        for cid, track in self._tracks.items():
            if cid not in window:
                continue
            most = track.watts_per_amp(grid, volts, least=False)
            raise_w[cid] = most * sum(
                max(0.0, to - was) for _, was, to in track.changes(first - LIST_LAG_S, list_mono)
            )
            drawn_a = least_drawn_a(track.active_lines or tuple(track.config.lines), track.drawing(grid))
            fall_a = sum(
                max(0.0, min(was, drawn_a or 0.0) - to)
                for when, was, to in window[cid]
                if when > list_mono - CAR_RESPONSE_S
            )
            cut_w[cid] = fall_a * track.watts_per_amp(grid, volts, least=True)
        rise_w = list_w - before_w
        raises_w = sum(raise_w.values())
        room_w = max(0.0, raises_w - rise_w)  # the most the cuts can have taken off
        out = {}
        for cid in window:
            own_w = raise_w[cid]
            raise_share = min(1.0, max(0.0, (rise_w - (raises_w - own_w)) / own_w)) if own_w > 0 else 0.0
            cut_share = min(1.0, room_w / cut_w[cid]) if cut_w[cid] > 0 else 1.0
            out[cid] = Shown(raise_share, cut_share)
        return out

    def explained_change_w(
        self, seen_mono: float, now_mono: float, *, unreported_in_full: bool = False
    ) -> float:
        """How much the setpoints changed the cars' power between a reading taken at `seen_mono`
        and now: what a change of the meter's total power since that reading owes to the controller.

        A raise counts only for a car its charger reports charging (one that does not take its start
        reports SuspendedEV at once); a cut for any car plugged in (a paused car reports
        SuspendedEVSE: its fall is the controller's all the same). At a list each car is taken at the
        value the list is read with (`_aligned_base`); now at the highest setpoint of the response
        time before now: a raise counts at once, a decrease once the cars have had the time to
        follow it. Without the decreases, a base-load step that made the daemon lower the cars was
        netted against their fall and hidden until the next full list. A raise is worth the least
        power a car can make of it, a cut the most; with `unreported_in_full`, the raise of a car
        not reported since (the hold) what its wired lines allow.
        """
        volts = self._grid.nominal_voltage_v
        total_w = 0.0
        shown = self._shown(seen_mono)
        for cid, track in self._tracks.items():
            if not track.has_car:
                continue
            before_a = track.against_list_a(seen_mono, shown.get(cid, Shown()))
            if before_a is None:
                # No setpoint known against the reading: its highest around it stands for it, so
                # that a rise is never explained by more than the car can have added since.
                _, before_a = track.span_a(seen_mono - CAR_RESPONSE_S, seen_mono)
            _, now_a = track.span_a(now_mono - CAR_RESPONSE_S, now_mono)
            change_a = now_a - before_a
            if change_a > 0 and not track.charging:
                continue
            if change_a:
                least = change_a > 0 and not (unreported_in_full and track.unreported_rise(now_mono))
                total_w += change_a * track.watts_per_amp(self._grid.type, volts, least=least)
        return total_w
