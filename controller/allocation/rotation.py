"""Who charges when the minimums do not all fit: pause and rotate, from the snapshot's times alone.

Candidates are the cars that want energy. If all of them fit at their minimum, all charge. Otherwise
they are admitted one by one in priority order, each only if its minimum still fits on every fuse line
of its path next to those admitted before it:

0. charging cars that have used up their starts for the hour (`max_starts_per_hour`): paused for
   rotation they could not be started again within the hour, so they are not (safety still pauses
   them if they do not fit);
1. charging cars still inside their rotation period, the most recently started first;
2. waiting cars, the longest waiting first;
3. charging cars past their rotation period, the most recently started first, so the car that has
   charged longest is the first to yield.

A waiting car that has used up its starts is not started at all (`start_limit`). With K places and
N cars in the queue a car therefore waits at most ceil((N - K) / K) rotation periods (FIFO over tiers
2 and 3), which tests/unit/allocation/test_rotation.py checks by running the allocator over time.

The period is stretched (`rotation_period_s`) when rotating that fast would use up the cars' starts:
once they are used up, whoever charges keeps charging and the others cannot start, for up to an hour
- the limit holds, but the sharing would not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from controller.allocation.compiled import BoolArray, CompiledSite, FloatArray, IntArray
from controller.allocation.electrical import line_currents
from controller.allocation.model import Policy
from controller.allocation.rows import any3, take, take_bool

TIER_START_LIMITED = 0
TIER_IN_PERIOD = 1
TIER_WAITING = 2
TIER_EXPIRED = 3


@dataclass(frozen=True, slots=True)
class Admission:
    admitted: BoolArray
    # Flat fuse * 3 + line that keeps a refused car out even alone; -1: it would fit alone (rotation).
    blocked_by: IntArray


def rotation_period_s(policy: Policy, wanting: int, charging: int) -> float:
    """The configured period, stretched when it would spend the cars' starts faster than they refill.

    In steady rotation each car is started once per cycle of (wanting / charging) periods:
    3600 * charging / (wanting * period) starts an hour, which must stay within the limit.
    """
    if wanting == 0:
        return policy.rotation_period_s
    sustainable_s = 3600.0 * max(charging, 1) / (wanting * policy.max_starts_per_hour)
    return max(policy.rotation_period_s, sustainable_s)


def priority_order(
    site: CompiledSite, candidates: BoolArray, charging_now: BoolArray, period_s: float
) -> IntArray:
    policy = site.policy
    charged = np.nan_to_num(site.charged_for_s, nan=0.0)
    waited = np.nan_to_num(site.waited_for_s, nan=0.0)
    start_limited = site.starts_last_hour >= policy.max_starts_per_hour
    tier = np.where(
        charging_now,
        np.where(
            start_limited,
            TIER_START_LIMITED,
            np.where(charged < period_s, TIER_IN_PERIOD, TIER_EXPIRED),
        ),
        TIER_WAITING,
    )
    within = np.where(charging_now, charged, -waited)
    index = np.flatnonzero(candidates)
    order = np.lexsort((index, within[index], tier[index]))
    return index[order]


# Array passes before the loop; each admits at least one car or empties the queue.
VECTOR_ROUNDS = 6


@dataclass(frozen=True, slots=True)
class _Minimums:
    """Each candidate's minimum as component load, against each fuse line's room."""

    site: CompiledSite
    load: FloatArray  # (n, 3) components of each car at its minimum
    loads: BoolArray  # (n, 3) lines each car's current reaches
    capacity_a: FloatArray  # (F, 3)
    phasor: bool


def admit(
    site: CompiledSite,
    order: IntArray,
    lo_a: FloatArray,
    coefficients: FloatArray,
    loads: BoolArray,
    capacity_a: FloatArray,
    fixed: FloatArray,
    phasor: bool,
    *,
    vector_rounds: int = VECTOR_ROUNDS,
) -> Admission:
    """Admit candidates (`order`, highest priority first) while their minimums fit.

    The result is that of admitting them one at a time, each if it fits next to those before it. It is
    computed in a few array passes: the longest prefix of the queue that fits together is admitted at
    once; then every candidate that no longer fits even alone on top of what is admitted is dropped
    (the load only grows, so it never will); repeat. Only a queue that keeps breaking early falls back
    to a plain loop over what is left.
    """
    n = site.n_chargers
    m = _Minimums(site, coefficients * lo_a[:, None], loads, capacity_a, phasor)
    blocked_by = np.full(n, -1, dtype=np.int64)
    alone = _first_overload(m, order, fixed)
    blocked_by[order] = alone
    queue = order[alone < 0]
    admitted = np.zeros(n, dtype=bool)
    comp = fixed.copy()
    for _ in range(vector_rounds):
        if len(queue) == 0:
            break
        k = _fitting_prefix(m, queue, comp)
        admitted[queue[:k]] = True
        comp += _component_sums(site, queue[:k], m.load)
        queue = queue[k:]
        queue = queue[_first_overload(m, queue, comp) < 0]
    if len(queue):
        _greedy(m, queue, comp, admitted)
    return Admission(admitted=admitted, blocked_by=blocked_by)


def _incidences(site: CompiledSite, cars: IntArray) -> tuple[IntArray, IntArray, IntArray]:
    """Incidences of `cars`, with each car's position in `cars`."""
    position = np.full(site.n_chargers, -1, dtype=np.int64)
    position[cars] = np.arange(len(cars))
    rank = position[site.inc_charger]
    sel = rank >= 0
    return site.inc_charger[sel], site.inc_fuse[sel], rank[sel]


def _component_sums(site: CompiledSite, cars: IntArray, load: FloatArray) -> FloatArray:
    ic, jf, _ = _incidences(site, cars)
    out = np.empty((site.n_fuses, 3))
    for k in range(3):
        out[:, k] = np.bincount(jf, weights=load[ic, k], minlength=site.n_fuses)
    return out


def _first_overload(m: _Minimums, cars: IntArray, comp: FloatArray) -> IntArray:
    """For each of `cars`, the nearest fuse line (fuse * 3 + line) its minimum alone overloads on top
    of `comp`; -1 where it fits."""
    out = np.full(len(cars), -1, dtype=np.int64)
    ic, jf, rank = _incidences(m.site, cars)
    total = line_currents(take(comp, jf) + take(m.load, ic), m.phasor)
    over = take_bool(m.loads, ic) & (total > take(m.capacity_a, jf))
    rows = np.flatnonzero(any3(over))
    if len(rows):
        # Incidences run from a car's own fuse up: the first one hit per car is the nearest.
        first = rows[_run_starts(ic[rows])]
        out[rank[first]] = jf[first] * 3 + np.argmax(over[first], axis=1)
    return out


def _fitting_prefix(m: _Minimums, queue: IntArray, comp: FloatArray) -> int:
    """How many leading cars of `queue` fit together on top of `comp`."""
    ic, jf, rank = _incidences(m.site, queue)
    order = np.argsort(jf * len(queue) + rank)
    ic, jf, rank = ic[order], jf[order], rank[order]
    start = _run_starts(jf)
    counts = np.diff(np.append(start, len(jf)))
    cumulative = np.cumsum(take(m.load, ic), axis=0)
    offset = np.zeros((len(start), 3))
    offset[1:] = cumulative[start[1:] - 1]
    state = take(comp, jf) + cumulative - np.repeat(offset, counts, axis=0)
    over = any3(take_bool(m.loads, ic) & (line_currents(state, m.phasor) > take(m.capacity_a, jf)))
    return int(rank[over].min()) if over.any() else len(queue)


def _run_starts(sorted_keys: IntArray) -> IntArray:
    if len(sorted_keys) == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.empty(len(sorted_keys), dtype=bool)
    change[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=change[1:])
    return np.flatnonzero(change)


def _greedy(m: _Minimums, queue: IntArray, comp: FloatArray, admitted: BoolArray) -> None:
    # Sequential by nature (each admission changes the room for the next); plain floats keep it cheap.
    rows = comp.tolist()
    cap = m.capacity_a.tolist()
    paths = [[int(f) for f in row if f >= 0] for row in m.site.ancestors]
    fuse_of = m.site.fuse_of.tolist()
    loads_l = m.loads.tolist()
    add = m.load.tolist()
    sqrt = math.sqrt
    phasor = m.phasor
    for c in queue.tolist():
        k0, k1, k2 = add[c]
        m0, m1, m2 = loads_l[c]
        path = paths[fuse_of[c]]
        ok = True
        for f in path:
            x, y, z = rows[f]
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
                row = rows[f]
                row[0] += k0
                row[1] += k1
                row[2] += k2
