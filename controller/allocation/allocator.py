"""`allocate(snapshot) -> Allocation`: every charger's current for one picture of the site.

Pure: no I/O, no clock, no state between calls. The steps, each in its own module:

1. `compiled`   the snapshot as arrays, checked;
2. `electrical` base load per fuse line from meters (or configuration), the fail-safe trigger;
3. `rotation`   which cars charge when the minimums do not all fit;
4. `waterfill`  the max-min fair shares of the cars that charge.

How fast the chargers are moved to these shares (deadband, ramps, settling) is controller/pacing.py.
A charger that is not commandable (`Drive`: offline, failed, lapsed, refused, not driven) is a fixed
load of what it may draw, on every wired line, and is decided nothing.

Also here: `predict_fuse_currents` (the daemon's and `sitectl check`'s model of what given setpoints do
to every fuse line) and `check_failsafe_budget` (DESIGN §5: safe currents plus worst-case base load).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from controller.allocation.compiled import BITS, POPCOUNT, BoolArray, CompiledSite, FloatArray, compile_site
from controller.allocation.electrical import (
    BaseLoad,
    LineModel,
    base_load,
    configured_base,
    fuse_components,
    line_currents,
    line_model,
)
from controller.allocation.model import (
    CHARGER_MAX,
    DRAWING,
    FAILSAFE,
    RESTART_HOLD,
    ROTATION,
    START_LIMIT,
    VEHICLE_MAX,
    Allocation,
    BudgetCheck,
    ChargerDecision,
    ChargerState,
    FuseLoad,
    LineTriple,
    SiteSnapshot,
)
from controller.allocation.rotation import Admission, admit, priority_order, rotation_period_s
from controller.allocation.waterfill import FillProblem, FillResult, water_fill
from drivers.contracts import LINES

# Capacity kept back from every line when sharing, against rounding in the sums (amps; far below any
# meter's noise), and what admitting the minimums may exceed it by, so that exact fits are admitted.
GUARD_A = 1e-6
ADMIT_TOLERANCE_A = 1e-9


def allocate(snapshot: SiteSnapshot, *, naive_it: bool = False) -> Allocation:
    """Decide every charger's current. `naive_it` adds IT line currents arithmetically instead of as
    phasors; it exists only to measure what the exact model gains (bench, tests)."""
    site = compile_site(snapshot)
    model = line_model(site, naive=naive_it)
    base = base_load(site, snapshot.meters)
    fixed, fixed_lines = _offline_load(site, model, base)
    if base.failsafe is not None:
        return _failsafe(site, model, base, fixed, fixed_lines)
    policy = site.policy
    capacity = site.limit_a[:, None] - policy.safety_margin_a - fixed_lines
    room = capacity - GUARD_A
    coefficients = model.coefficients[site.active]
    loads = BITS[site.active]

    bounds = _car_bounds(site)
    lo, hi = bounds.lo_a, bounds.hi_a
    charging_now = site.previous_a > 0

    wants = site.wants & site.online
    unable = wants & (bounds.nominal_hi_a < lo)
    pool = wants & ~unable
    barred = pool & ~charging_now & (site.starts_last_hour >= policy.max_starts_per_hour)
    held = (
        pool
        & ~charging_now
        & ~barred
        & (np.nan_to_num(site.paused_for_s, nan=np.inf) < policy.restart_hold_s)
    )
    candidates = pool & ~barred & ~held
    period_s = rotation_period_s(policy, int(pool.sum()), int((pool & charging_now).sum()))
    order = priority_order(site, candidates, charging_now, period_s)
    # A car in its restart hold comes last, and only if its minimum fits with `restart_margin_a` to
    # spare: readings that wobble by less cannot pause it again, and a car paused by an estimate the
    # next list disproves (a power frame's rise counts on every line) need not wait out the hold.
    held_order = np.flatnonzero(held)
    held_order = held_order[np.argsort(-np.nan_to_num(site.paused_for_s[held_order], nan=0.0), kind="stable")]
    lo_admit = np.where(held, lo + policy.restart_margin_a, lo)
    admission = admit(
        site,
        np.concatenate((order, held_order)),
        lo_admit,
        coefficients,
        loads,
        capacity + ADMIT_TOLERANCE_A,
        fixed,
        model.phasor,
    )
    admitted = admission.admitted
    held &= ~admitted

    fill = water_fill(
        FillProblem(
            charging=admitted,
            lo_a=lo,
            hi_a=hi,
            weight=site.weight,
            coefficients=coefficients,
            loads=loads,
            inc_charger=site.inc_charger,
            inc_fuse=site.inc_fuse,
            capacity_a=room,
            fixed=fixed,
            phasor=model.phasor,
        )
    )

    sent = fill.current_a
    predicted = fixed_lines + line_currents(
        fixed + fuse_components(site, coefficients * sent[:, None]), model.phasor
    )

    states, reasons = _explain(site, bounds, unable, barred, held, candidates, admission, fill)
    return _allocation(site, sent, sent, states, reasons, predicted, None)


@dataclass(frozen=True, slots=True)
class _Bounds:
    lo_a: FloatArray
    nominal_hi_a: FloatArray  # min(charger max, vehicle max)
    hi_a: FloatArray  # the above, or lower for a tapering car
    by_taper: BoolArray  # the taper cap is what bounds the car


def _car_bounds(site: CompiledSite) -> _Bounds:
    """Each car's [lo, hi]; a car drawing clearly less than it was given is capped near its draw."""
    policy = site.policy
    lo = site.min_a
    nominal_hi = np.minimum(site.max_a, site.vehicle_max_a)
    drawn = np.fmax.reduce(np.where(BITS[site.active], site.drawing_a, np.nan), axis=1)
    tapered = (
        (site.previous_a > 0)
        & ~np.isnan(drawn)
        & (drawn < policy.taper_ratio * site.previous_a - policy.taper_tolerance_a)
    )
    taper_cap = np.where(tapered, np.maximum(lo, drawn + policy.taper_headroom_a), np.inf)
    return _Bounds(
        lo_a=lo,
        nominal_hi_a=nominal_hi,
        hi_a=np.minimum(nominal_hi, taper_cap),
        by_taper=tapered & (taper_cap < nominal_hi),
    )


def _explain(
    site: CompiledSite,
    bounds: _Bounds,
    unable: BoolArray,
    barred: BoolArray,
    held: BoolArray,
    candidates: BoolArray,
    admission: Admission,
    fill: FillResult,
) -> tuple[list[ChargerState], list[str | None]]:
    fuse_ids = site.fuse_ids
    reasons: list[str | None] = [None] * site.n_chargers
    states: list[ChargerState] = ["idle"] * site.n_chargers
    vehicle_bound = site.vehicle_max_a < site.max_a
    for c in np.flatnonzero(~site.online).tolist():
        reasons[c] = site.drives[c]
    for c in np.flatnonzero(unable).tolist():
        states[c], reasons[c] = "paused", VEHICLE_MAX
    for c in np.flatnonzero(barred).tolist():
        states[c], reasons[c] = "paused", START_LIMIT
    for c in np.flatnonzero(held).tolist():
        states[c], reasons[c] = "paused", RESTART_HOLD
    admitted = admission.admitted
    refused = candidates & ~admitted
    for c, blocked in zip(
        np.flatnonzero(refused).tolist(), admission.blocked_by[refused].tolist(), strict=True
    ):
        states[c] = "paused"
        reasons[c] = ROTATION if blocked < 0 else _fuse_reason(fuse_ids, blocked)
    for c, stopped in zip(np.flatnonzero(admitted).tolist(), fill.stopped_by[admitted].tolist(), strict=True):
        states[c] = "charging"
        if stopped >= 0:
            reasons[c] = _fuse_reason(fuse_ids, stopped)
        elif bounds.by_taper[c]:
            reasons[c] = DRAWING
        else:
            reasons[c] = VEHICLE_MAX if vehicle_bound[c] else CHARGER_MAX
    return states, reasons


def predict_fuse_currents(
    snapshot: SiteSnapshot, setpoints_a: Mapping[str, float] | None = None, *, naive_it: bool = False
) -> dict[str, LineTriple]:
    """Predicted line currents of every fuse if each charger ran at the given current.

    A charger missing from `setpoints_a` runs at its snapshot `setpoint_a` (0 if none); the current is on
    the car's active lines, all wired lines while unknown. A charger that is not commandable counts at
    what it may draw on every wired line whatever is asked of it. Base load as `allocate` sees it,
    stale meter or not (a line no meter bound counts as at the fuse's rating).
    """
    site = compile_site(snapshot)
    model = line_model(site, naive=naive_it)
    base = base_load(site, snapshot.meters)
    asked = dict(setpoints_a or {})
    unknown = sorted(set(asked) - set(site.charger_ids))
    if unknown:
        raise KeyError(f"no charger {unknown[0]!r} in the snapshot")
    current = np.array(
        [asked.get(cid, prev) for cid, prev in zip(site.charger_ids, site.previous_a.tolist(), strict=True)],
        dtype=np.float64,
    ).reshape(site.n_chargers)
    current = np.where(site.online, current, 0.0)
    fixed, fixed_lines = _offline_load(site, model, base)
    components = fixed + fuse_components(site, model.coefficients[site.active] * current[:, None])
    lines = fixed_lines + line_currents(components, model.phasor)
    return {fid: _triple(row) for fid, row in zip(site.fuse_ids, lines.tolist(), strict=True)}


def base_at_meters(snapshot: SiteSnapshot) -> dict[str, LineTriple]:
    """The base load (non-EV) below each metered fuse as `allocate` computes it from the readings:
    measured less the chargers' drawing, unknown lines bounded by Kirchhoff. The daemon holds it while
    later readings cannot be matched with the chargers' reports (Meter.base_a)."""
    site = compile_site(snapshot)
    base = base_load(site, [replace(m, base_a=None) for m in snapshot.meters])
    index = {fid: i for i, fid in enumerate(site.fuse_ids)}
    return {m.fuse: _triple(base.line_a[index[m.fuse]].tolist()) for m in snapshot.meters}


def check_failsafe_budget(
    snapshot: SiteSnapshot, worst_base_a: Mapping[str, LineTriple] | None = None
) -> BudgetCheck:
    """Do all chargers at their safe current, on every wired line, fit with the worst-case base load?

    This is what the fuses carry if the controller stops and every charger falls back to its safe
    current. The base load is the configured one (`base_load_a`, summed up the tree), raised line by line
    to `worst_base_a[fuse]` where given (e.g. the highest base the meter has shown). Each line must stay
    within `limit_a - safety_margin_a`.

    Any car may be at any charger, so nothing is assumed about active lines. On IT a charger wired to a
    pair loads that pair's branch; one wired to three lines may carry a three-phase car or a
    single-phase car on any pair, so its safe current is added to each line in full (the phasor sum of
    the rest plus it is an upper bound for every one of those cases).
    """
    site = compile_site(snapshot)
    model = line_model(site)
    base = configured_base(site)
    index = {fid: i for i, fid in enumerate(site.fuse_ids)}
    for fid, values in (worst_base_a or {}).items():
        if fid not in index:
            raise KeyError(f"no fuse {fid!r} in the snapshot")
        base[index[fid]] = np.maximum(base[index[fid]], np.asarray(values, dtype=np.float64))
    three_wired_it = site.it & (POPCOUNT[site.wired] == 3)
    known = np.where(three_wired_it[:, None], 0.0, model.coefficients[site.wired] * site.safe_a[:, None])
    either = np.where(three_wired_it[:, None], site.safe_a[:, None], 0.0) * np.ones((1, 3))
    predicted = (
        base + line_currents(fuse_components(site, known), model.phasor) + fuse_components(site, either)
    )
    limit = site.limit_a[:, None] - site.policy.safety_margin_a
    over = predicted > limit + GUARD_A
    overloaded = tuple(
        _fuse_reason(site.fuse_ids, int(f) * 3 + int(line)) for f, line in np.argwhere(over).tolist()
    )
    fuses = {
        fid: FuseLoad(limit_a=float(limit_a), predicted_a=_triple(row))
        for fid, limit_a, row in zip(site.fuse_ids, site.limit_a.tolist(), predicted.tolist(), strict=True)
    }
    return BudgetCheck(fits=not overloaded, fuses=fuses, overloaded=overloaded)


def _offline_load(site: CompiledSite, model: LineModel, base: BaseLoad) -> tuple[FloatArray, FloatArray]:
    """Load that does not move: (components of chargers that are not commandable, base plus line
    amps of those of them on three IT lines).

    Such a charger may draw what its budget says (`fixed_a`: its maximum when nothing bounds it) with
    any car: on a pair it is that pair's branch; wired to three IT lines it may carry a single-phase
    car on any pair, so the amount counts in full on every line, added like base load.
    """
    offline = ~site.online
    either = offline & site.it & (POPCOUNT[site.wired] == 3)
    branch = offline & ~either
    components = np.where(branch[:, None], model.coefficients[site.wired] * site.fixed_a[:, None], 0.0)
    lines = np.where(either[:, None], site.fixed_a[:, None], 0.0) * np.ones((1, 3))
    return fuse_components(site, components), base.line_a + fuse_components(site, lines)


def _failsafe(
    site: CompiledSite, model: LineModel, base: BaseLoad, fixed: FloatArray, fixed_lines: FloatArray
) -> Allocation:
    assert base.failsafe is not None
    sent = np.where(site.online, site.safe_a, 0.0)
    predicted = fixed_lines + line_currents(
        fixed + fuse_components(site, model.coefficients[site.active] * sent[:, None]), model.phasor
    )
    states: list[ChargerState] = []
    reasons: list[str | None] = []
    for online, drive, wants, safe in zip(
        site.online.tolist(), site.drives, site.wants.tolist(), sent.tolist(), strict=True
    ):
        if not online:
            states.append("idle")
            reasons.append(drive)
            continue
        states.append(("charging" if safe > 0 else "paused") if wants else "idle")
        reasons.append(FAILSAFE)
    return _allocation(site, sent, sent, states, reasons, predicted, base.failsafe)


def _allocation(
    site: CompiledSite,
    sent: FloatArray,
    target: FloatArray,
    states: list[ChargerState],
    reasons: list[str | None],
    predicted: FloatArray,
    failsafe: str | None,
) -> Allocation:
    # Positional construction: keyword arguments double the cost of thousands of small values.
    chargers = {
        cid: ChargerDecision(a, s, r, t)
        for cid, a, t, s, r in zip(
            site.charger_ids, sent.tolist(), target.tolist(), states, reasons, strict=True
        )
    }
    fuses = {
        fid: FuseLoad(limit_a, (row[0], row[1], row[2]))
        for fid, limit_a, row in zip(site.fuse_ids, site.limit_a.tolist(), predicted.tolist(), strict=True)
    }
    return Allocation(chargers=chargers, fuses=fuses, failsafe=failsafe)


def _fuse_reason(fuse_ids: tuple[str, ...], flat: int) -> str:
    return f"fuse:{fuse_ids[flat // 3]}:{LINES[flat % 3]}"


def _triple(row: list[float]) -> LineTriple:
    return (row[0], row[1], row[2])
