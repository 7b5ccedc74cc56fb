"""The project issue's hardware-in-the-loop requirements: the real daemon (`sitectl run`) against the
simulated garage over the real protocols (HAN frames on a pty, OCPP 1.6J and 2.0.1 websockets), on
one simulated timeline. Every quantity asserted is simulated time or current from the simulator's
ground truth, or the daemon's own records (its status, its ledger).

(e), 200 SIGKILLs during ledger writes, is tests/integration/test_ledger_sigkill.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from simulator.recording import Recording
from tests.hil.sites import tn_site, visit
from tests.support.hil import HilRun, run_hil
from tests.support.hil_checks import check_overload, first_charge_delays_s

pytestmark = [pytest.mark.hil]

# A row every 0.25 s (one physics step) where a bound is measured to the second.
EVERY_STEP = 1


def line_a(rec: Recording, fuse: str, line: str) -> Any:
    return rec.fuse_a[: rec.rows, rec.fuse_ids.index(fuse), ("L1", "L2", "L3").index(line)]


def offered_a(rec: Recording) -> Any:
    """(rows, connectors): the current each connector offers its car (0 without a transaction)."""
    return rec.conn_pilot_a[: rec.rows]


# ----------------------------------------------------------------------------------------- (a)

# Long enough for the eight cars to be started and raised on a loaded machine (one CI run in
# about twenty found L1 at 80 A for the 20 s before a step at 120 s).
STEP_AT_S = 180.0


async def test_a_base_load_step_on_one_line_is_brought_under_the_limit_within_15_s(tmp_path: Path) -> None:
    """(a) +40 A of base load switched on L1 of a full 100 A main fuse is shed within 15 s.

    Eight cars (five three-phase 16 A, three single-phase 32 A on L1) want 176 A on L1: the daemon
    fills L1 to its 98 A (rating less the 2 A margin) over 10 A of building load. At 180 s a 40 A
    load switches on L1 alone. The Kaifa meter shows the rise in its next power frame (2 s), the
    daemon lowers the cars, the chargers apply it (1 s) and the cars follow (up to 5 s).

    Measured on the 2-core machine at 30x (9 runs): L1 peaks at 131-137 A and is back under 100 A
    4.25-6.25 s after the step, and stays there; no trip (a gG 100 A link takes minutes at 1.4x).
    """
    chargers = [(f"CP-{n}", ["L1", "L2", "L3"], 16.0, 6.0) for n in range(1, 6)]
    chargers += [(f"CP-{n}", ["L1"], 32.0, 6.0) for n in range(6, 9)]
    visits = "".join(
        visit("3ph-16" if n < 6 else "1ph-32", f"CP-{n}", arrival_s=2.0 * n, departure_s=10_000)
        for n in range(1, 9)
    )
    loads = f"""
[[base_loads]]
id = "building"
fuse = "main"
kind = "constant"
amps_a = [10, 10, 10]
noise_fraction = 0

[[base_loads]]
id = "sauna"
fuse = "main"
kind = "step"
amps_a = [40, 0, 0]
at_s = {STEP_AT_S:g}
noise_fraction = 0
"""
    loaded = tn_site(
        "hil-base-load-step",
        main_a=100,
        chargers=chargers,
        duration_s=STEP_AT_S + 60,
        speed=30,
        extra=loads + visits,
        record_every_steps=EVERY_STEP,
    )
    result = await run_hil(loaded, tmp_path)
    rec = result.recording
    l1 = line_a(rec, "main", "L1")
    t = rec.t_s[: rec.rows]
    before = (t > STEP_AT_S - 20) & (t < STEP_AT_S)
    after = t >= STEP_AT_S
    if not l1[before].max() > 85.0:
        last = int(np.flatnonzero(before)[-1])
        cars = dict(zip(rec.connector_ids, rec.conn_current_a[last].round(1).tolist(), strict=True))
        offers = dict(zip(rec.connector_ids, rec.conn_pilot_a[last].round(1).tolist(), strict=True))
        raise AssertionError(
            f"the site was not full before the step (L1 at most {l1[before].max():.1f} A): the test shows "
            f"nothing\ncars drawing {cars}\noffered {offers}\n{result.daemon_log_tail()}"
        )
    assert l1[after].max() > 100.0 + 20.0, "the step did not overload L1: the test shows nothing"
    over = np.flatnonzero(after & (l1 > 100.0))
    back_s = float(t[over[-1]] - STEP_AT_S) + rec.row_interval_s
    assert back_s <= 15.0, f"L1 over its rating until {back_s:.2f} s after the step"
    assert result.report["trips"] == []
    for line in ("L2", "L3"):
        assert line_a(rec, "main", line).max() <= 100.0
    assert result.daemon_exit_code == 0
    assert result.errors_logged() == []


# ----------------------------------------------------------------------------------------- (b)

SILENCE_AT_S = 90.0
SILENCE_S = 60.0
FULL_LIST_S = 10.0  # the Kaifa meter's list with per-line currents; staleness counts in these
# The loop ticks every 2 s when no reading wakes it; the charger applies a profile after 1 s; a
# recorded row is 0.25 s; 1.75 s for what real latencies become at 30x.
ACTUATION_S = 5.0


async def test_b_a_silent_meter_puts_every_charger_on_its_safe_current_within_3_intervals(
    tmp_path: Path,
) -> None:
    """(b) The meter goes silent: every charger offers no more than its safe current within 3 of
    the meter's intervals (30 s: the per-line currents come in the 10 s full list), and the cars
    get their shares back when it talks again.

    Four three-phase cars charge at their 16 A over a 100 A main fuse. At 90 s the meter stops
    sending for 60 s. The daemon's allocator declares the meter stale 3 full-list intervals after
    its last full list (which came at most 10 s before the silence), puts every charger on its safe
    current (6 A), and the chargers apply it.

    Measured at 30x (4 runs): all four at 6 A 27.25-29.25 s after the silence began (the daemon's
    status says `meter on fuse 'main' is stale`), back above 6 A 5.5-8.5 s after the meter returns.
    """
    chargers = [(f"CP-{n}", ["L1", "L2", "L3"], 16.0, 6.0) for n in range(1, 5)]
    visits = "".join(visit("3ph-16", f"CP-{n}", 2.0 * n, 10_000) for n in range(1, 5))
    silence = f"""
[[faults]]
at_s = {SILENCE_AT_S:g}
kind = "meter_silence"
duration_s = {SILENCE_S:g}
"""
    loaded = tn_site(
        "hil-meter-silence",
        main_a=100,
        chargers=chargers,
        duration_s=SILENCE_AT_S + SILENCE_S + 60,
        speed=30,
        extra=silence + visits,
        record_every_steps=EVERY_STEP,
    )
    result = await run_hil(loaded, tmp_path, status_every_s=2.0)
    rec = result.recording
    t = rec.t_s[: rec.rows]
    offered = offered_a(rec)
    before = (t > SILENCE_AT_S - 10) & (t < SILENCE_AT_S)
    assert offered[before].max() > 6.0, "nobody above the safe current: the test shows nothing"
    during = (t >= SILENCE_AT_S) & (t < SILENCE_AT_S + SILENCE_S)
    above = np.flatnonzero(during & (offered > 6.0).any(axis=1))
    safe_after_s = float(t[above[-1]] - SILENCE_AT_S) + rec.row_interval_s if len(above) else 0.0
    assert safe_after_s <= 3 * FULL_LIST_S + ACTUATION_S
    # Once safe, safe for the rest of the silence, and every car still charging at 6 A.
    safe_rows = during & (t >= SILENCE_AT_S + safe_after_s)
    assert (offered[safe_rows] == 6.0).all()
    stale_from_s = SILENCE_AT_S + 3 * FULL_LIST_S + ACTUATION_S
    stale = [s for at, s in result.statuses if stale_from_s < at < SILENCE_AT_S + SILENCE_S]
    assert stale, "no status answered during the silence"
    assert all("stale" in (s["allocation"]["failsafe"] or "") for s in stale)
    back = t >= SILENCE_AT_S + SILENCE_S + 40
    assert (offered[back] > 6.0).any(), "the cars did not get their shares back after the meter returned"
    assert result.daemon_exit_code == 0
    assert result.errors_logged() == []


# ----------------------------------------------------------------------------------------- (c)

KILL_AT_S = 100.0
DEAD_S = 100.0
LEASE_S = 60.0  # [policy] lease_s default: a dynamic limit expires on the charger unless refreshed


async def test_c_a_killed_daemon_leaves_chargers_on_safe_current_and_a_restart_loses_no_session(
    tmp_path: Path,
) -> None:
    """(c) SIGKILL: the chargers fall back to their safe current within the lease; after a restart
    every charging session is in the ledger once, with the energy the car took.

    Five three-phase cars charge at 16 A. At 100 s the daemon is SIGKILLed and started again 100 s
    later. While it is dead a car leaves (CP-2: its StopTransaction waits in the charger) and one
    arrives (CP-5: it starts offline, local authorization). After the restart every car leaves
    before the end. The ledger must hold exactly one session per visit (charger, tag), every one
    stopped by the charger, with energy (stop - start register) equal to the car's integrated energy
    within the 1 Wh the registers are rounded to.

    Measured at 30x (5 runs): every charger at 6 A 43.75-50.25 s after the kill (the lease is
    refreshed at half its 60 s life, so 30-60 s is what is left of it), sessions 6 of 6, energy
    within 0.41-0.48 Wh of the car's.
    """
    chargers = [(f"CP-{n}", ["L1", "L2", "L3"], 16.0, 6.0) for n in range(1, 6)]
    visits = visit("3ph-16", "CP-1", 2, 330)
    visits += visit("3ph-16", "CP-2", 4, KILL_AT_S + 40)  # leaves while the daemon is dead
    visits += visit("3ph-16", "CP-3", 6, 320)
    visits += visit("3ph-16-slow", "CP-4", 8, 310)
    visits += visit("3ph-16", "CP-5", KILL_AT_S + 20, 300)  # arrives while the daemon is dead
    visits += visit("1ph-32", "CP-2", KILL_AT_S + DEAD_S + 30, 300)  # after the restart
    kill = f"""
[[faults]]
at_s = {KILL_AT_S:g}
kind = "controller_kill"
duration_s = {DEAD_S:g}
"""
    loaded = tn_site(
        "hil-controller-kill",
        main_a=100,
        chargers=chargers,
        duration_s=340,
        speed=30,
        extra=kill + visits,
        record_every_steps=EVERY_STEP,
    )

    async def watch(run: HilRun) -> tuple[bool, bool, int]:
        # The daemon's own view: gone while killed, back in control of every charger after.
        await run.sleep_until(KILL_AT_S + 10)
        answered_dead = await run.answers()
        await run.sleep_until(KILL_AT_S + DEAD_S + 60)
        status = await run.status()
        online = sum(1 for c in status["chargers"].values() if c is not None and c["online"])
        return answered_dead, await run.answers(), online

    result = await run_hil(loaded, tmp_path, probe=watch)
    assert result.probe == (False, True, 5)
    rec = result.recording
    t = rec.t_s[: rec.rows]
    offered = offered_a(rec)
    before = (t > KILL_AT_S - 10) & (t < KILL_AT_S)
    assert offered[before].max() > 6.0, "nobody above the safe current: the test shows nothing"
    dead = (t >= KILL_AT_S) & (t < KILL_AT_S + DEAD_S)
    above = np.flatnonzero(dead & (offered > 6.0).any(axis=1))
    fallback_s = float(t[above[-1]] - KILL_AT_S) + rec.row_interval_s if len(above) else 0.0
    assert fallback_s <= LEASE_S + rec.row_interval_s, f"above safe current {fallback_s:.2f} s after the kill"
    assert (offered[dead & (t >= KILL_AT_S + fallback_s)] <= 6.0).all()
    assert result.report["trips"] == []
    assert any(line.startswith("daemon restarted") for line in result.lines)

    sessions = await result.sessions()
    plugged = [v for v in rec.visits if v.plug_s is not None]
    assert len(plugged) == 6
    by_visit = {(str(v.charger), v.id_tag): v for v in plugged}
    keys = [(s.charger_id, str(s.id_tag)) for s in sessions]
    assert sorted(keys) == sorted(by_visit), "sessions lost or duplicated"
    assert len({(s.charger_id, s.transaction_id) for s in sessions}) == len(sessions)
    for session in sessions:
        car = by_visit[(session.charger_id, str(session.id_tag))]
        assert session.stopped_utc is not None and str(session.stop_source) == "charger", session
        assert session.energy_wh is not None
        assert abs(session.energy_wh - car.delivered_wh) <= 1.0, (session, car.delivered_wh)
    assert result.daemon_exit_code == 0


# ----------------------------------------------------------------------------------------- (d)

ROTATION_S = 300.0
CARS = 24
PLACES = 10


@pytest.mark.slow
async def test_d_24_cars_on_fuses_that_fit_10_each_charge_within_the_rotation_bound(tmp_path: Path) -> None:
    """(d) 24 cars on a 63 A main fuse that fits 10 of them at their 6 A minimum: each car charges
    within ceil((24 - 10) / 10) = 2 rotation periods of plugging in, and no car waits longer.

    24 three-phase chargers, 24 three-phase cars plugged in over the first 24 s, nothing else on
    the fuse: 61 A (rating less the 2 A margin) fits 10 cars at 6 A, not 11. The rotation period is
    300 s and `max_starts_per_hour` 6, so the period is not stretched (3600 * 10 / (24 * 6) = 250 s
    < 300 s); the fail-safe current is 0 A (24 x 6 A does not fit). Bound: 600 s + 60 s for the
    start (the chargers boot, the first wave of increases) and the restart hold.

    Measured at 40x (5 runs): every car's first current at most 324-621 s after plugging in,
    longest wait 582-637 s, Jain's index of energy over the 24 cars 0.77-0.85 after 900 s, no
    overload. Before the fixes of this suite (a car started and paused at once at a turn lost its
    place in the queue; the base load jumped at every turn) 3-5 cars waited 900+ s.
    """
    chargers = [(f"CP-{n:02d}", ["L1", "L2", "L3"], 16.0, 0.0) for n in range(1, CARS + 1)]
    visits = "".join(visit("3ph-16", f"CP-{n:02d}", float(n), 100_000, soc=0.1) for n in range(1, CARS + 1))
    loaded = tn_site(
        "hil-rotation",
        main_a=63,
        chargers=chargers,
        duration_s=900,
        speed=40,
        extra=visits,
        policy=f"rotation_period_s = {ROTATION_S:g}\nmax_starts_per_hour = 6",
    )
    result = await run_hil(loaded, tmp_path)
    rec = result.recording
    bound_s = -(-(CARS - PLACES) // PLACES) * ROTATION_S + 60.0
    delays = first_charge_delays_s(rec, after_s=30.0)
    assert len(delays) == CARS
    late = {name: d for name, d in delays.items() if d is None or d > bound_s}
    assert late == {}, f"not charged within {bound_s:.0f} s: {late}"
    assert result.report["waits"]["longest_plugged_not_charging_s"] <= bound_s
    charging = (rec.conn_current_a[: rec.rows] > 0).sum(axis=1)
    t = rec.t_s[: rec.rows]
    assert charging[t > 120].max() <= PLACES, "more cars at once than the fuse fits at 6 A"
    assert result.report["trips"] == []
    overload = check_overload(loaded, rec, reaction_s=13.0, t0_s=result.t0_s, startup_s=30.0)
    assert overload.worst == (), overload.describe()
    # Jain's index of the 24 cars' energy: turns are whole periods, so after ~3 of them some cars
    # have had one more than others (and a car that used up its starts keeps charging, as the
    # allocator documents); 0.7 is below every run measured.
    jain = result.report["fairness"]["jain_energy"]
    assert jain is not None and jain >= 0.7
