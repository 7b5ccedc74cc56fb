"""Max-min fair sharing of the fuses' capacity among the cars that charge (water-filling).

A common level t rises; a car at level t gets clamp(w·t, lo, hi) (its weight w, its minimum lo, its own
maximum hi). A car stops rising when a fuse line it loads is full; it stays where it is while the rest
go on. Computed exactly, not by small steps:

- For every fuse, each rising car contributes two events to a piecewise-linear component load: at
  t = lo/w it starts rising (slope +w·coef), at t = hi/w it stops (slope -w·coef). Sorting the events by
  (fuse, t) once gives, with segmented cumulative sums, the component load at every event; on TN a
  line's crossing of its capacity is then a linear equation, on IT (phasor line currents) a quadratic
  one, both solved in closed form for every fuse line at once.
- A line whose saturation level t* is the smallest among all lines sharing a car with it is full at t*
  whatever else happens (nothing can stop its cars earlier), so every such local minimum is settled in
  the same round. Rounds repeat until no rising car is left or no line fills.

All of it is array arithmetic over the events; no Python loop over cars.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from controller.allocation.compiled import BoolArray, FloatArray, IntArray
from controller.allocation.electrical import ADJACENT_BRANCHES, line_currents
from controller.allocation.rows import any3, min3, take, take_bool, take_int

_ADJ = np.array(ADJACENT_BRANCHES, dtype=np.int64)
# A car that ends within this of its own maximum is said to be stopped by the maximum, not a fuse.
AT_MAX_TOLERANCE_A = 1e-9


@dataclass(frozen=True, slots=True)
class FillProblem:
    charging: BoolArray  # (n,) cars admitted to charge
    lo_a: FloatArray  # (n,)
    hi_a: FloatArray  # (n,) >= lo_a where charging
    weight: FloatArray  # (n,) > 0
    coefficients: FloatArray  # (n, 3) component load per amp
    loads: BoolArray  # (n, 3) lines each car's current reaches
    inc_charger: IntArray  # charger-major incidences (charger loads fuse)
    inc_fuse: IntArray
    capacity_a: FloatArray  # (F, 3) line amps available to EV load (limit - margin - base)
    fixed: FloatArray  # (F, 3) component load that does not move (offline chargers)
    phasor: bool


@dataclass(frozen=True, slots=True)
class FillResult:
    current_a: FloatArray  # (n,), 0 for cars not charging
    # Flat index fuse * 3 + line of the line that stopped each car; -1: its own maximum stopped it.
    stopped_by: IntArray
    rounds: int


def water_fill(p: FillProblem) -> FillResult:
    n = len(p.lo_a)
    n_fuses = p.capacity_a.shape[0]
    current = np.where(p.charging, p.lo_a, 0.0)
    stopped_by = np.full(n, -1, dtype=np.int64)
    rising = p.charging & (p.hi_a > p.lo_a)
    settled = p.charging & ~rising
    fixed = p.fixed + _aggregate(p, settled, current, n_fuses)

    on_rising = rising[p.inc_charger]
    inc_c = p.inc_charger[on_rising]
    inc_f = p.inc_fuse[on_rising]
    w = p.weight
    ev_car = np.concatenate([inc_c, inc_c])
    ev_fuse = np.concatenate([inc_f, inc_f])
    ev_t = np.concatenate([p.lo_a[inc_c] / w[inc_c], p.hi_a[inc_c] / w[inc_c]])
    sign = np.concatenate([np.ones(len(inc_c)), -np.ones(len(inc_c))])
    # Sort by (fuse, t) as one integer key: numpy's stable and lexicographic sorts are several times
    # slower than a plain sort of unique keys, and this sort is the single largest step.
    rank = np.empty(len(ev_t), dtype=np.int64)
    rank[np.argsort(ev_t)] = np.arange(len(ev_t))
    order = np.argsort(ev_fuse * len(ev_t) + rank)
    ev_car, ev_fuse, ev_t, sign = ev_car[order], ev_fuse[order], ev_t[order], sign[order]
    # Per event: the change of slope (3 components) and that change times the event's level (3 more),
    # side by side so that one cumulative sum serves both.
    ev_slope = (sign * w[ev_car])[:, None] * p.coefficients[ev_car]
    ev_moments = np.concatenate([ev_slope, ev_slope * ev_t[:, None]], axis=1)

    rounds = 0
    while True:
        live_inc = rising[inc_c]
        if not live_inc.any():
            break
        rounds += 1
        keep = np.flatnonzero(live_inc)
        ic, jf = take_int(inc_c, keep), take_int(inc_f, keep)
        live = np.flatnonzero(take_bool(rising, ev_car))
        e_fuse, e_t = take_int(ev_fuse, live), take(ev_t, live)
        level = _saturation_levels(p, fixed, ic, jf, e_fuse, e_t, take(ev_moments, live))

        # The level at which each rising car first meets a full line, and the lowest such level among
        # the cars on each line: a line is settled when it is the first to fill for all of its cars.
        loads = take_bool(p.loads, ic)
        reach = min3(np.where(loads, take(level, jf), np.inf))
        car_first = _run_starts(ic)
        car_level = np.full(n, np.inf)
        car_level[ic[car_first]] = np.minimum.reduceat(reach, car_first)
        line_min = np.full(n_fuses * 3, np.inf)
        flat = (jf * 3)[:, None] + np.arange(3)
        np.minimum.at(line_min, flat[loads], np.broadcast_to(car_level[ic][:, None], loads.shape)[loads])
        settled_line = np.isfinite(level) & (level <= line_min.reshape(n_fuses, 3))
        hit = take_bool(settled_line, jf) & loads
        inc_hit = any3(hit)
        if not inc_hit.any():
            break
        hit_pos = np.flatnonzero(inc_hit)
        # The first incidence of a car is the fuse nearest to it: name that one when several fill at once.
        hit_cars = ic[hit_pos]  # sorted: incidences are charger-major
        pos = hit_pos[_run_starts(hit_cars)]
        cars = ic[pos]
        line = np.argmax(hit[pos], axis=1)
        value = np.clip(w[cars] * car_level[cars], p.lo_a[cars], p.hi_a[cars])
        current[cars] = value
        stopped_by[cars] = np.where(value >= p.hi_a[cars] - AT_MAX_TOLERANCE_A, -1, jf[pos] * 3 + line)
        now_settled = np.zeros(n, dtype=bool)
        now_settled[cars] = True
        rising[cars] = False
        fixed = fixed + _aggregate(p, now_settled, current, n_fuses)

    current[rising] = p.hi_a[rising]
    return FillResult(current_a=current, stopped_by=stopped_by, rounds=rounds)


def _aggregate(p: FillProblem, which: BoolArray, current: FloatArray, n_fuses: int) -> FloatArray:
    sel = which[p.inc_charger]
    ic, jf = p.inc_charger[sel], p.inc_fuse[sel]
    load = take(p.coefficients, ic) * take(current, ic)[:, None]
    out = np.empty((n_fuses, 3))
    for k in range(3):
        out[:, k] = np.bincount(jf, weights=load[:, k], minlength=n_fuses)
    return out


def _saturation_levels(
    p: FillProblem,
    fixed: FloatArray,
    ic: IntArray,
    jf: IntArray,
    e_fuse: IntArray,
    e_t: FloatArray,
    e_moments: FloatArray,
) -> FloatArray:
    """(F, 3) level t at which each fuse line fills if every rising car keeps rising; inf if never."""
    n_fuses = fixed.shape[0]
    n_events = len(e_fuse)
    start = _run_starts(e_fuse)
    counts = np.diff(np.append(start, n_events))
    # Component load at each event time: floors plus every ramp begun, i.e. c0 + t·Σslope - Σ(slope·t_i).
    at_floor = fixed.copy()
    floor_load = take(p.coefficients, ic) * take(p.lo_a, ic)[:, None]
    for k in range(3):
        at_floor[:, k] += np.bincount(jf, weights=floor_load[:, k], minlength=n_fuses)
    sums = _segment_cumsum(e_moments, start, counts)
    slope = sums[:, :3]
    value = take(at_floor, e_fuse) + e_t[:, None] * slope - sums[:, 3:]
    capacity = take(p.capacity_a, e_fuse)
    exceed = line_currents(value, p.phasor) > capacity
    first = np.minimum.reduceat(np.where(exceed, np.arange(n_events)[:, None], n_events), start, axis=0)

    level = np.full((n_fuses, 3), np.inf)
    seg_idx, line = np.nonzero(first < n_events)
    j = first[seg_idx, line]
    fuse = e_fuse[start[seg_idx]]
    # Exceeding at a segment's first event means exceeding with every car at its floor: level 0.
    t = np.zeros(len(j))
    ramp = j > start[seg_idx]
    prev = j[ramp] - 1
    if len(prev):
        v, s, cap, ln = value[prev], slope[prev], capacity[prev, line[ramp]], line[ramp]
        rows = np.arange(len(prev))
        if p.phasor:
            ax, ay = _ADJ[ln, 0], _ADJ[ln, 1]
            vx, vy, sx, sy = v[rows, ax], v[rows, ay], s[rows, ax], s[rows, ay]
            a = sx * sx + sy * sy + sx * sy
            b = 2 * vx * sx + 2 * vy * sy + vx * sy + vy * sx
            c = vx * vx + vy * vy + vx * vy - cap * cap
            # The root of a·τ² + b·τ + c = 0 with c <= 0 <= b, in the form that stays exact for a -> 0.
            denominator = b + np.sqrt(np.maximum(b * b - 4 * a * c, 0.0))
            tau = np.divide(-2 * c, denominator, out=np.zeros(len(prev)), where=denominator > 0)
        else:
            vl, sl = v[rows, ln], s[rows, ln]
            tau = np.divide(cap - vl, sl, out=np.zeros(len(prev)), where=sl > 0)
        t[ramp] = e_t[prev] + np.clip(tau, 0.0, e_t[j[ramp]] - e_t[prev])
    level[fuse, line] = t
    return level


def _segment_cumsum(x: FloatArray, start: IntArray, counts: IntArray) -> FloatArray:
    total = np.cumsum(x, axis=0)
    offset = np.zeros((len(start), x.shape[1]))
    offset[1:] = total[start[1:] - 1]
    return total - np.repeat(offset, counts, axis=0)


def _run_starts(sorted_keys: IntArray) -> IntArray:
    """Positions where a run of equal keys begins."""
    if len(sorted_keys) == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.empty(len(sorted_keys), dtype=bool)
    change[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=change[1:])
    return np.flatnonzero(change)
