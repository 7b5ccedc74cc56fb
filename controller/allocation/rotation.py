"""Who charges when the minimums do not all fit: pause and rotate, from the snapshot's times alone.

Candidates are the cars that want energy. If all of them fit at their minimum, all charge. Otherwise
they are admitted one by one in priority order, each only if its minimum still fits on every fuse line
of its path next to those admitted before it:

0. charging cars that have used up their start/stop budget for the hour (pausing them for rotation
   would break the wear limit; safety still pauses them if they do not fit);
1. charging cars still inside their rotation period, the most recently started first;
2. waiting cars, the longest waiting first;
3. charging cars past their rotation period, the most recently started first, so the car that has
   charged longest is the first to yield.

A waiting car that has used up its budget is not started at all (`switch_limit`). With K places and
N cars in the queue a car therefore waits at most ceil((N - K) / K) rotation periods (FIFO over tiers
2 and 3), which tests/unit/allocation/test_rotation.py checks by running the allocator over time.

The period is stretched (`rotation_period_s`) when rotating that fast would use up the cars' start/stop
budget: once it is used up, whoever charges keeps charging and the others cannot start, for up to an
hour - the limit holds, but the sharing would not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from controller.allocation.compiled import BoolArray, CompiledSite, FloatArray, IntArray
from controller.allocation.electrical import line_currents
from controller.allocation.model import Policy

TIER_STOP_LIMITED = 0
TIER_IN_PERIOD = 1
TIER_WAITING = 2
TIER_EXPIRED = 3


@dataclass(frozen=True, slots=True)
class Admission:
    admitted: BoolArray
    # Flat fuse * 3 + line that keeps a refused car out even alone; -1: it would fit alone (rotation).
    blocked_by: IntArray


def rotation_period_s(policy: Policy, wanting: int, charging: int) -> float:
    """The configured period, stretched when it would spend the start/stop budget faster than it refills.

    In steady rotation each car is stopped and started once per cycle of (wanting / charging) periods:
    2 * 3600 * charging / (wanting * period) switches an hour, which must stay within the limit.
    """
    if wanting == 0:
        return policy.rotation_period_s
    sustainable_s = 2 * 3600.0 * max(charging, 1) / (wanting * policy.max_switches_per_hour)
    return max(policy.rotation_period_s, sustainable_s)


def priority_order(
    site: CompiledSite, candidates: BoolArray, charging_now: BoolArray, period_s: float
) -> IntArray:
    policy = site.policy
    charged = np.nan_to_num(site.charged_for_s, nan=0.0)
    waited = np.nan_to_num(site.waited_for_s, nan=0.0)
    stop_limited = site.switches_last_hour >= policy.max_switches_per_hour
    tier = np.where(
        charging_now,
        np.where(
            stop_limited,
            TIER_STOP_LIMITED,
            np.where(charged < period_s, TIER_IN_PERIOD, TIER_EXPIRED),
        ),
        TIER_WAITING,
    )
    within = np.where(charging_now, charged, -waited)
    index = np.flatnonzero(candidates)
    order = np.lexsort((index, within[index], tier[index]))
    return index[order]


def admit(
    site: CompiledSite,
    order: IntArray,
    lo_a: FloatArray,
    coefficients: FloatArray,
    loads: BoolArray,
    capacity_a: FloatArray,
    fixed: FloatArray,
    phasor: bool,
) -> Admission:
    n = site.n_chargers
    candidates = np.zeros(n, dtype=bool)
    candidates[order] = True
    blocked_by = np.full(n, -1, dtype=np.int64)
    alone = _blocked_alone(site, candidates, lo_a, coefficients, loads, capacity_a, fixed, phasor)
    fits_alone = candidates & (alone < 0)
    blocked_by[candidates] = alone[candidates]
    if _fits(site, fits_alone, lo_a, coefficients, loads, capacity_a, fixed, phasor):
        return Admission(admitted=fits_alone, blocked_by=blocked_by)
    admitted = _greedy(site, order[fits_alone[order]], lo_a, coefficients, loads, capacity_a, fixed, phasor)
    return Admission(admitted=admitted, blocked_by=blocked_by)


def _component_sums(
    site: CompiledSite, which: BoolArray, current: FloatArray, coefficients: FloatArray, fixed: FloatArray
) -> FloatArray:
    sel = which[site.inc_charger]
    ic, jf = site.inc_charger[sel], site.inc_fuse[sel]
    load = coefficients[ic] * current[ic][:, None]
    out = fixed.copy()
    for k in range(3):
        out[:, k] += np.bincount(jf, weights=load[:, k], minlength=site.n_fuses)
    return out


def _fits(
    site: CompiledSite,
    which: BoolArray,
    lo_a: FloatArray,
    coefficients: FloatArray,
    loads: BoolArray,
    capacity_a: FloatArray,
    fixed: FloatArray,
    phasor: bool,
) -> bool:
    total = line_currents(_component_sums(site, which, lo_a, coefficients, fixed), phasor)
    loaded = np.zeros((site.n_fuses, 3), dtype=bool)
    sel = which[site.inc_charger]
    np.logical_or.at(loaded, site.inc_fuse[sel], loads[site.inc_charger[sel]])
    return not bool((loaded & (total > capacity_a)).any())


def _blocked_alone(
    site: CompiledSite,
    candidates: BoolArray,
    lo_a: FloatArray,
    coefficients: FloatArray,
    loads: BoolArray,
    capacity_a: FloatArray,
    fixed: FloatArray,
    phasor: bool,
) -> IntArray:
    """For each candidate, the nearest fuse line its minimum overloads with no other car; -1 if none."""
    out = np.full(site.n_chargers, -1, dtype=np.int64)
    sel = candidates[site.inc_charger]
    ic, jf = site.inc_charger[sel], site.inc_fuse[sel]
    total = line_currents(fixed[jf] + coefficients[ic] * lo_a[ic][:, None], phasor)
    over = loads[ic] & (total > capacity_a[jf])
    rows = np.flatnonzero(over.any(axis=1))
    if len(rows):
        cars, first = np.unique(ic[rows], return_index=True)
        pos = rows[first]
        out[cars] = jf[pos] * 3 + np.argmax(over[pos], axis=1)
    return out


def _greedy(
    site: CompiledSite,
    order: IntArray,
    lo_a: FloatArray,
    coefficients: FloatArray,
    loads: BoolArray,
    capacity_a: FloatArray,
    fixed: FloatArray,
    phasor: bool,
) -> BoolArray:
    # Sequential by nature (each admission changes the room for the next); plain floats keep it cheap.
    # It runs only when the minimums do not all fit, once per allocation.
    comp = fixed.tolist()
    cap = capacity_a.tolist()
    paths = [[int(f) for f in row if f >= 0] for row in site.ancestors]
    fuse_of = site.fuse_of.tolist()
    loads_l = loads.tolist()
    add = (coefficients * lo_a[:, None]).tolist()
    sqrt = math.sqrt
    admitted = np.zeros(site.n_chargers, dtype=bool)
    for c in order.tolist():
        k0, k1, k2 = add[c]
        m0, m1, m2 = loads_l[c]
        path = paths[fuse_of[c]]
        ok = True
        for f in path:
            x, y, z = comp[f]
            x += k0
            y += k1
            z += k2
            if phasor:
                l1, l2, l3 = (
                    sqrt(x * x + z * z + x * z),
                    sqrt(x * x + y * y + x * y),
                    sqrt(y * y + z * z + y * z),
                )
            else:
                l1, l2, l3 = x, y, z
            c0, c1, c2 = cap[f]
            if (m0 and l1 > c0) or (m1 and l2 > c1) or (m2 and l3 > c2):
                ok = False
                break
        if ok:
            admitted[c] = True
            for f in path:
                row = comp[f]
                row[0] += k0
                row[1] += k1
                row[2] += k2
    return admitted
