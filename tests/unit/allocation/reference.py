"""An independent model of a site for the property tests: plain loops and complex phasors.

It shares nothing with controller.allocation but the value types: line currents on IT are computed by
adding branch-current phasors (I_L1 = I_12 - I_31, ...) as complex numbers, not with the allocator's
closed-form magnitudes, and base loads are worked out fuse by fuse from the rules in docs/snapshot.md.
"""

from __future__ import annotations

import cmath
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from controller.allocation.model import Charger, Drive, Fuse, Grid, Meter, Policy, SiteSnapshot, Vehicle
from drivers.contracts import LINES, Line

# Branch phasors at unity power factor follow their line-to-line voltages: V12 at 30°, V23 at -90°,
# V31 at 150°.
_BRANCH_ANGLE = {(0, 1): math.radians(30), (1, 2): math.radians(-90), (2, 0): math.radians(150)}
_PAIR = {frozenset((0, 1)): (0, 1), frozenset((1, 2)): (1, 2), frozenset((0, 2)): (2, 0)}
NOW = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)

Branches = dict[tuple[int, int], float]


def fixed_a(c: Charger) -> float:
    """What a charger that is not commandable is budgeted at."""
    return c.max_a if c.may_draw_a is None else c.may_draw_a


def lines_of(names: tuple[Line, ...]) -> tuple[int, ...]:
    return tuple(LINES.index(n) for n in names)


@dataclass
class Load:
    """EV load on one fuse: per line on TN, per branch on IT."""

    tn: list[float]
    it: Branches

    @staticmethod
    def empty() -> Load:
        return Load([0.0, 0.0, 0.0], {(0, 1): 0.0, (1, 2): 0.0, (2, 0): 0.0})

    def copy(self) -> Load:
        return Load(list(self.tn), dict(self.it))


class Reference:
    def __init__(self, snapshot: SiteSnapshot) -> None:
        self.snapshot = snapshot
        self.it = snapshot.grid.type == "IT"
        self.margin = snapshot.policy.safety_margin_a
        self.fuses = {f.id: f for f in snapshot.fuses}
        self.chargers = {c.id: c for c in snapshot.chargers}
        self.children: dict[str, list[str]] = {f.id: [] for f in snapshot.fuses}
        for f in snapshot.fuses:
            if f.parent is not None:
                self.children[f.parent].append(f.id)
        self.base = self._base_loads()
        self._fixed = self._fixed_lines()

    # ---------------------------------------------------------------------------------- topology
    def path(self, fuse_id: str) -> list[str]:
        out = []
        node: str | None = fuse_id
        while node is not None:
            out.append(node)
            node = self.fuses[node].parent
        return out

    def effective_lines(self, charger: Charger) -> tuple[int, ...]:
        v = charger.vehicle
        if v is not None and v.active_lines is not None and (not self.it or len(v.active_lines) >= 2):
            return lines_of(v.active_lines)
        return lines_of(charger.lines)

    def loaded_lines(self, charger: Charger) -> set[int]:
        return set(self.effective_lines(charger))

    # ------------------------------------------------------------------------------- electricity
    def add(self, load: Load, lines: tuple[int, ...], current_a: float) -> None:
        if not self.it:
            for line in lines:
                load.tn[line] += current_a
        elif len(lines) == 2:
            load.it[_PAIR[frozenset(lines)]] += current_a
        else:
            for pair in load.it:
                load.it[pair] += current_a / math.sqrt(3)

    def line_currents(self, load: Load) -> list[float]:
        if not self.it:
            return list(load.tn)
        phasor = {pair: cmath.rect(amps, _BRANCH_ANGLE[pair]) for pair, amps in load.it.items()}
        i1 = phasor[(0, 1)] - phasor[(2, 0)]
        i2 = phasor[(1, 2)] - phasor[(0, 1)]
        i3 = phasor[(2, 0)] - phasor[(1, 2)]
        return [abs(i1), abs(i2), abs(i3)]

    def fuse_loads(self, currents: dict[str, float]) -> dict[str, Load]:
        """EV load per fuse: `currents` on each charger's effective lines, offline ones at max (those
        wired to three IT lines in `offline_lines`, as any car may be there)."""
        loads = {fid: Load.empty() for fid in self.fuses}
        for c in self.snapshot.chargers:
            if not c.commandable:
                if self.it and len(c.lines) == 3:
                    continue
                lines, amps = lines_of(c.lines), fixed_a(c)
            else:
                lines, amps = self.effective_lines(c), currents.get(c.id, 0.0)
            if amps == 0:
                continue
            for fid in self.path(c.fuse):
                self.add(loads[fid], lines, amps)
        return loads

    def fixed(self, fuse_id: str) -> list[float]:
        """Base load plus, on every line, offline chargers wired to three IT lines below the fuse."""
        return self._fixed[fuse_id]

    def _fixed_lines(self) -> dict[str, list[float]]:
        extra = dict.fromkeys(self.fuses, 0.0)
        for c in self.snapshot.chargers:
            if not c.commandable and self.it and len(c.lines) == 3:
                for fid in self.path(c.fuse):
                    extra[fid] += fixed_a(c)
        return {fid: [b + extra[fid] for b in self.base[fid]] for fid in self.fuses}

    def predicted(self, currents: dict[str, float]) -> dict[str, list[float]]:
        loads = self.fuse_loads(currents)
        return {
            fid: [b + e for b, e in zip(self.fixed(fid), self.line_currents(loads[fid]), strict=True)]
            for fid in self.fuses
        }

    def limit(self, fuse_id: str) -> float:
        return self.fuses[fuse_id].limit_a - self.margin

    # ---------------------------------------------------------------------------------- base load
    def _measured_ev(self) -> dict[str, list[float]]:
        loads = {fid: Load.empty() for fid in self.fuses}
        for c in self.snapshot.chargers:
            if not c.commandable or c.vehicle is None:
                continue
            lines = self.effective_lines(c)
            drawing = [0.0 if d is None else d for d in c.vehicle.drawing_a]
            if self.it:
                amps = min(drawing[line] for line in lines)
                for fid in self.path(c.fuse):
                    self.add(loads[fid], lines, amps)
            else:
                for fid in self.path(c.fuse):
                    for line in range(3):
                        loads[fid].tn[line] += drawing[line]
        return {fid: self.line_currents(load) for fid, load in loads.items()}

    def _base_loads(self) -> dict[str, list[float]]:
        ev_now = self._measured_ev()
        meters = {m.fuse: m for m in self.snapshot.meters}
        base: dict[str, list[float]] = {}

        def visit(fid: str) -> list[float]:
            for child in self.children[fid]:
                visit(child)
            if fid in meters:
                base[fid] = self._metered_base(meters[fid], ev_now[fid], self.fuses[fid].limit_a)
            else:
                own = [self.fuses[fid].base_load_a] * 3
                for child in self.children[fid]:
                    own = [a + b for a, b in zip(own, base[child], strict=True)]
                base[fid] = own
            return base[fid]

        for f in self.snapshot.fuses:
            if f.parent is None:
                visit(f.id)
        return base

    def _metered_base(self, meter: Meter, ev_now: list[float], limit_a: float) -> list[float]:
        values = list(meter.currents_a)
        if self.it and any(v for v in values if v is not None):
            values = [None if v == 0 else v for v in values]
        base: list[float | None] = [
            None if v is None else max(0.0, v - e) for v, e in zip(values, ev_now, strict=True)
        ]
        missing = [i for i, b in enumerate(base) if b is None]
        if self.it and len(missing) == 1:
            base[missing[0]] = sum(b for b in base if b is not None)
        return [limit_a if b is None else b for b in base]

    def meters_usable(self) -> bool:
        stale = self.snapshot.policy.meter_stale_after_s
        for m in self.snapshot.meters:
            if m.age_s is None or m.age_s > stale:
                return False
            values = list(m.currents_a)
            if self.it and any(v for v in values if v is not None):
                values = [None if v == 0 else v for v in values]
            missing = sum(v is None for v in values)
            if missing > (1 if self.it else 0):
                return False
        return True

    # ------------------------------------------------------------------------------ car bounds
    def bounds(self, charger: Charger) -> tuple[float, float]:
        """(lo, hi) of a car that charges, with the documented taper cap."""
        policy = self.snapshot.policy
        lo = policy.min_current_a if charger.min_a is None else charger.min_a
        v = charger.vehicle
        assert v is not None
        hi = min(charger.max_a, math.inf if v.max_a is None else v.max_a)
        previous = charger.setpoint_a or 0.0
        drawn = [v.drawing_a[line] for line in self.effective_lines(charger) if v.drawing_a[line] is not None]
        if previous > 0 and drawn:
            draw = max(d for d in drawn if d is not None)
            if draw < policy.taper_ratio * previous - policy.taper_tolerance_a:
                hi = min(hi, max(lo, draw + policy.taper_headroom_a))
        return lo, hi


# ------------------------------------------------------------------------------------ generators
_LIMITS = (10.0, 16.0, 20.0, 25.0, 32.0, 40.0, 50.0, 63.0, 80.0, 100.0, 125.0, 160.0, 200.0, 250.0, 400.0)


def random_site(
    seed: int, n_chargers: int, n_fuses: int, grid: str, *, smoothing: bool, tight: bool
) -> SiteSnapshot:
    """A random but valid site. Fuse ratings scale with the chargers below them, so that some lines
    fill and some do not; `tight` makes them small for their chargers (pause and rotate)."""
    rng = np.random.default_rng(seed)
    it = grid == "IT"
    parents: list[int | None] = [
        None if i == 0 or rng.random() < 0.03 else int(rng.integers(0, i)) for i in range(n_fuses)
    ]
    chargers = [_random_charger(rng, i, n_fuses, it) for i in range(n_chargers)]
    below = [0] * n_fuses
    for c in chargers:
        node: int | None = int(c.fuse[1:])
        while node is not None:
            below[node] += 1
            node = parents[node]
    fuses = []
    for i in range(n_fuses):
        per_car = float(rng.uniform(2.0, 8.0) if tight else rng.uniform(5.0, 25.0))
        limit = float(min(630.0, max(10.0, round(below[i] * per_car))))
        if rng.random() < 0.15:
            limit = float(rng.choice(_LIMITS))
        base = float(rng.uniform(0, 8)) if rng.random() < 0.2 else 0.0
        parent = None if parents[i] is None else f"f{parents[i]}"
        fuses.append(Fuse(id=f"f{i}", limit_a=limit, parent=parent, base_load_a=round(base, 1)))
    meters = []
    for f in fuses:
        if rng.random() < 0.15:
            values: list[float | None] = [round(float(rng.uniform(0, f.limit_a * 0.3)), 2) for _ in range(3)]
            if it and rng.random() < 0.5:
                values[1] = None if rng.random() < 0.5 else 0.0
            meters.append(
                Meter(
                    fuse=f.id,
                    currents_a=(values[0], values[1], values[2]),
                    age_s=round(float(rng.uniform(0, 25)), 1),
                )
            )
    policy = Policy(
        safety_margin_a=float(rng.choice([0.0, 1.0, 2.0, 3.0])),
        min_current_a=6.0,
        rotation_period_s=900.0,
        deadband_a=float(rng.choice([0.0, 0.5, 1.0])) if smoothing else 0.0,
        increase_step_a=float(rng.choice([2.0, 4.0, 8.0])) if smoothing else None,
        max_starts_per_hour=int(rng.integers(1, 6)),
    )
    return SiteSnapshot(
        now=NOW,
        grid=Grid(type="IT" if it else "TN"),
        fuses=tuple(fuses),
        meters=tuple(meters),
        chargers=tuple(chargers),
        policy=policy,
    )


def _random_charger(rng: np.random.Generator, i: int, n_fuses: int, it: bool) -> Charger:
    if it:
        size = 2 if rng.random() < 0.5 else 3
    else:
        size = int(rng.choice([1, 2, 3], p=[0.35, 0.05, 0.6]))
    lines: tuple[Line, ...] = tuple(LINES[j] for j in rng.permutation(3)[:size])
    max_a = float(rng.choice([10.0, 16.0, 20.0, 32.0]))
    min_a = None if rng.random() < 0.7 else float(rng.choice([6.0, 7.0, 8.0]))
    roll = rng.random()
    drive = Drive.ACKNOWLEDGED
    may_draw_a: float | None = None
    if roll < 0.02:
        drive = Drive.OFFLINE
    elif roll < 0.04:
        drive = (Drive.FAILED, Drive.LAPSED, Drive.REFUSED, Drive.NOT_DRIVEN)[int(rng.integers(0, 4))]
        may_draw_a = None if rng.random() < 0.3 else round(float(rng.uniform(0.0, max_a)), 1)
    weight = 1.0 if rng.random() < 0.8 else round(float(rng.uniform(0.5, 3.0)), 2)
    setpoint: float | None = None
    vehicle = None
    if rng.random() > 0.15:
        lo = 6.0 if min_a is None else min_a
        charging = rng.random() < 0.5
        if charging:
            setpoint = round(float(rng.uniform(lo, max_a)), 1)
        else:
            setpoint = 0.0 if rng.random() < 0.7 else None
        active: tuple[Line, ...] | None = None
        if rng.random() < 0.6:
            k = int(rng.integers(1, size + 1))
            active = tuple(lines[j] for j in sorted(rng.permutation(size)[:k]))
        drawing: list[float | None] = [None, None, None]
        if charging and rng.random() < 0.8:
            amps = float(setpoint or 0.0) * float(rng.choice([1.0, 0.98, 0.6, 0.2, 0.0]))
            for name in active or lines:
                drawing[LINES.index(name)] = round(amps, 2)
        n_starts = int(rng.choice([0, 0, 1, 2, 3, 4, 6]))
        starts = tuple(NOW - timedelta(seconds=float(s)) for s in sorted(rng.uniform(0, 5400, n_starts)))
        since = NOW - timedelta(seconds=float(rng.uniform(0, 3000)))
        vehicle = Vehicle(
            connected=rng.random() > 0.05,
            wants_energy=rng.random() > 0.1,
            max_a=None if rng.random() < 0.6 else float(rng.choice([4.0, 6.0, 10.0, 16.0, 32.0])),
            active_lines=active,
            drawing_a=(drawing[0], drawing[1], drawing[2]),
            charging_since=since if charging else None,
            waiting_since=None if charging else since,
            start_times=starts,
        )
    return Charger(
        id=f"cp{i}",
        fuse=f"f{int(rng.integers(0, n_fuses))}",
        lines=lines,
        max_a=max_a,
        min_a=min_a,
        setpoint_a=setpoint,
        vehicle=vehicle,
        drive=drive,
        may_draw_a=may_draw_a,
        weight=weight,
    )
