"""The pacer: decreases at once, increases after the decreases have settled, in waves, ramped, with a
deadband, never while the site holds its estimate; a charger of unknown limit starts from its safe
current. And the whole sequence with the real dispatcher on an accelerated clock."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime

from controller.allocation import (
    Allocation,
    Charger,
    ChargerDecision,
    Drive,
    Fuse,
    Grid,
    Meter,
    Policy,
    SiteSnapshot,
    Vehicle,
)
from controller.dispatch import ChargerLimits, Dispatcher
from controller.pacing import DispatchState, Paced, Pacer, PacingConfig
from drivers.clock import ScaledClock
from drivers.contracts import Line
from tests.unit.test_dispatch import RecordingCharger

NOW = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)
THREE: tuple[Line, ...] = ("L1", "L2", "L3")
CONFIG = PacingConfig(settle_s=5.0, increase_interval_s=10.0)
OPEN = DispatchState()


def site(*chargers: Charger, limit_a: float = 63.0) -> SiteSnapshot:
    return SiteSnapshot(NOW, Grid("TN"), (Fuse("main", limit_a),), chargers, policy=Policy())


def charger(cid: str, setpoint_a: float | None, drive: Drive = Drive.ACKNOWLEDGED) -> Charger:
    return Charger(cid, "main", THREE, 32.0, setpoint_a=setpoint_a, safe_current_a=6.0, drive=drive)


def shares(**targets: float) -> Allocation:
    return Allocation(
        chargers={
            cid: ChargerDecision(a, "charging" if a > 0 else "paused", None, a) for cid, a in targets.items()
        },
        fuses={},
    )


def pace(pacer: Pacer, snapshot: SiteSnapshot, allocation: Allocation, **kw: object) -> dict[str, Paced]:
    setpoints = {c.id: c.setpoint_a for c in snapshot.chargers}
    args: dict[str, object] = {"now_mono": 100.0, "dispatch": OPEN, **kw}
    return pacer.pace(snapshot, allocation, setpoints, **args)  # type: ignore[arg-type]


def test_a_decrease_goes_out_at_once_and_holds_back_every_increase() -> None:
    snapshot = site(charger("a", 16.0), charger("b", 6.0))
    paced = pace(Pacer(CONFIG), snapshot, shares(a=8.0, b=14.0))
    assert paced == {"a": Paced(8.0), "b": Paced(6.0, "pending")}


def test_increases_wait_for_the_decreases_in_flight_and_their_settling() -> None:
    snapshot = site(charger("a", 8.0), charger("b", 6.0))
    allocation = shares(a=8.0, b=14.0)
    pacer = Pacer(CONFIG)
    assert pace(pacer, snapshot, allocation, dispatch=DispatchState(decreases_pending=True))["b"] == Paced(
        6.0, "pending"
    )
    acked = DispatchState(last_decrease_ack_mono=97.0)
    assert pace(pacer, snapshot, allocation, dispatch=acked)["b"] == Paced(6.0, "settle")
    assert pace(pacer, snapshot, allocation, dispatch=acked, now_mono=102.0)["b"] == Paced(10.0, "ramp")


def test_increases_go_out_in_waves_an_interval_apart() -> None:
    pacer = Pacer(CONFIG)
    first = pace(pacer, site(charger("a", 6.0), charger("b", 6.0)), shares(a=8.0, b=6.0))
    assert first["a"] == Paced(8.0)
    later = site(charger("a", 8.0), charger("b", 6.0))
    assert pace(pacer, later, shares(a=8.0, b=9.0), now_mono=105.0)["b"] == Paced(6.0, "wave")
    assert pace(pacer, later, shares(a=8.0, b=9.0), now_mono=110.0)["b"] == Paced(9.0)
    assert pacer.waves == 2


def test_nobody_is_raised_while_the_site_holds_its_estimate_but_decreases_go() -> None:
    snapshot = site(charger("a", 16.0), charger("b", 6.0))
    paced = pace(Pacer(CONFIG), snapshot, shares(a=16.0, b=12.0), holding=True)
    assert paced["b"] == Paced(6.0, "holding")
    paced = pace(Pacer(CONFIG), snapshot, shares(a=10.0, b=6.0), holding=True)
    assert paced["a"] == Paced(10.0)


def test_an_unknown_limit_starts_from_the_safe_current_and_counts_as_a_pending_decrease() -> None:
    snapshot = site(charger("a", None, Drive.UNKNOWN), charger("b", 6.0))
    paced = pace(Pacer(CONFIG), snapshot, shares(a=20.0, b=12.0))
    assert paced == {"a": Paced(6.0, "unknown"), "b": Paced(6.0, "pending")}
    assert pace(Pacer(CONFIG), snapshot, shares(a=0.0, b=6.0))["a"] == Paced(0.0)


def test_small_rises_are_not_made_but_a_start_always_is() -> None:
    snapshot = site(charger("a", 10.0), charger("b", 0.0))
    paced = pace(Pacer(CONFIG), snapshot, shares(a=10.6, b=6.0))
    assert paced == {"a": Paced(10.0, "deadband"), "b": Paced(6.0)}


def test_a_decrease_kept_within_the_deadband_is_made_first_when_a_start_needs_its_room() -> None:
    # 20 A less the 2 A margin: a at 12.8 A (share 12) and b starting at 6 A do not fit together.
    pacer = Pacer(CONFIG)
    tight = site(charger("a", 12.8), charger("b", 0.0), limit_a=20.0)
    assert pace(pacer, tight, shares(a=12.0, b=6.0)) == {"a": Paced(12.0), "b": Paced(0.0, "pending")}
    assert pacer.waves == 0
    # With room for both, the small decrease is not made and the start goes out.
    roomy = site(charger("a", 12.8), charger("b", 0.0))
    assert pace(pacer, roomy, shares(a=12.0, b=6.0)) == {"a": Paced(12.8, "deadband"), "b": Paced(6.0)}


def test_chargers_that_are_not_commandable_are_commanded_nothing() -> None:
    snapshot = site(charger("a", 16.0, Drive.FAILED), charger("b", None, Drive.OFFLINE), charger("c", 6.0))
    paced = pace(Pacer(CONFIG), snapshot, shares(a=8.0, b=6.0, c=8.0))
    assert set(paced) == {"c"}


async def test_with_the_dispatcher_the_increase_starts_after_the_decrease_is_acknowledged_and_settled() -> (
    None
):
    # The loop's part played by hand: pace, submit, and again whenever the dispatcher reports.
    clock = ScaledClock(200.0, NOW)
    log: list = []  # type: ignore[type-arg]
    chargers = {cid: RecordingCharger(cid, clock, log) for cid in ("a", "b", "c")}
    woken = asyncio.Event()
    dispatcher = Dispatcher(chargers, clock, limits=dict.fromkeys(chargers, ChargerLimits(6.0, 32.0)))
    dispatcher.on_change = woken.set
    pacer = Pacer(CONFIG)
    task = asyncio.get_running_loop().create_task(dispatcher.run())
    try:
        dispatcher.submit({"a": 16.0, "b": 6.0, "c": 20.0})
        while not all(dispatcher.acked_a(c) is not None for c in chargers):
            await clock.sleep(0.05)
        await clock.sleep(CONFIG.increase_interval_s)
        log.clear()
        allocation = shares(a=8.0, b=14.0, c=10.0)
        deadline = clock.monotonic() + 120
        while dispatcher.acked_a("b") != 10.0:  # 6 + one 4 A step
            assert clock.monotonic() < deadline
            budgets = {cid: dispatcher.budget(cid) for cid in chargers}
            snapshot = site(*(charger(cid, b.setpoint_a, b.drive) for cid, b in budgets.items()))
            paced = pacer.pace(
                snapshot,
                allocation,
                {cid: b.setpoint_a for cid, b in budgets.items()},
                now_mono=clock.monotonic(),
                dispatch=DispatchState(dispatcher.last_decrease_ack_mono, dispatcher.decreases_pending()),
            )
            dispatcher.submit({cid: p.current_a for cid, p in paced.items()})
            woken.clear()
            await clock.sleep(0.5)
        a, b, c = ([call for call in log if call.charger_id == cid] for cid in ("a", "b", "c"))
        assert a[0].current_a == 8.0 and c[0].current_a == 10.0 and b[0].current_a == 10.0
        decreases_acked = max(a[0].ended_s or math.inf, c[0].ended_s or math.inf)
        assert b[0].started_s >= decreases_acked + CONFIG.settle_s
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_on_it_a_ramp_of_a_car_whose_pair_is_unknown_waits_for_headroom_a_start_never() -> None:
    # A 40 A main (38 A usable), the meter at 20 A: a three-wire charger's single-phase car at 10 A
    # (pair unknown), its share 14 A. The raise would seem to add (sqrt 3 - 1) x 4 A of base load on
    # top of its 4 A: with 8 A of headroom it goes, with 4 A it waits. A start never waits.
    def garage(base_a: float, setpoint_a: float) -> SiteSnapshot:
        unknown = Vehicle(active_lines=None)
        car = Charger("a", "main", THREE, 32.0, setpoint_a=setpoint_a, vehicle=unknown, safe_current_a=6.0)
        meter = Meter("main", (base_a,) * 3, 1.0)  # what the car draws is in it, unreported
        return SiteSnapshot(NOW, Grid("IT"), (Fuse("main", 40.0),), (car,), (meter,), Policy())

    roomy = garage(20.0, 10.0)
    assert pace(Pacer(CONFIG), roomy, shares(a=14.0))["a"] == Paced(14.0)
    tight = garage(24.0, 10.0)
    assert pace(Pacer(CONFIG), tight, shares(a=14.0))["a"] == Paced(10.0, "lines")
    starting = garage(24.0, 0.0)
    assert pace(Pacer(CONFIG), starting, shares(a=6.0))["a"] == Paced(6.0)
