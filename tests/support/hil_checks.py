"""What a controlled garage must show in its ground truth, computed from a run's recording.

The rule for overload: a controlled site keeps every fuse line within its rating, except right after
a change the controller could not foresee. Before such a change the line was at most its rating less
the safety margin; the change adds at most its own size; within the reaction time the controller
must have shed it. So at every recorded instant, the excess of a line over its rating must be no
more than how much the unforeseeable loads on that line rose within the last `reaction_s`:

- base loads (`[[base_loads]]`, a pure function of time: lift starts and their inrush, ventilation
  switching on, steps, per-minute noise), recomputed here exactly as the garage computes them;
- a car plugging in, which its charger offers its fallback current before the controller has said
  anything (counted from its first current for `reaction_s`);
- anything while the controller is blind (the meter silent or frozen) or dead (a controller_kill):
  the base loads' rise since the blindness began, and the cars' rise while the daemon is down.

An excess beyond that is the controller's doing (a bad estimate, an increase it should not have
sent, a decrease it did not send) and fails the test.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from simulator.baseload import BaseLoadProfile
from simulator.recording import Recording, VisitRecord
from simulator.scenario_file import LoadedScenario

F64 = npt.NDArray[np.float64]
LINES = ("L1", "L2", "L3")
# On IT a base load's three currents are branch currents (L1-L2, L2-L3, L3-L1); a line carries the
# phasor sum of the two branches that meet on it, so its rise is at most the sum of their rises.
_IT_BRANCHES_OF_LINE = ((0, 2), (0, 1), (1, 2))


@dataclass(frozen=True, slots=True)
class Window:
    """An interval of scenario time in which the controller could not see (or act on) the site."""

    start_s: float
    end_s: float
    cars_too: bool = False  # the daemon was down: the cars' own rises were not its doing either


@dataclass(frozen=True, slots=True)
class Excess:
    fuse: str
    line: str
    t_s: float
    over_a: float  # above the rating
    explained_a: float  # what unforeseeable loads had added within the reaction time


@dataclass(frozen=True, slots=True)
class OverloadCheck:
    overload_as: float
    explained_as: float
    worst: tuple[Excess, ...]  # excesses beyond their explanation, worst first (empty: all explained)
    episodes: int  # times some fuse line went over its rating

    def describe(self) -> str:
        lines = [
            f"overload {self.overload_as:.1f} A*s in {self.episodes} episodes, "
            f"of it explained {self.explained_as:.1f} A*s"
        ]
        lines += [
            f"  {e.fuse} {e.line} at {e.t_s:.1f} s: {e.over_a:.1f} A over its rating, "
            f"unforeseeable rise {e.explained_a:.1f} A"
            for e in self.worst[:10]
        ]
        return "\n".join(lines)


def blind_windows(loaded: LoadedScenario) -> list[Window]:
    """The scenario's meter silences and freezes, and its controller kills (dead until restarted)."""
    out = [
        Window(f.at_s, f.at_s + f.duration_s)
        for f in loaded.meter_faults
        if f.kind in ("meter_silence", "meter_freeze")
    ]
    out += [Window(k.at_s, k.at_s + k.duration_s, cars_too=True) for k in loaded.controller_kills]
    return out


def check_overload(
    loaded: LoadedScenario,
    rec: Recording,
    *,
    reaction_s: float,
    t0_s: float = 0.0,
    startup_s: float = 0.0,
    windows: Sequence[Window] | None = None,
) -> OverloadCheck:
    """Every fuse line's excess over its rating against the unforeseeable rise that explains it.

    `t0_s`: the scenario's t = 0 on the simulated clock (the evening peak follows local time);
    `startup_s`: rows before it are not judged - chargers that connect for the first time offer
    their hardware default until the daemon has installed their fail-safe profile.
    """
    windows = blind_windows(loaded) if windows is None else windows
    explained = unforeseen_rise_a(loaded, rec, reaction_s=reaction_s, t0_s=t0_s, windows=windows)
    over = np.maximum(rec.fuse_a.astype(np.float64) - rec.fuse_limits_a[None, :, None], 0.0)
    judged = rec.t_s >= startup_s
    dt = rec.row_interval_s
    beyond = np.where(judged[:, None, None], over - explained, 0.0)
    worst: list[Excess] = []
    for r, f, k in zip(*np.nonzero(beyond > 1e-6), strict=True):
        worst.append(
            Excess(
                rec.fuse_ids[f], LINES[k], float(rec.t_s[r]), float(over[r, f, k]), float(explained[r, f, k])
            )
        )
    worst.sort(key=lambda e: e.explained_a - e.over_a)
    episodes = int(np.count_nonzero(np.diff((over > 0).any(axis=(1, 2)).astype(np.int8)) == 1))
    return OverloadCheck(
        overload_as=float(over[judged].sum() * dt),
        explained_as=float(np.minimum(over, explained)[judged].sum() * dt),
        worst=tuple(worst),
        episodes=episodes,
    )


def unforeseen_rise_a(
    loaded: LoadedScenario,
    rec: Recording,
    *,
    reaction_s: float,
    t0_s: float = 0.0,
    windows: Sequence[Window] = (),
) -> F64:
    """(rows, fuses, 3): per fuse line, how much unforeseeable loads rose within the reaction time."""
    scenario = loaded.scenario
    n = rec.rows
    t = rec.t_s[:n]
    since = _window_starts(t, reaction_s, windows)
    out = np.zeros((n, len(rec.fuse_ids), 3))
    zone = ZoneInfo(scenario.timezone)
    local = np.array([_local_s_of_day(scenario.start_utc, t0_s + float(x), zone) for x in t])
    it = scenario.grid.type == "IT"
    for spec in scenario.base_loads:
        profile = BaseLoadProfile(spec, scenario.duration_s, scenario.seed)
        series = np.array([profile.currents_a(float(x), float(loc)) for x, loc in zip(t, local, strict=True)])
        rises = np.stack([_rise(series[:, k], t, since) for k in range(3)], axis=1)
        if it:
            rises = np.stack([rises[:, a] + rises[:, b] for a, b in _IT_BRANCHES_OF_LINE], axis=1)
        for f in _path_to_root(rec, rec.fuse_ids.index(spec.fuse)):
            out[:, f, :] += rises
    lines_of = _connector_lines(loaded)
    dead = [w for w in windows if w.cars_too]
    for c, conn in enumerate(rec.connector_ids):
        current = rec.conn_current_a[:n, c].astype(np.float64)
        add = np.zeros(n)
        for start_s in _transaction_starts(rec, c):
            # A car that plugs in draws its charger's fallback before the controller says anything.
            inside = (t >= start_s) & (t <= start_s + reaction_s)
            add = np.maximum(add, np.where(inside, current, 0.0))
        if dead:
            dead_since = _window_starts(t, reaction_s, dead, only_inside=True)
            add = np.maximum(add, _rise(current, t, dead_since))
        wired = [LINES.index(line) for line in lines_of[conn]]
        for f in rec.connector_fuse_paths[c]:
            out[:, f, wired] += add[:, None]
    return out


def _window_starts(t: F64, reaction_s: float, windows: Iterable[Window], *, only_inside: bool = False) -> F64:
    """For each row, the earliest time whose value the rise is measured from: the reaction time
    back, or further back to before a blind window the row is in (or within the reaction time of)."""
    starts = np.full_like(t, np.inf) if only_inside else t - reaction_s
    for w in windows:
        inside = (t >= w.start_s) & (t <= w.end_s + reaction_s)
        starts = np.where(inside, np.minimum(starts, w.start_s - reaction_s), starts)
    return starts


def _rise(x: F64, t: F64, since: F64) -> F64:
    """x[i] less the least x over [since[i], t[i]] (0 where since is infinite)."""
    out = np.zeros_like(x)
    lo = np.searchsorted(t, since, side="left")
    for i in range(len(x)):
        if math.isfinite(since[i]):
            out[i] = x[i] - x[lo[i] : i + 1].min()
    return out


def _path_to_root(rec: Recording, f: int) -> list[int]:
    path = []
    while f >= 0:
        path.append(f)
        f = rec.fuse_parents[f]
    return path


def _local_s_of_day(start_utc: datetime, t_s: float, zone: ZoneInfo) -> float:
    local = (start_utc + timedelta(seconds=t_s)).astimezone(zone)
    return local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6


def _connector_lines(loaded: LoadedScenario) -> dict[str, tuple[str, ...]]:
    out = {}
    for spec in loaded.scenario.chargers:
        for connector in range(1, spec.connectors + 1):
            out[f"{spec.identity}/{connector}"] = tuple(spec.lines_of(connector))
    return out


def _transaction_starts(rec: Recording, c: int) -> list[float]:
    """Rows where the connector starts offering current after offering none (a charging session
    begins, or a charger comes back from a reboot)."""
    offered = rec.conn_pilot_a[: rec.rows, c] > 0
    starts = np.flatnonzero(offered[1:] & ~offered[:-1]) + 1
    out = [float(rec.t_s[i]) for i in starts]
    if rec.rows and offered[0]:
        out.insert(0, float(rec.t_s[0]))
    return out


# ------------------------------------------------------------------------------------ the cars


def first_charge_delays_s(rec: Recording, after_s: float = 0.0) -> dict[str, float | None]:
    """Per visit that plugged in and wanted energy: seconds from plugging in to the first current
    at or after `after_s` (None: never charged). `after_s` skips the start-up, when chargers that
    have not been provisioned yet offer their hardware default to whoever is plugged in."""
    out: dict[str, float | None] = {}
    for visit in rec.visits:
        if visit.plug_s is None or visit.wanted_wh <= 0 or visit.charger is None:
            continue
        c = rec.connector_ids.index(f"{visit.charger}/{visit.connector}")
        rows = (rec.t_s >= max(visit.plug_s, after_s)) & (rec.conn_current_a[:, c] > 0)
        hit = np.flatnonzero(rows)
        out[visit.name] = None if len(hit) == 0 else float(rec.t_s[hit[0]] - visit.plug_s)
    return out


def starved(rec: Recording, plugged_before_s: float) -> list[VisitRecord]:
    """Cars plugged in before `plugged_before_s`, wanting energy, that got none."""
    return [
        v
        for v in rec.visits
        if v.plug_s is not None and v.plug_s <= plugged_before_s and v.wanted_wh > 1.0 and v.delivered_wh <= 0
    ]
