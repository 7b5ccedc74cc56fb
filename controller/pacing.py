"""How fast the chargers are moved to their fair shares: every smoothing rule, in one place.

The allocator says where each charger should end up (`Allocation`); the pacer says what to command
now, from the snapshot (each charger's setpoint and `Drive`), the time and what the dispatcher and
the site report. The dispatcher only carries the values out.

- **Decreases** go out at once, all together. One smaller than `deadband_a` is not made while
  keeping the higher value overloads no fuse line (a pause always is); when it would, with this
  cycle's increases, it is made and the increases wait for it like for any decrease.
- **Increases** wait until no decrease is pending (decided now, in flight, or unconfirmed), until
  `settle_s` after the last decrease was acknowledged (the cars follow within 5 s, IEC 61851-1), until
  `increase_interval_s` after the last increase wave (each wave is decided on readings that show the
  one before), and while the site holds its base-load estimate (`holding`: the cars' reports lag the
  meter, so nobody is raised). A rise is at most `increase_step_a` (a start at most min +
  `increase_step_a`); one smaller than `deadband_a` is not made, a start always is.
- A charger whose limit is **unknown** (just (re)connected) first gets at most its safe current,
  which the fail-safe budget covers; it counts as a pending decrease until confirmed.
- Chargers that are not commandable get nothing here (the dispatcher keeps trying to regain them).

- A raise of a car whose **lines are unknown** goes out only as far as the metered fuse's headroom
  takes it with the base load its unexplainable power will seem to add (`_unexplainable`).

`Paced.reason` says why a charger is not at its share: `ramp`, `deadband`, `settle`, `wave`,
`holding`, `pending` (a decrease goes first), `unknown` (first limit from the safe current), `lines`
(its lines are not known yet, the headroom is spent).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from controller.allocation import Allocation, Charger, Drive, SiteSnapshot, predict_fuse_currents

# A share computed a hair under a round value (the allocator keeps 1e-6 A back on every line) must not
# turn a change of exactly the deadband into a change "smaller than the deadband".
ROUNDING_A = 1e-5


@dataclass(frozen=True, slots=True)
class PacingConfig:
    settle_s: float = 5.0
    increase_interval_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Paced:
    current_a: float
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class DispatchState:
    """What the pacer needs to know of the commands under way."""

    last_decrease_ack_mono: float = -math.inf
    decreases_pending: bool = False


class Pacer:
    def __init__(self, config: PacingConfig | None = None) -> None:
        self._config = config or PacingConfig()
        self._last_wave_mono = -math.inf
        self.waves = 0

    def pace(
        self,
        snapshot: SiteSnapshot,
        allocation: Allocation,
        setpoints: Mapping[str, float | None],
        *,
        now_mono: float,
        dispatch: DispatchState,
        holding: bool = False,
    ) -> dict[str, Paced]:
        """`setpoints`: what each charger holds or is heading to (the dispatcher's budgets; the
        snapshot's `setpoint_a` may be the older value a lagging report is judged against)."""
        policy = snapshot.policy
        step = math.inf if policy.increase_step_a is None else policy.increase_step_a
        deadband = policy.deadband_a
        out: dict[str, Paced] = {}
        rises: dict[str, tuple[float, float, float]] = {}  # charger -> (previous, target, ramped)
        kept_above: list[str] = []
        decreasing = dispatch.decreases_pending
        for charger in snapshot.chargers:
            decision = allocation.chargers.get(charger.id)
            if decision is None or not charger.commandable:
                continue
            target = decision.current_a
            previous = setpoints.get(charger.id)
            safe = charger.safe_current_a if charger.safe_current_a is not None else charger.min_a or 0.0
            if charger.drive is Drive.UNKNOWN or previous is None:
                value = min(target, safe)
                out[charger.id] = Paced(value, "unknown" if value < target else None)
                decreasing = True
                continue
            if target < previous - ROUNDING_A:
                if target > 0 and previous - target < deadband - ROUNDING_A:
                    out[charger.id] = Paced(previous, "deadband")
                    kept_above.append(charger.id)
                else:
                    out[charger.id] = Paced(target)
                    decreasing = True
                continue
            if target <= previous + ROUNDING_A:
                out[charger.id] = Paced(previous)
                continue
            starting = previous <= 0
            if not starting and target - previous < deadband - ROUNDING_A:
                out[charger.id] = Paced(previous, "deadband")
                continue
            lo = charger.min_a if charger.min_a is not None else policy.min_current_a
            ramped = min(target, (lo if starting else max(previous, lo)) + step)
            rises[charger.id] = (previous, target, ramped)
        gate = self._gate(now_mono, dispatch, decreasing, holding)
        held_back = set() if gate is not None else _unexplainable(snapshot, setpoints, rises)
        for charger_id, (previous, target, ramped) in rises.items():
            if gate is not None:
                out[charger_id] = Paced(previous, gate)
            elif charger_id in held_back:
                out[charger_id] = Paced(previous, "lines")
            else:
                out[charger_id] = Paced(ramped, "ramp" if ramped < target else None)
        released = bool(kept_above) and self._release_holds_that_overload(
            snapshot, allocation, out, kept_above
        )
        if rises and gate is None:
            if released:
                # The decreases the deadband kept back are now needed to make room: they go first,
                # and the rises wait as for any decrease (a car that starts in 2 s must not land
                # before one told to give way that takes 5 s).
                for charger_id, (previous, _, _) in rises.items():
                    out[charger_id] = Paced(previous, "pending")
            else:
                self._last_wave_mono = now_mono
                self.waves += 1
        return out

    def _gate(self, now_mono: float, dispatch: DispatchState, decreasing: bool, holding: bool) -> str | None:
        """Why increases may not go out now; None when they may."""
        if decreasing:
            return "pending"
        if holding:
            return "holding"
        if now_mono < dispatch.last_decrease_ack_mono + self._config.settle_s:
            return "settle"
        if now_mono < self._last_wave_mono + self._config.increase_interval_s:
            return "wave"
        return None

    @staticmethod
    def _release_holds_that_overload(
        snapshot: SiteSnapshot, allocation: Allocation, out: dict[str, Paced], kept_above: list[str]
    ) -> bool:
        """A value kept above its share within the deadband only while no fuse line is overloaded
        with the values actually commanded; otherwise every such decrease is made (True)."""
        values = {cid: paced.current_a for cid, paced in out.items()}
        if not _overloads(snapshot, values):
            return False
        for charger_id in kept_above:
            out[charger_id] = Paced(allocation.chargers[charger_id].current_a)
        return True


def _unexplainable(
    snapshot: SiteSnapshot,
    setpoints: Mapping[str, float | None],
    rises: Mapping[str, tuple[float, float, float]],
) -> set[str]:
    """The rises of cars whose lines are unknown that this wave must leave out.

    Until its charger reports per-phase currents, a car on a charger wired to more lines than it
    must use (a three-phase charger: one-, two- or three-phase car) is credited with the least
    power its raise can make (site/base_load.py); the meter sees what it really makes, and the
    difference counts as base load on every line of the metered fuse until the next full list:
    (sqrt 3 - 1) x the raise, on IT, where the car's pair stays unknown. Such raises go out only as far as the
    metered fuse's headroom at the present values takes them with that on top; the others wait for
    the next wave. Starts, and raises of cars whose lines are known, are not limited here.
    """
    if not snapshot.meters:
        return set()
    by_id = {c.id: c for c in snapshot.chargers}
    unknown: list[tuple[float, str]] = []
    values = {cid: value or 0.0 for cid, value in setpoints.items()}
    for charger_id, (previous, _, ramped) in rises.items():
        charger = by_id[charger_id]
        # A start is never held here: until the car's charger reports, the site holds its base
        # load with the start counted in full, and holding it back could keep it waiting for ever.
        factor = _phantom_per_amp(snapshot, charger) if previous > 0 else 0.0
        if factor:
            unknown.append((factor * (ramped - previous), charger_id))
        else:
            values[charger_id] = ramped
    if not unknown:
        return set()
    metered = _with_ancestors(snapshot, snapshot.meters[0].fuse)
    margin = snapshot.policy.safety_margin_a
    predicted = predict_fuse_currents(snapshot, values)
    limits = {fuse.id: fuse.limit_a for fuse in snapshot.fuses}
    headroom = min(limits[f] - margin - max(predicted[f]) for f in metered)
    out = set()
    for phantom_a, charger_id in sorted(unknown):
        previous, _, ramped = rises[charger_id]
        cost_a = phantom_a + (ramped - previous)
        if cost_a <= headroom:
            headroom -= cost_a
        else:
            out.add(charger_id)
    return out


def _phantom_per_amp(snapshot: SiteSnapshot, charger: Charger) -> float:
    """On TN a charger's report tells the car's lines, and until it comes the site holds its base
    load (site/base_load.py); on IT a three-wire charger that measures one terminal of a
    single-phase car never tells which pair it is on."""
    vehicle = charger.vehicle
    if snapshot.grid.type != "IT" or len(charger.lines) != 3:
        return 0.0
    if vehicle is not None and vehicle.active_lines is not None:
        return 0.0
    return math.sqrt(3) - 1


def _with_ancestors(snapshot: SiteSnapshot, fuse_id: str) -> list[str]:
    parents = {fuse.id: fuse.parent for fuse in snapshot.fuses}
    path = [fuse_id]
    while (parent := parents.get(path[-1])) is not None:
        path.append(parent)
    return path


def _overloads(snapshot: SiteSnapshot, values: Mapping[str, float]) -> bool:
    margin = snapshot.policy.safety_margin_a
    predicted = predict_fuse_currents(snapshot, dict(values))
    limits = {fuse.id: fuse.limit_a for fuse in snapshot.fuses}
    return any(max(lines) > limits[fuse_id] - margin + 1e-6 for fuse_id, lines in predicted.items())
