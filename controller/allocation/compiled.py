"""A SiteSnapshot as arrays, checked on the way in.

The allocator works on numpy arrays indexed by fuse and by charger; this module builds them once per
snapshot with one pass over the values (comprehensions, not per-charger logic) and checks every field
that the dataclasses cannot check by type. A problem raises `SnapshotError` with the path of the field
(`chargers[3].lines`), so the daemon, `sitectl balance` and the tests all get the same message.

Lines are bit masks inside: L1 = 1, L2 = 2, L3 = 4.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import permutations

import numpy as np
import numpy.typing as npt

from controller.allocation.model import Charger, Fuse, Meter, Policy, SiteSnapshot, SnapshotError, Vehicle
from drivers.contracts import LINES, Line

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

LINE_BIT: dict[str, int] = {"L1": 1, "L2": 2, "L3": 4}
# BITS[mask] is the per-line membership of a line mask, POPCOUNT[mask] its number of lines.
BITS: BoolArray = np.array([[(mask >> i) & 1 for i in range(3)] for mask in range(8)], dtype=bool)
POPCOUNT: IntArray = BITS.sum(axis=1).astype(np.int64)

START_WINDOW_S = 3600.0

# Every valid line tuple (1 to 3 distinct lines in any order) and its mask; anything else is malformed.
_LINE_TUPLES: dict[tuple[str, ...], int] = {
    combo: sum(LINE_BIT[line] for line in combo) for size in (1, 2, 3) for combo in permutations(LINES, size)
}


@dataclass(frozen=True, slots=True)
class CompiledSite:
    """Arrays over fuses (index f) and chargers (index c); see `compile_site`."""

    it: bool
    policy: Policy
    fuse_ids: tuple[str, ...]
    parent: IntArray  # -1 for a root
    depth: IntArray  # 0 for a root
    limit_a: FloatArray
    base_load_a: FloatArray
    # Fuse paths: ancestors[f, d] is the d-th fuse above f (d = 0 is f itself), -1 past the root.
    ancestors: IntArray
    charger_ids: tuple[str, ...]
    fuse_of: IntArray
    wired: IntArray  # line mask of the wired lines
    active: IntArray  # line mask the car is assumed to load: its known active lines, else all wired
    min_a: FloatArray
    max_a: FloatArray
    vehicle_max_a: FloatArray  # inf where the car states no maximum
    safe_a: FloatArray
    weight: FloatArray
    previous_a: FloatArray  # the setpoint held or heading to, 0 where none
    online: BoolArray  # commandable: the allocator decides its current
    fixed_a: FloatArray  # what a charger that is not commandable may draw (its maximum by default)
    drives: tuple[str, ...]  # each charger's Drive, for the explanation
    wants: BoolArray  # a car is connected and wants energy
    drawing_a: FloatArray  # (n, 3) per grid line, nan where not measured
    charged_for_s: FloatArray  # now - charging_since, nan where unknown
    waited_for_s: FloatArray  # now - waiting_since, nan where unknown
    paused_for_s: FloatArray  # now - paused_at, nan where never paused
    starts_last_hour: IntArray
    # Charger-fuse incidences: charger inc_charger[i] loads fuse inc_fuse[i]. Charger-major, and within
    # a charger from its own fuse up to the root.
    inc_charger: IntArray
    inc_fuse: IntArray

    @property
    def n_fuses(self) -> int:
        return len(self.fuse_ids)

    @property
    def n_chargers(self) -> int:
        return len(self.charger_ids)


def compile_site(snapshot: SiteSnapshot) -> CompiledSite:
    if snapshot.version != 1:
        raise SnapshotError("version", f"unsupported snapshot version {snapshot.version!r}, expected 1")
    if snapshot.now.tzinfo is None:
        raise SnapshotError("now", "must carry a timezone (e.g. 2026-11-22T17:00:00Z)")
    if snapshot.grid.type not in ("IT", "TN"):
        raise SnapshotError("grid.type", f"must be 'IT' or 'TN', got {snapshot.grid.type!r}")
    _check_policy(snapshot.policy)
    it = snapshot.grid.type == "IT"
    fuse_ids, parent, depth, ancestors = _fuse_tree(snapshot.fuses)
    fuse_index = {fid: i for i, fid in enumerate(fuse_ids)}
    _check_meters(snapshot.meters, fuse_index)
    chargers = snapshot.chargers
    n = len(chargers)

    charger_ids = tuple(c.id for c in chargers)
    if len(set(charger_ids)) != n:
        seen: set[str] = set()
        for i, cid in enumerate(charger_ids):
            if cid in seen:
                raise SnapshotError(f"chargers[{i}].id", f"duplicate charger id {cid!r}")
            seen.add(cid)
    fuse_of_list = [fuse_index.get(c.fuse, -1) for c in chargers]
    if -1 in fuse_of_list:
        i = fuse_of_list.index(-1)
        raise SnapshotError(f"chargers[{i}].fuse", f"unknown fuse {chargers[i].fuse!r}")
    fuse_of = np.array(fuse_of_list, dtype=np.int64)

    wired_list = [_LINE_TUPLES.get(c.lines, 0) for c in chargers]
    if 0 in wired_list:
        i = wired_list.index(0)
        raise SnapshotError(f"chargers[{i}].lines", _bad_lines(chargers[i].lines))
    wired = np.array(wired_list, dtype=np.int64)
    if it and n and (POPCOUNT[wired] < 2).any():
        i = int(np.flatnonzero(POPCOUNT[wired] < 2)[0])
        raise SnapshotError(f"chargers[{i}].lines", "on IT a charger is wired to 2 or 3 lines")

    policy = snapshot.policy
    max_a = _floats([c.max_a for c in chargers])
    min_a = _floats([policy.min_current_a if c.min_a is None else c.min_a for c in chargers])
    _require(chargers, "max_a", np.isfinite(max_a) & (max_a > 0), "must be a positive number of amps")
    _require(
        chargers, "min_a", np.isfinite(min_a) & (min_a > 0) & (min_a <= max_a), "must be > 0 and <= max_a"
    )
    safe_a = _floats([c.safe_current_a for c in chargers])
    safe_a = np.where(np.isnan(safe_a), min_a, safe_a)
    _require(
        chargers,
        "safe_current_a",
        (safe_a == 0) | ((safe_a >= min_a) & (safe_a <= max_a)),
        "must be 0 or between min_a and max_a",
    )
    weight = _floats([c.weight for c in chargers])
    _require(chargers, "weight", np.isfinite(weight) & (weight > 0), "must be a positive number")
    previous = _floats([c.setpoint_a for c in chargers])
    _require(
        chargers, "setpoint_a", np.isnan(previous) | ((previous >= 0) & np.isfinite(previous)), "must be >= 0"
    )
    previous = np.nan_to_num(previous, nan=0.0)
    online = np.array([c.commandable for c in chargers], dtype=bool)
    fixed = _floats([c.may_draw_a for c in chargers])
    _require(chargers, "may_draw_a", np.isnan(fixed) | ((fixed >= 0) & np.isfinite(fixed)), "must be >= 0")
    fixed = np.where(np.isnan(fixed), max_a, fixed)

    vehicles = [c.vehicle for c in chargers]
    wants = np.array([v is not None and v.connected and v.wants_energy for v in vehicles], dtype=bool)
    vehicle_max = _floats([None if v is None else v.max_a for v in vehicles])
    bad = ~np.isnan(vehicle_max) & ~(vehicle_max >= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SnapshotError(f"chargers[{i}].vehicle.max_a", "must be >= 0")
    vehicle_max = np.where(np.isnan(vehicle_max), np.inf, vehicle_max)

    active_list = [_active_mask(v) for v in vehicles]
    active = np.array(active_list, dtype=np.int64)
    bad = (active < 0) | ((active & ~wired) != 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        vehicle = vehicles[i]
        assert vehicle is not None
        assert vehicle.active_lines is not None
        if active[i] < 0:
            message = _bad_lines(vehicle.active_lines)
        else:
            message = (
                f"{list(vehicle.active_lines)} is not a subset of the wired lines {list(chargers[i].lines)}"
            )
        raise SnapshotError(f"chargers[{i}].vehicle.active_lines", message)
    # Unknown, or on IT a single line (no circuit on a 3-wire grid): the worst case, all wired lines.
    unknown = (active == 0) | ((POPCOUNT[active] < 2) if it else np.zeros(n, dtype=bool))
    active = np.where(unknown, wired, active)

    drawing = np.array(
        [(None, None, None) if v is None else v.drawing_a for v in vehicles], dtype=np.float64
    ).reshape(n, 3)
    bad_draw = ~np.isnan(drawing) & ~((drawing >= 0) & np.isfinite(drawing))
    off_wire = ~np.isnan(drawing) & ~BITS[wired]
    if bad_draw.any() or off_wire.any():
        i, line = (int(x) for x in np.argwhere(bad_draw | off_wire)[0])
        message = "must be >= 0" if bad_draw[i, line] else "is not a wired line of this charger"
        raise SnapshotError(f"chargers[{i}].vehicle.drawing_a.{LINES[line]}", message)

    now = snapshot.now
    charged_for = _ages(now, [None if v is None else v.charging_since for v in vehicles], "charging_since")
    waited_for = _ages(now, [None if v is None else v.waiting_since for v in vehicles], "waiting_since")
    paused_for = _ages(now, [None if v is None else v.paused_at for v in vehicles], "paused_at")
    starts = np.array([_start_count(now, v, i) for i, v in enumerate(vehicles)], dtype=np.int64)

    paths = ancestors[fuse_of] if n else np.zeros((0, ancestors.shape[1]), dtype=np.int64)
    on_path = paths >= 0
    inc_charger = np.nonzero(on_path)[0].astype(np.int64)
    inc_fuse = paths[on_path].astype(np.int64)

    return CompiledSite(
        it=it,
        policy=policy,
        fuse_ids=fuse_ids,
        parent=parent,
        depth=depth,
        limit_a=_floats([f.limit_a for f in snapshot.fuses]),
        base_load_a=_floats([f.base_load_a for f in snapshot.fuses]),
        ancestors=ancestors,
        charger_ids=charger_ids,
        fuse_of=fuse_of,
        wired=wired,
        active=active,
        min_a=min_a,
        max_a=max_a,
        vehicle_max_a=vehicle_max,
        safe_a=safe_a,
        weight=weight,
        previous_a=previous,
        online=online,
        fixed_a=fixed,
        drives=tuple(str(c.drive) for c in chargers),
        wants=wants,
        drawing_a=drawing,
        charged_for_s=charged_for,
        waited_for_s=waited_for,
        paused_for_s=paused_for,
        starts_last_hour=starts,
        inc_charger=inc_charger,
        inc_fuse=inc_fuse,
    )


def line_mask(lines: Sequence[Line]) -> int:
    return _LINE_TUPLES.get(tuple(lines), 0)


def _floats(values: Sequence[float | None]) -> FloatArray:
    # None becomes nan here, which every caller either rejects or replaces on purpose.
    return np.array(values, dtype=np.float64).reshape(len(values))


def _require(chargers: Sequence[Charger], name: str, ok: BoolArray, message: str) -> None:
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise SnapshotError(f"chargers[{i}].{name}", f"{message}, got {getattr(chargers[i], name)!r}")


def _bad_lines(lines: Sequence[str]) -> str:
    if not lines:
        return "must name at least one line"
    unknown = [line for line in lines if line not in LINE_BIT]
    if unknown:
        return f"unknown line {unknown[0]!r} (expected L1, L2 or L3)"
    return f"lines must be distinct, got {list(lines)}"


def _active_mask(vehicle: Vehicle | None) -> int:
    """0 when unknown, -1 when malformed, else the mask."""
    if vehicle is None or vehicle.active_lines is None:
        return 0
    return _LINE_TUPLES.get(tuple(vehicle.active_lines), -1)


def _ages(now: datetime, times: Sequence[datetime | None], name: str) -> FloatArray:
    ages = np.full(len(times), np.nan)
    for i, when in enumerate(times):
        if when is None:
            continue
        if when.tzinfo is None:
            raise SnapshotError(f"chargers[{i}].vehicle.{name}", "must carry a timezone")
        ages[i] = (now - when).total_seconds()
    return ages


def _start_count(now: datetime, vehicle: Vehicle | None, i: int) -> int:
    if vehicle is None or not vehicle.start_times:
        return 0
    count = 0
    for j, when in enumerate(vehicle.start_times):
        if when.tzinfo is None:
            raise SnapshotError(f"chargers[{i}].vehicle.start_times[{j}]", "must carry a timezone")
        # A time in the future still counts: a wrong clock must not unlock extra starts.
        if (now - when).total_seconds() < START_WINDOW_S:
            count += 1
    return count


def _fuse_tree(fuses: Sequence[Fuse]) -> tuple[tuple[str, ...], IntArray, IntArray, IntArray]:
    if not fuses:
        raise SnapshotError("fuses", "a site has at least one fuse")
    index: dict[str, int] = {}
    for i, fuse in enumerate(fuses):
        if not fuse.id:
            raise SnapshotError(f"fuses[{i}].id", "must not be empty")
        if fuse.id in index:
            raise SnapshotError(f"fuses[{i}].id", f"duplicate fuse id {fuse.id!r}")
        index[fuse.id] = i
        if not (math.isfinite(fuse.limit_a) and fuse.limit_a > 0):
            raise SnapshotError(f"fuses[{i}].limit_a", f"must be a positive number, got {fuse.limit_a!r}")
        if not (math.isfinite(fuse.base_load_a) and fuse.base_load_a >= 0):
            raise SnapshotError(f"fuses[{i}].base_load_a", f"must be >= 0, got {fuse.base_load_a!r}")
    parent = np.full(len(fuses), -1, dtype=np.int64)
    for i, fuse in enumerate(fuses):
        if fuse.parent is None:
            continue
        if fuse.parent not in index:
            raise SnapshotError(f"fuses[{i}].parent", f"unknown fuse {fuse.parent!r}")
        parent[i] = index[fuse.parent]
    # Walk every fuse up one level at a time, all fuses at once; a walk still going after as many
    # steps as there are fuses is going round a cycle.
    columns = [np.arange(len(fuses), dtype=np.int64)]
    above = parent.copy()
    for _ in range(len(fuses)):
        if (above < 0).all():
            break
        columns.append(above)
        above = np.where(above >= 0, parent[np.maximum(above, 0)], -1)
    else:
        i = int(np.flatnonzero(above >= 0)[0])
        raise SnapshotError(f"fuses[{i}].parent", f"fuses form a cycle through {fuses[i].parent!r}")
    ancestors = np.stack(columns, axis=1)
    depth = (ancestors >= 0).sum(axis=1).astype(np.int64) - 1
    return tuple(f.id for f in fuses), parent, depth, ancestors


def _check_meters(meters: Sequence[Meter], fuse_index: dict[str, int]) -> None:
    seen: set[str] = set()
    for i, meter in enumerate(meters):
        if meter.fuse not in fuse_index:
            raise SnapshotError(f"meters[{i}].fuse", f"unknown fuse {meter.fuse!r}")
        if meter.fuse in seen:
            raise SnapshotError(f"meters[{i}].fuse", f"a second meter on fuse {meter.fuse!r}")
        seen.add(meter.fuse)
        if len(meter.currents_a) != 3:
            raise SnapshotError(f"meters[{i}].currents_a", "needs a value (or null) for L1, L2 and L3")
        for line, value in zip(LINES, meter.currents_a, strict=True):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise SnapshotError(f"meters[{i}].currents_a.{line}", f"must be >= 0 or null, got {value!r}")
        if meter.age_s is not None and not (meter.age_s >= 0):
            raise SnapshotError(f"meters[{i}].age_s", f"must be >= 0 or null, got {meter.age_s!r}")


def _check_policy(policy: Policy) -> None:
    checks: list[tuple[str, bool, str]] = [
        ("safety_margin_a", policy.safety_margin_a >= 0, "must be >= 0"),
        ("min_current_a", policy.min_current_a > 0, "must be > 0"),
        ("rotation_period_s", policy.rotation_period_s > 0, "must be > 0"),
        ("deadband_a", policy.deadband_a >= 0, "must be >= 0"),
        (
            "increase_step_a",
            policy.increase_step_a is None or policy.increase_step_a > 0,
            "must be > 0 or null",
        ),
        ("taper_ratio", 0 < policy.taper_ratio <= 1, "must be in (0, 1]"),
        ("taper_tolerance_a", policy.taper_tolerance_a >= 0, "must be >= 0"),
        ("taper_headroom_a", policy.taper_headroom_a >= 0, "must be >= 0"),
        ("max_starts_per_hour", policy.max_starts_per_hour >= 1, "must be >= 1"),
        ("meter_stale_after_s", policy.meter_stale_after_s > 0, "must be > 0"),
        ("restart_hold_s", policy.restart_hold_s >= 0, "must be >= 0"),
        ("restart_margin_a", policy.restart_margin_a >= 0, "must be >= 0"),
    ]
    for name, ok, message in checks:
        value = getattr(policy, name)
        if not ok or (isinstance(value, float) and not math.isfinite(value)):
            raise SnapshotError(f"policy.{name}", f"{message}, got {value!r}")
