"""Every scenario of the library (simulator/scenarios/*.toml), live, with the daemon under test.

Each runs shortened and faster than real time (the daemon shares the simulator's clock), and its
ground truth is held to what a controlled garage must show:

- no fuse trips, and the daemon shuts down cleanly having logged no error;
- no overload beyond what unforeseeable changes explain (`tests.support.hil_checks`): at every
  recorded instant a fuse line's excess over its rating is at most how much loads the controller
  could not foresee (lift starts, ventilation, noise, cars plugging in, blind or dead intervals)
  added within the reaction time: one power-only meter frame (Aidon 2.5 s, Kaifa 2 s; Kamstrup
  has none, so its 10 s full list) + 1 s for the loop and the command + 1 s for the charger to
  apply it + 5 s for the car to follow (IEC 61851-1) + 1 s recording row + 3 s for the simulated
  time that real latencies become at these speeds;
- no starvation: every car that wanted energy charged within the rotation bound
  ceil((N - K) / K) rotation periods (docs/snapshot.md) + 60 s, where N is the most cars wanting
  energy at once and K the fewest charging while one waited (the places the fuses gave);
- fairness (Jain's index of energy per plugged-in hour among cars short of their target) above a
  floor measured per scenario: below 1 by construction, since max-min fairness shares current and
  a three-phase car turns the same current into up to three times the energy of a one-phase car;
- energy at departure: a car that left short of its target had charged (unless it left within the
  rotation bound). The shortened runs see few departures; (c) in test_requirements checks the
  energy of every session to the watt-hour.

The figures in each case's `measured` are from runs on the 2-core development machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from simulator.recording import Recording
from simulator.scenario_file import LoadedScenario, load_scenario
from tests.support import REPO_ROOT
from tests.support.hil import HilResult, run_hil
from tests.support.hil_checks import check_overload, first_charge_delays_s

pytestmark = [pytest.mark.hil]

LIBRARY = REPO_ROOT / "simulator" / "scenarios"
# Chargers connecting for the first time offer their hardware default until the daemon has
# installed their fail-safe profile; the run is judged from then on.
STARTUP_S = 30.0
SLACK_S = 3.0
POWER_FRAME_S = {"aidon": 2.5, "landis_gyr": 2.5, "kaifa": 2.0, "kamstrup": 10.0}


@dataclass(frozen=True, slots=True)
class Case:
    duration_s: float
    speed: float
    jain_min: float
    measured: str  # what the runs showed; the thresholds are set below these with the reason
    compress: float = 1.0  # fault times (and the longest faults) divided by this


# Jain floors: the measured index less 0.1 for run-to-run variation (the daemon's timing is part of a
# live run). Speed 20x: a real stall of the daemon becomes 20 times as much simulated time, and the
# overload check allows 3 s of it. At 60x the daemon fell behind now and then; at 30x a CI run (and
# one run in four beside a busy loop) saw the demo garage 18 s, not 6 s, back under its fuse after a
# lift start; at 20x six runs beside a busy loop were all within the bound. The `measured` texts are
# from 30x runs.
CASES: dict[str, Case] = {
    "demo_garage.toml": Case(
        600, 20, 0.80, "Jain 0.90-0.93; 61-111 A*s in 1-2 episodes after the lift; longest wait 40-50 s"
    ),
    "it_125a_40_evening.toml": Case(600, 20, 0.78, "Jain 0.87-0.93; 1-12 A*s after the lift; waits 33-36 s"),
    "tn_63a_20.toml": Case(600, 20, 0.72, "Jain 0.83-0.84; 0-15 A*s after the ventilation; waits 22-44 s"),
    "kamstrup_10s.toml": Case(600, 20, 0.70, "Jain 0.78-0.93; 88-460 A*s, 5-12 s after each lift start"),
    "aidon_it_no_l2.toml": Case(600, 20, 0.78, "Jain 0.87-0.97; 135-225 A*s, 4-6 s after each lift start"),
    "fault_drills.toml": Case(1000, 20, 0.85, "Jain 0.95; no overload; longest wait 147 s", 3.0),
    "large_400a_200.toml": Case(400, 20, 0.65, "Jain 0.75-0.77; no overload; longest wait 26-40 s"),
}


def compressed(loaded: LoadedScenario, factor: float) -> LoadedScenario:
    """The fault drills in less time: every fault `factor` times earlier, the two that last longest
    (ignore_profiles, network_delay) `factor` times shorter; the others keep their durations (a
    silence must outlast the 30 s staleness, a kill the 60 s lease)."""
    if factor == 1.0:
        return loaded
    scenario = loaded.scenario
    faults = tuple(
        replace(
            f,
            at_s=f.at_s / factor,
            duration_s=f.duration_s / factor
            if f.kind in ("ignore_profiles", "network_delay")
            else f.duration_s,
        )
        for f in scenario.faults
    )
    return replace(
        loaded,
        scenario=replace(scenario, faults=faults),
        meter_faults=tuple(replace(f, at_s=f.at_s / factor) for f in loaded.meter_faults),
        controller_kills=tuple(replace(k, at_s=k.at_s / factor) for k in loaded.controller_kills),
    )


def reaction_s(vendor: str | None) -> float:
    frame_s = POWER_FRAME_S.get(vendor or "aidon", 10.0)
    return frame_s + 1.0 + 1.0 + 5.0 + 1.0 + SLACK_S


def test_every_library_scenario_has_a_case() -> None:
    assert sorted(CASES) == sorted(p.name for p in LIBRARY.glob("*.toml"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
async def test_library_scenario_with_the_daemon(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    loaded = compressed(load_scenario(LIBRARY / name), case.compress).with_overrides(
        duration_s=case.duration_s
    )
    result = await run_hil(loaded, tmp_path, speed=case.speed)
    report, rec = result.report, result.recording
    summary = _summary(result)

    assert report["trips"] == [], summary
    assert result.daemon_exit_code == 0, summary
    assert result.errors_logged() == [], summary

    vendor = loaded.meter.vendor if loaded.meter is not None else None
    overload = check_overload(
        loaded, rec, reaction_s=reaction_s(vendor), t0_s=result.t0_s, startup_s=STARTUP_S
    )
    assert overload.worst == (), f"{overload.describe()}\n{summary}"

    bound_s = rotation_bound_s(rec, _rotation_period_s(loaded.site.policy)) + 60.0
    delays = first_charge_delays_s(rec, after_s=STARTUP_S)
    late = {
        name: delay
        for name, delay in delays.items()
        if (delay is None or delay > bound_s) and _plug_s(rec, name) <= rec.t_s[-1] - bound_s
    }
    assert late == {}, f"cars that did not charge within {bound_s:.0f} s: {late}\n{summary}"
    assert report["waits"]["longest_plugged_not_charging_s"] <= bound_s, summary

    # A car that left short of its target had charged, unless it left within the rotation bound.
    short = [
        v["name"]
        for v in report["visits"]
        if v["departed"]
        and v["unmet_wh"] > 1.0
        and v["plug_s"] is not None
        and v["departure_s"] - v["plug_s"] > bound_s
        and v["delivered_wh"] <= 0
    ]
    assert short == [], summary

    jain = report["fairness"]["jain_energy_per_hour"]
    assert jain is None or jain >= case.jain_min, summary


def rotation_bound_s(rec: Recording, period_s: float) -> float:
    """max(1, ceil((N - K) / K)) rotation periods: N the most cars wanting energy at once, K the
    places the fuses gave - the median number charging while some car waited (a lift start pauses
    cars for seconds; that is not the site's capacity). At least one period: a car paused by a fuse
    line in a full garage waits for the next rotation like any other."""
    wanting = rec.conn_wants[: rec.rows]
    charging = wanting & (rec.conn_current_a[: rec.rows] > 0)
    judged = rec.t_s[: rec.rows] >= STARTUP_S
    n = int(wanting[judged].sum(axis=1).max(initial=0))
    waiting_rows = judged & (wanting & ~charging).any(axis=1)
    if not waiting_rows.any():
        return period_s
    k = max(1, int(np.median(charging[waiting_rows].sum(axis=1))))
    return max(1, math.ceil(max(0, n - k) / k)) * period_s


def _rotation_period_s(policy: dict[str, object] | None) -> float:
    value = (policy or {}).get("rotation_period_s", 900.0)
    assert isinstance(value, int | float)
    return float(value)


def _plug_s(rec: Recording, name: str) -> float:
    return next(v.plug_s for v in rec.visits if v.name == name and v.plug_s is not None)


def _summary(result: HilResult) -> str:
    from simulator.runner import summary_lines

    lines = summary_lines(result.report)
    lines.append(f"work directory: {result.workdir}")
    return "\n".join(lines)
