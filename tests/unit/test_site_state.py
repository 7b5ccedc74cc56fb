"""Readings and statuses into the snapshot: lines learnt, unknowns kept unknown, rotation memory."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.allocation import (
    Allocation,
    Charger,
    ChargerDecision,
    Drive,
    SiteSnapshot,
    Vehicle,
    base_at_meters,
)
from controller.allocation.model import ChargerState
from controller.dispatch import Budget
from controller.settings import SiteSettings, load_settings
from controller.site.snapshot import SiteState
from drivers.contracts import (
    ChargerStatus,
    ConnectorState,
    MeterList,
    MeterReading,
    MeterVendor,
    ReceiveTime,
)

T0 = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)

SITE = """
[site]
id = "test"
[grid]
type = "{grid}"
[meter]
fuse = "main"
port = "/dev/null"
[[fuses]]
id = "main"
limit_a = 63
[[fuses]]
id = "c1"
parent = "main"
limit_a = 32
[ocpp]
listen = "127.0.0.1:9000"
[[chargers]]
id = "one"
protocol = "ocpp"
fuse = "c1"
lines = {one_lines}
max_a = 32
safe_current_a = 6
password_hash = "x"
[[chargers]]
id = "three"
protocol = "ocpp"
fuse = "c1"
lines = ["L2", "L3", "L1"]
max_a = 32
safe_current_a = 6
password_hash = "x"
"""


def settings(tmp_path: Path, grid: str = "IT") -> SiteSettings:
    one_lines = '["L1", "L2"]' if grid == "IT" else '["L2"]'
    path = tmp_path / "site.toml"
    path.write_text(SITE.format(grid=grid, one_lines=one_lines))
    return load_settings(path, {})


def status(
    charger_id: str,
    state: ConnectorState,
    measured: tuple[float | None, float | None, float | None] = (None, None, None),
    *,
    seen_s: float = 0.0,
    online: bool = True,
) -> ChargerStatus:
    return ChargerStatus(
        charger_id=charger_id,
        online=online,
        state=state,
        vehicle_connected=state is not ConnectorState.AVAILABLE,
        measured_current_a=measured,
        transaction_id="7" if state is not ConnectorState.AVAILABLE else None,
        last_seen=ReceiveTime(seen_s, T0),
        # As the OCPP driver does: the time of the last report of currents, also a repeated one.
        currents_received=ReceiveTime(seen_s, T0) if any(v is not None for v in measured) else None,
    )


def held(setpoint_a: Callable[[str], float | None]) -> dict[str, Budget]:
    """The dispatcher's budgets with each charger's limit confirmed at `setpoint_a(id)` (None:
    nothing confirmed yet)."""
    out = {}
    for cid in ("one", "three"):
        value = setpoint_a(cid)
        out[cid] = (
            Budget(Drive.UNKNOWN, None, 32.0) if value is None else Budget(Drive.ACKNOWLEDGED, value, value)
        )
    return out


def snapshot_charger(
    site: SiteState, charger_id: str, now_s: float = 1.0, setpoint_a: float | None = None
) -> Charger:
    snap = site.snapshot(now_s, T0 + timedelta(seconds=now_s), held(lambda _cid: setpoint_a))
    return next(c for c in snap.chargers if c.id == charger_id)


def test_three_phase_car_lines_follow_the_charger_rotation(tmp_path: Path) -> None:
    site = SiteState(settings(tmp_path))
    site.ingest_charger(status("three", ConnectorState.CHARGING, (15.9, 16.1, 15.8)))
    charger = snapshot_charger(site, "three")
    assert charger.vehicle is not None
    assert charger.vehicle.active_lines == ("L2", "L3", "L1")
    assert charger.vehicle.drawing_a == (15.8, 15.9, 16.1)  # terminal 1 is on L2, terminal 3 on L1


def test_single_phase_car_on_a_three_phase_it_charger_stays_unknown(tmp_path: Path) -> None:
    # One terminal of three carries current: which line pair it is cannot be told, so the worst case.
    site = SiteState(settings(tmp_path))
    site.ingest_charger(status("three", ConnectorState.CHARGING, (16.0, 0.0, 0.0)))
    vehicle = snapshot_charger(site, "three").vehicle
    assert vehicle is not None
    assert vehicle.active_lines is None


def test_single_phase_car_on_a_three_phase_tn_charger_is_learnt(tmp_path: Path) -> None:
    site = SiteState(settings(tmp_path, "TN"))
    site.ingest_charger(status("three", ConnectorState.CHARGING, (16.0, 0.2, None)))
    vehicle = snapshot_charger(site, "three").vehicle
    assert vehicle is not None
    assert vehicle.active_lines == ("L2",)


def test_it_single_phase_charger_loads_both_lines_with_its_branch_current(tmp_path: Path) -> None:
    site = SiteState(settings(tmp_path))
    site.ingest_charger(status("one", ConnectorState.CHARGING, (12.5, None, None)))
    vehicle = snapshot_charger(site, "one").vehicle
    assert vehicle is not None
    assert vehicle.active_lines == ("L1", "L2")
    assert vehicle.drawing_a == (12.5, 12.5, None)


def test_learnt_lines_survive_a_pause_and_are_forgotten_when_the_car_leaves(tmp_path: Path) -> None:
    site = SiteState(settings(tmp_path, "TN"))
    site.ingest_charger(status("three", ConnectorState.CHARGING, (16.0, 16.0, 0.0)))
    site.ingest_charger(status("three", ConnectorState.SUSPENDED_EVSE, (0.0, 0.0, 0.0)))
    vehicle = snapshot_charger(site, "three").vehicle
    assert vehicle is not None
    assert vehicle.active_lines == ("L2", "L3")
    site.ingest_charger(status("three", ConnectorState.AVAILABLE))
    assert snapshot_charger(site, "three").vehicle is None
    site.ingest_charger(status("three", ConnectorState.PREPARING))
    vehicle = snapshot_charger(site, "three").vehicle
    assert vehicle is not None
    assert vehicle.active_lines is None


@pytest.mark.parametrize(
    ("state", "wants"),
    [
        (ConnectorState.CHARGING, True),
        (ConnectorState.SUSPENDED_EVSE, True),
        (ConnectorState.SUSPENDED_EV, True),
        (ConnectorState.FINISHING, False),
    ],
)
def test_which_cars_want_energy(tmp_path: Path, state: ConnectorState, wants: bool) -> None:
    site = SiteState(settings(tmp_path))
    site.ingest_charger(status("three", state))
    vehicle = snapshot_charger(site, "three").vehicle
    assert vehicle is not None
    assert vehicle.wants_energy is wants


def test_a_charging_charger_that_goes_quiet_counts_as_offline(tmp_path: Path) -> None:
    site = SiteState(settings(tmp_path), charger_silent_after_s=30.0)
    site.ingest_charger(status("three", ConnectorState.CHARGING, (16.0, 16.0, 16.0), seen_s=0.0))
    assert snapshot_charger(site, "three", now_s=29.0).online
    assert not snapshot_charger(site, "three", now_s=31.0).online
    # An idle charger says little and that is fine.
    site.ingest_charger(status("one", ConnectorState.AVAILABLE, seen_s=0.0))
    assert snapshot_charger(site, "one", now_s=3600.0).online


def test_a_charger_never_heard_of_is_offline(tmp_path: Path) -> None:
    site = SiteState(settings(tmp_path))
    assert not snapshot_charger(site, "one").online


def test_meter_line_absent_stays_absent_and_age_is_reported(tmp_path: Path) -> None:
    site = SiteState(settings(tmp_path))
    site.ingest_meter(
        MeterReading(
            MeterVendor.AIDON,
            MeterList.FULL,
            ReceiveTime(5.0, T0),
            active_power_import_w=9000.0,
            current_l1_a=30.0,
            current_l2_a=None,
            current_l3_a=25.0,
        )
    )
    snap = site.snapshot(8.0, T0, held(lambda _cid: None))
    (meter,) = snap.meters
    assert meter.currents_a == (30.0, None, 25.0)
    assert meter.age_s == pytest.approx(3.0)


def test_cloud_limits_only_lower_a_fuse(tmp_path: Path) -> None:
    site = SiteState(settings(tmp_path))
    assert site.set_fuse_limit("main", 50.0) == 50.0
    assert site.set_fuse_limit("main", 80.0) == 63.0
    assert site.set_fuse_limit("main", None) == 63.0
    site.set_fuse_limit("c1", 20.0)
    snap = site.snapshot(0.0, T0, held(lambda _cid: None))
    assert {f.id: f.limit_a for f in snap.fuses} == {"main": 63.0, "c1": 20.0}


def drawing(charger: Charger) -> tuple[float | None, float | None, float | None]:
    assert charger.vehicle is not None
    return charger.vehicle.drawing_a


def decide(site: SiteState, now: datetime, reason: str = "rotation", **states: ChargerState) -> None:
    site.note_allocation(
        Allocation(
            chargers={
                cid: ChargerDecision(
                    6.0 if s == "charging" else 0.0, s, reason if s == "paused" else None, 6.0
                )
                for cid, s in states.items()
            },
            fuses={},
        ),
        now,
    )


def test_starts_and_pauses_are_the_setpoints_sent_and_are_forgotten_after_an_hour(tmp_path: Path) -> None:
    site = SiteState(settings(tmp_path))
    site.ingest_charger(status("three", ConnectorState.SUSPENDED_EVSE))

    def at(minutes: float, setpoint_a: float, state: ChargerState, reason: str = "rotation") -> Vehicle:
        now = T0 + timedelta(minutes=minutes)
        site.snapshot(minutes * 60, now, held(lambda _cid: setpoint_a))
        decide(site, now, reason, three=state)
        charger = snapshot_charger(site, "three", minutes * 60, setpoint_a)
        assert charger.vehicle is not None
        return charger.vehicle

    vehicle = at(0, 0.0, "paused")
    assert vehicle.waiting_since == T0
    assert vehicle.start_times == ()
    assert vehicle.paused_at is None
    # Decided but not yet sent (increases go out in paced waves): not a start.
    vehicle = at(10, 0.0, "charging")
    assert vehicle.start_times == ()
    at(15, 6.0, "charging")
    at(30, 0.0, "paused")
    at(45, 6.0, "charging")
    vehicle = at(50, 0.0, "paused")
    assert vehicle.charging_since is None
    assert vehicle.waiting_since == T0 + timedelta(minutes=50)
    assert vehicle.paused_at == T0 + timedelta(minutes=50)
    assert vehicle.start_times == (T0 + timedelta(minutes=15), T0 + timedelta(minutes=45))
    vehicle = at(80, 10.0, "charging")
    assert vehicle.charging_since == T0 + timedelta(minutes=80)
    assert vehicle.start_times == (T0 + timedelta(minutes=45), T0 + timedelta(minutes=80))


def test_an_unreported_increase_is_judged_against_the_setpoint_the_report_answers(
    tmp_path: Path,
) -> None:
    site = SiteState(settings(tmp_path, "TN"))
    site.ingest_charger(status("three", ConnectorState.CHARGING, (10.0, 10.0, 10.0), seen_s=0.0))
    snapshot_charger(site, "three", 0.5, setpoint_a=10.0)
    # Raised to 16 A at t=30; the report still shows 10 A. The base load must not be read lower
    # on the hope that the car follows (it is taken at its report), and the car is not mistaken
    # for one that tapers: the allocator sees the setpoint the report answers.
    raised = snapshot_charger(site, "three", 30.0, setpoint_a=16.0)
    assert drawing(raised) == (10.0, 10.0, 10.0)
    assert raised.setpoint_a == 10.0
    # A report taken after the car had time to follow is judged against the new setpoint.
    site.ingest_charger(status("three", ConnectorState.CHARGING, (12.0, 12.0, 12.0), seen_s=36.0))
    answered = snapshot_charger(site, "three", 37.0, setpoint_a=16.0)
    assert drawing(answered) == (12.0, 12.0, 12.0)
    assert answered.setpoint_a == 16.0


def test_a_decrease_counts_at_once_and_the_assumption_expires(tmp_path: Path) -> None:
    site = SiteState(settings(tmp_path, "TN"))
    site.ingest_charger(status("three", ConnectorState.CHARGING, (16.0, 16.0, 0.0), seen_s=0.0))
    snapshot_charger(site, "three", 1.0, setpoint_a=16.0)
    # Terminals 1, 2 are wired to L2, L3: the car there is taken at no more than its new limit.
    assert drawing(snapshot_charger(site, "three", 40.0, setpoint_a=6.0)) == (0.0, 6.0, 6.0)
    # No report for the whole window: back to what was last measured.
    assert drawing(snapshot_charger(site, "three", 61.0, setpoint_a=6.0)) == (0.0, 16.0, 16.0)


def test_a_paused_car_is_not_assumed_to_draw(tmp_path: Path) -> None:
    site = SiteState(settings(tmp_path, "TN"))
    site.ingest_charger(status("three", ConnectorState.SUSPENDED_EVSE, (0.0, 0.0, 0.0), seen_s=0.0))
    snapshot_charger(site, "three", 1.0, setpoint_a=0.0)
    assert drawing(snapshot_charger(site, "three", 2.0, setpoint_a=6.0)) == (0.0, 0.0, 0.0)


def test_a_restart_after_a_pause_a_fuse_forced_is_not_a_rotation_start(tmp_path: Path) -> None:
    site = SiteState(settings(tmp_path))
    site.ingest_charger(status("three", ConnectorState.SUSPENDED_EVSE))
    for minute, setpoint_a in ((0, 6.0), (1, 0.0), (3, 6.0), (4, 0.0), (6, 6.0)):
        now = T0 + timedelta(minutes=minute)
        site.snapshot(minute * 60, now, held({"three": setpoint_a, "one": None}.get))
        decide(site, now, "fuse:main:L2", three="charging" if setpoint_a else "paused")
    vehicle = snapshot_charger(site, "three", 6 * 60, 6.0).vehicle
    assert vehicle is not None
    assert vehicle.start_times == ()
    assert vehicle.paused_at == T0 + timedelta(minutes=4)


def full_list_w(mono_s: float, currents: tuple[float, float, float], power_w: float) -> MeterReading:
    return MeterReading(
        MeterVendor.KAIFA,
        MeterList.FULL,
        ReceiveTime(mono_s, T0),
        active_power_import_w=power_w,
        active_power_export_w=0.0,
        current_l1_a=currents[0],
        current_l2_a=currents[1],
        current_l3_a=currents[2],
    )


def power_only(mono_s: float, power_w: float) -> MeterReading:
    return MeterReading(
        MeterVendor.KAIFA, MeterList.POWER_ONLY, ReceiveTime(mono_s, T0), active_power_import_w=power_w
    )


def held_base(site: SiteState, now_s: float, setpoint_a: float) -> tuple[float | None, ...] | None:
    snap = site.snapshot(now_s, T0 + timedelta(seconds=now_s), held({"three": setpoint_a, "one": 0.0}.get))
    (meter,) = snap.meters
    return (
        None if meter.base_a is None else tuple(round(v, 1) if v is not None else None for v in meter.base_a)
    )


def holding(site: SiteState) -> bool:
    return site.holding


def test_the_base_load_is_held_while_a_raised_car_is_unreported(tmp_path: Path) -> None:
    site = SiteState(settings(tmp_path, "TN"))
    site.ingest_charger(status("three", ConnectorState.CHARGING, (10.0, 10.0, 10.0), seen_s=0.0))
    site.ingest_meter(full_list_w(0.0, (30.0, 30.0, 30.0), 20_700.0))
    assert held_base(site, 0.5, 10.0) is None  # readings match: nothing held
    assert not holding(site)
    # Raised to 16 A; the next full list already shows the car at 16 A, the report does not yet.
    assert held_base(site, 1.0, 16.0) == (20.0, 20.0, 20.0)
    site.ingest_meter(full_list_w(3.0, (36.0, 36.0, 36.0), 20_700.0 + 6 * 690.0))
    assert held_base(site, 3.0, 16.0) == (20.0, 20.0, 20.0)  # the car's rise is not base load
    assert holding(site)
    # A base-load step the setpoints cannot explain still counts, on every line.
    site.ingest_meter(power_only(5.0, 20_700.0 + 6 * 690.0 + 9200.0))
    assert held_base(site, 5.0, 16.0) == (60.0, 60.0, 60.0)
    # The charger reports the car at 16 A: the readings match again and the hold ends. The list at
    # 3 s rose by all of the car's raise (6 A on three lines), so it is read with the car at 16 A:
    # the base is that list less the car plus the unexplained rise since, the same 60 A as held.
    site.ingest_charger(status("three", ConnectorState.CHARGING, (16.0, 16.0, 16.0), seen_s=7.0))
    snap = site.snapshot(7.5, T0 + timedelta(seconds=7.5), held({"three": 16.0, "one": 0.0}.get))
    assert not holding(site)
    assert base_at_meters_or_held(snap) == pytest.approx((60.0, 60.0, 60.0), abs=0.1)


def test_a_report_that_repeats_the_car_s_current_after_it_could_follow_ends_the_hold(
    tmp_path: Path,
) -> None:
    # Raised from 10 to 16 A, the car stays at 10 A (its own limit): the charger's next report reads
    # the same as the last. It came after the car could follow, so the readings match again.
    site = SiteState(settings(tmp_path, "TN"))
    site.ingest_charger(status("three", ConnectorState.CHARGING, (10.0, 10.0, 10.0), seen_s=0.0))
    site.ingest_meter(full_list_w(0.0, (30.0, 30.0, 30.0), 20_700.0))
    held_base(site, 0.5, 10.0)
    held_base(site, 1.0, 16.0)
    site.ingest_charger(status("three", ConnectorState.CHARGING, (10.0, 10.0, 10.0), seen_s=4.0))
    held_base(site, 4.5, 16.0)
    assert holding(site)  # before the car could follow, the same value proves nothing
    site.ingest_charger(status("three", ConnectorState.CHARGING, (10.0, 10.0, 10.0), seen_s=7.0))
    held_base(site, 7.5, 16.0)
    assert not holding(site)


def test_a_car_that_does_not_take_its_increase_explains_nothing(tmp_path: Path) -> None:
    site = SiteState(settings(tmp_path, "TN"))
    site.ingest_charger(status("three", ConnectorState.CHARGING, (10.0, 10.0, 10.0), seen_s=0.0))
    site.ingest_meter(full_list_w(0.0, (30.0, 30.0, 30.0), 20_700.0))
    held_base(site, 0.5, 10.0)
    # Raised, but the car stops taking energy (full): the same power rise is now base load.
    site.ingest_charger(status("three", ConnectorState.SUSPENDED_EV, (10.0, 10.0, 10.0), seen_s=0.8))
    held_base(site, 1.0, 16.0)
    site.ingest_meter(power_only(3.0, 20_700.0 + 6 * 690.0))
    base = held_base(site, 3.0, 16.0)
    assert base is not None
    assert base[0] is not None and base[0] >= 20.0 + 6 * 690.0 / 230.0 - 0.1


def full_list(at_s: float, l1_a: float, l2_a: float, l3_a: float) -> MeterReading:
    return MeterReading(
        MeterVendor.KAIFA,
        MeterList.FULL,
        ReceiveTime(at_s, T0 + timedelta(seconds=at_s)),
        active_power_import_w=230.0 * (l1_a + l2_a + l3_a),
        current_l1_a=l1_a,
        current_l2_a=l2_a,
        current_l3_a=l3_a,
    )


def test_a_decrease_the_meter_has_not_seen_yet_is_not_counted_as_base_load(tmp_path: Path) -> None:
    # A car at 16 A on L2, L3 over a base of 20 A per line; the meter's full list predates the
    # decrease to 6 A. The meter still sees the car at 16 A, so the base is still 20 A: taking the
    # car at its new limit against that list made the base 10 A higher with every decrease, and
    # each cycle shed more until every car in the garage was paused (found by tests/hil).
    site = SiteState(settings(tmp_path, "TN"))
    site.ingest_charger(status("three", ConnectorState.CHARGING, (16.0, 16.0, 0.0), seen_s=0.0))
    site.ingest_meter(full_list(0.5, 20.0, 36.0, 36.0))
    site.snapshot(1.0, T0, held({"three": 16.0, "one": None}.get))
    lowered = site.snapshot(2.0, T0, held({"three": 6.0, "one": None}.get))
    assert base_at_meters(lowered)["main"] == pytest.approx((20.0, 20.0, 20.0))
    # A list taken after the decrease may show the car lower than its (older) report: the car is
    # then taken at no more than its new limit, so the base is not read lower than it is.
    site.ingest_meter(full_list(8.0, 20.0, 26.0, 26.0))
    answered = site.snapshot(9.0, T0, held({"three": 6.0, "one": None}.get))
    assert base_at_meters(answered)["main"] == pytest.approx((20.0, 20.0, 20.0))


def test_a_car_raised_after_the_meter_list_is_taken_at_what_it_drew_when_the_list_was_taken(
    tmp_path: Path,
) -> None:
    # The meter's full list (every 10 s) was taken with the car at 6 A; the car was raised to 10 A
    # after it and its charger has reported 10 A since. Against that list the car drew 6 A: taking
    # it at 10 A read the base 4 A low on its lines, the allocator filled the fuse to its margin on
    # that, and the demo garage ran 3-5 % over its main fuse for 10-20 s (found by tests/hil).
    site = SiteState(settings(tmp_path, "TN"))
    setpoints = {"three": 6.0, "one": None}
    site.ingest_charger(status("three", ConnectorState.CHARGING, (6.0, 6.0, 0.0), seen_s=0.0))
    site.snapshot(1.0, T0, held(setpoints.get))
    site.ingest_meter(full_list(9.5, 20.0, 26.0, 26.0))
    setpoints["three"] = 10.0
    site.snapshot(10.0, T0, held(setpoints.get))
    site.ingest_charger(status("three", ConnectorState.CHARGING, (10.0, 10.0, 0.0), seen_s=16.0))
    reported = site.snapshot(17.0, T0, held(setpoints.get))
    assert base_at_meters_or_held(reported) == pytest.approx((20.0, 20.0, 20.0))
    # The next list sees the car at 10 A: the base is the same 20 A, read directly.
    site.ingest_meter(full_list(19.5, 20.0, 30.0, 30.0))
    listed = site.snapshot(20.0, T0, held(setpoints.get))
    assert base_at_meters_or_held(listed) == pytest.approx((20.0, 20.0, 20.0))


def base_at_meters_or_held(snapshot: SiteSnapshot) -> tuple[float | None, float | None, float | None]:
    """The base load the allocator uses: the daemon's own estimate where it gives one."""
    (meter,) = snapshot.meters
    return meter.base_a if meter.base_a is not None else base_at_meters(snapshot)["main"]


def power_frame(at_s: float, power_w: float) -> MeterReading:
    return MeterReading(
        MeterVendor.KAIFA,
        MeterList.POWER_ONLY,
        ReceiveTime(at_s, T0 + timedelta(seconds=at_s)),
        active_power_import_w=power_w,
    )


def test_a_base_load_step_stays_visible_after_the_cars_follow_the_decrease_it_caused(tmp_path: Path) -> None:
    # A three-phase car at 16 A over 20 A of base per line; the full list is taken. Then 40 A of base
    # load switches on L1 (a power frame shows +9.2 kW), the daemon lowers the car to 6 A and the car
    # follows. The next power frame shows the step less the car's fall: +2.3 kW. Counting that as the
    # rise since the list made the 40 A step look like 10 A, the daemon raised the cars again and L1
    # ran 28 % over its fuse for 20 s until the next lists (found by tests/hil, requirement (a)).
    site = SiteState(settings(tmp_path, "TN"))
    setpoints = {"three": 16.0, "one": None}
    site.ingest_charger(status("three", ConnectorState.CHARGING, (16.0, 16.0, 16.0), seen_s=0.0))
    site.ingest_meter(full_list(0.5, 36.0, 36.0, 36.0))
    site.snapshot(0.6, T0, held(setpoints.get))
    site.ingest_meter(power_frame(1.0, 230.0 * (108 + 40)))
    stepped = site.snapshot(1.1, T0, held(setpoints.get))
    assert base_at_meters_or_held(stepped)[0] == pytest.approx(60.0)
    setpoints["three"] = 6.0
    site.snapshot(2.0, T0, held(setpoints.get))
    site.ingest_meter(power_frame(8.0, 230.0 * (60 + 40 + 18)))
    followed = site.snapshot(8.1, T0, held(setpoints.get))
    base = base_at_meters_or_held(followed)
    assert base[0] is not None and base[0] >= 60.0


def test_a_charging_car_paused_when_nobody_takes_its_place_is_not_a_rotation_start(tmp_path: Path) -> None:
    # The room shrank (a held base load, a frozen meter): the allocator pauses cars whose minimum
    # would still fit alone, which it calls rotation. Nobody waiting was started in their place, so
    # it was the fuse, not rotation: counting the restarts left four of six cars in the fault-drill
    # garage at start_limit for twenty minutes while current was free (found by tests/hil).
    site = SiteState(settings(tmp_path))
    setpoints: dict[str, float | None] = {"three": 6.0, "one": 6.0}
    site.ingest_charger(status("three", ConnectorState.CHARGING))
    site.ingest_charger(status("one", ConnectorState.CHARGING))
    for minute in (0, 5, 10, 15, 20):
        now = T0 + timedelta(minutes=minute)
        setpoints["three"] = 6.0
        site.snapshot(minute * 60, now, held(setpoints.get))
        decide(site, now, "rotation", three="paused", one="charging")  # one was charging already
        setpoints["three"] = 0.0
        site.snapshot(minute * 60 + 1, now, held(setpoints.get))
        decide(site, now, "rotation", three="paused", one="charging")
    site.snapshot(21 * 60, T0 + timedelta(minutes=21), held({"three": 6.0, "one": 6.0}.get))
    vehicle = snapshot_charger(site, "three", 21 * 60, 6.0).vehicle
    assert vehicle is not None
    assert vehicle.start_times == ()


def test_a_charging_car_that_yields_to_a_waiting_one_is_a_rotation_start_when_it_resumes(
    tmp_path: Path,
) -> None:
    site = SiteState(settings(tmp_path))
    site.ingest_charger(status("three", ConnectorState.CHARGING))
    site.ingest_charger(status("one", ConnectorState.SUSPENDED_EVSE))
    site.snapshot(0.0, T0, held({"three": 6.0, "one": 0.0}.get))
    decide(site, T0, "rotation", three="paused", one="charging")  # one, waiting, takes the place
    later = T0 + timedelta(minutes=15)
    site.snapshot(1.0, T0, held({"three": 0.0, "one": 6.0}.get))
    decide(site, later, "rotation", three="charging", one="paused")
    site.snapshot(900.0, later, held({"three": 6.0, "one": 0.0}.get))
    vehicle = snapshot_charger(site, "three", 900.0, 6.0).vehicle
    assert vehicle is not None
    assert vehicle.start_times == (later,)


def test_a_decrease_the_meter_already_shows_is_not_counted_again(tmp_path: Path) -> None:
    # The car is lowered from 16 A to 6 A, follows within 3 s, and the next full list shows it at
    # 6 A. Later power frames show no change: the base load is still 20 A. Counting the decrease
    # as still to come read a 30 A base rise on every line out of it, and at every turn of a
    # rotation the daemon paused the cars it had just started (found by tests/hil, requirement (d)).
    site = SiteState(settings(tmp_path, "TN"))
    setpoints = {"three": 16.0, "one": None}
    site.ingest_charger(status("three", ConnectorState.CHARGING, (16.0, 16.0, 16.0), seen_s=0.0))
    site.ingest_meter(full_list(0.5, 36.0, 36.0, 36.0))
    site.snapshot(0.6, T0, held(setpoints.get))
    setpoints["three"] = 6.0
    site.snapshot(5.0, T0, held(setpoints.get))
    site.ingest_meter(full_list(8.0, 26.0, 26.0, 26.0))
    site.ingest_charger(status("three", ConnectorState.CHARGING, (6.0, 6.0, 6.0), seen_s=9.0))
    site.snapshot(9.5, T0, held(setpoints.get))
    site.ingest_meter(power_frame(20.0, 230.0 * 78))
    later = site.snapshot(20.1, T0, held(setpoints.get))
    assert base_at_meters_or_held(later) == pytest.approx((20.0, 20.0, 20.0))


def test_a_car_paused_right_after_it_was_started_keeps_its_place_in_the_queue(tmp_path: Path) -> None:
    # At a rotation's turn the cars next in the queue were started and, before they drew anything,
    # paused again; their wait restarted, cars that had just had their turn went before them, and
    # four of 24 cars waited 900 s against a 660 s bound (found by tests/hil, requirement (d)).
    site = SiteState(settings(tmp_path))
    site.ingest_charger(status("three", ConnectorState.SUSPENDED_EVSE))
    setpoints: dict[str, float | None] = {"three": 0.0, "one": None}
    site.snapshot(0.0, T0, held(setpoints.get))
    decide(site, T0, "rotation", three="paused")
    turn = T0 + timedelta(minutes=10)
    setpoints["three"] = 6.0
    site.snapshot(600.0, turn, held(setpoints.get))
    setpoints["three"] = 0.0
    site.snapshot(605.0, turn + timedelta(seconds=5), held(setpoints.get))
    decide(site, turn + timedelta(seconds=5), "rotation", three="paused")
    vehicle = snapshot_charger(site, "three", 606.0, 0.0).vehicle
    assert vehicle is not None
    assert vehicle.waiting_since == T0
    # A car that had its turn queues again from when it was paused.
    setpoints["three"] = 6.0
    site.snapshot(700.0, T0 + timedelta(seconds=700), held(setpoints.get))
    setpoints["three"] = 0.0
    paused = T0 + timedelta(seconds=1000)
    site.snapshot(1000.0, paused, held(setpoints.get))
    vehicle = snapshot_charger(site, "three", 1001.0, 0.0).vehicle
    assert vehicle is not None
    assert vehicle.waiting_since == paused


def test_a_report_older_than_the_last_changes_is_capped_by_the_setpoints_around_the_list(
    tmp_path: Path,
) -> None:
    # The car's last report (10 A) came before it was lowered to 6 A and then paused; the charger
    # says SuspendedEVSE at once but sends no new current. The full list, taken as the car was
    # still following the pause, sees it at 6 A over a 20 A base. Taking the stale 10 A read the
    # base 4 A low, the allocator raised the other cars into that, and L1 stayed 1.6 A over its
    # rating for 10 s after requirement (a)'s step (found by tests/hil).
    site = SiteState(settings(tmp_path, "TN"))
    setpoints = {"three": 10.0, "one": None}
    site.ingest_charger(status("three", ConnectorState.CHARGING, (10.0, 10.0, 10.0), seen_s=0.0))
    site.snapshot(0.5, T0, held(setpoints.get))
    setpoints["three"] = 6.0
    site.snapshot(20.0, T0, held(setpoints.get))
    setpoints["three"] = 0.0
    site.snapshot(28.0, T0, held(setpoints.get))
    site.ingest_charger(status("three", ConnectorState.SUSPENDED_EVSE, (10.0, 10.0, 10.0), seen_s=29.0))
    site.ingest_meter(full_list(30.0, 26.0, 26.0, 26.0))
    listed = site.snapshot(30.5, T0, held(setpoints.get))
    base = base_at_meters_or_held(listed)
    assert all(b is not None and b >= 20.0 for b in base), base


def test_each_charger_is_budgeted_by_what_is_known_of_its_limit(tmp_path: Path) -> None:
    site = SiteState(settings(tmp_path, "IT"))
    site.ingest_charger(status("three", ConnectorState.CHARGING, (10.0, 10.0, 10.0), seen_s=0.0))
    site.ingest_charger(status("one", ConnectorState.CHARGING, (10.0, None, None), seen_s=0.0, online=False))
    budgets = {"three": Budget(Drive.LAPSED, 0.0, 6.0), "one": Budget(Drive.ACKNOWLEDGED, 10.0, 10.0)}
    snap = site.snapshot(1.0, T0, budgets)
    by_id = {c.id: c for c in snap.chargers}
    assert (by_id["three"].drive, by_id["three"].may_draw_a) == (Drive.LAPSED, 6.0)
    assert (by_id["one"].drive, by_id["one"].may_draw_a) == (Drive.OFFLINE, 32.0)
    # A charger the dispatcher does not drive (no driver for its protocol) is budgeted at its
    # maximum and never crashes the snapshot.
    snap = site.snapshot(2.0, T0, {"three": Budget(Drive.ACKNOWLEDGED, 6.0, 6.0)})
    by_id = {c.id: c for c in snap.chargers}
    assert (by_id["one"].drive, by_id["one"].may_draw_a) == (Drive.NOT_DRIVEN, 32.0)


def test_a_raise_of_a_car_whose_lines_are_unknown_explains_the_least_power(tmp_path: Path) -> None:
    # IT: a three-phase charger whose car is not known to use all three lines (it reported one
    # terminal). Raised from 10 to 16 A, it may be a single-phase car adding 6 A x 230 V, not
    # 6 A x 398 V: a power rise beyond that is base load and counts on every line.
    site = SiteState(settings(tmp_path, "IT"))
    site.ingest_charger(status("three", ConnectorState.CHARGING, (10.0, 0.0, 0.0), seen_s=0.0))
    site.ingest_meter(full_list_w(0.0, (30.0, 30.0, 30.0), 10_000.0))
    site.snapshot(0.5, T0, held({"three": 10.0, "one": 0.0}.get))
    site.snapshot(1.0, T0, held({"three": 16.0, "one": 0.0}.get))
    site.ingest_meter(power_only(2.0, 10_000.0 + 6 * 230.0 * 3**0.5))
    snap = site.snapshot(2.5, T0, held({"three": 16.0, "one": 0.0}.get))
    (meter,) = snap.meters
    unexplained_a = 6 * (3**0.5 - 1)  # the three-phase part of the rise the raise cannot be sure of
    assert meter.currents_a == pytest.approx((30.0 + unexplained_a,) * 3, abs=0.01)
    # A cut counts the most: with a list at 10 s that shows the car at 16 A (raised 9 s before it),
    # lowered back to 10 A at 12 s, its fall explains all of 6 A x 398 V.
    site.ingest_meter(full_list_w(10.0, (36.0, 36.0, 36.0), 10_000.0 + 6 * 230.0 * 3**0.5))
    site.snapshot(10.5, T0, held({"three": 16.0, "one": 0.0}.get))
    site.snapshot(12.0, T0, held({"three": 10.0, "one": 0.0}.get))
    estimator = site.base_load
    assert estimator is not None
    assert estimator.explained_change_w(10.0, 20.0) == pytest.approx(-6 * 230.0 * 3**0.5)


def test_a_reading_taken_while_the_setpoint_was_unknown_explains_no_more_than_the_car_can_add(
    tmp_path: Path,
) -> None:
    # 10 A, then nothing confirmed from 4 s (the charger reconnected), then 16 A from 7 s; a
    # reading at 10 s. Against it the car may already have been at 16 A: the controller's change
    # since explains nothing of a later rise of the meter's power (taking the unknown as 0 would
    # explain 16 A x 3 lines of base load away).
    site = SiteState(settings(tmp_path, "TN"))
    site.ingest_charger(status("three", ConnectorState.CHARGING, (16.0, 16.0, 16.0), seen_s=0.0))
    site.snapshot(0.5, T0, held({"three": 10.0, "one": 0.0}.get))
    site.snapshot(4.0, T0, held({"three": None, "one": 0.0}.get))
    site.snapshot(7.0, T0, held({"three": 16.0, "one": 0.0}.get))
    site.snapshot(20.0, T0, held({"three": 16.0, "one": 0.0}.get))
    estimator = site.base_load
    assert estimator is not None
    assert estimator.explained_change_w(10.0, 20.0) == 0.0


def test_a_three_wire_meter_without_il2_gets_it_from_its_own_measurements(tmp_path: Path) -> None:
    site = SiteState(settings(tmp_path, "IT"))
    # Landis+Gyr on IT: IL2 and UL2 sent as 0. A balanced resistive 30 A per line.
    reading = MeterReading(
        MeterVendor.LANDIS_GYR,
        MeterList.FULL,
        ReceiveTime(0.0, T0),
        active_power_import_w=230.0 * 30.0 * 3**0.5,
        reactive_power_import_var=0.0,
        current_l1_a=30.0,
        current_l2_a=0.0,
        current_l3_a=30.0,
        voltage_l1_v=230.0,
        voltage_l2_v=0.0,
        voltage_l3_v=230.0,
    )
    site.ingest_meter(reading)
    (meter,) = site.snapshot(1.0, T0, held(lambda _cid: 0.0)).meters
    l2 = meter.currents_a[1]
    assert l2 is not None and 30.0 <= l2 <= 35.0  # not the 60 A Kirchhoff bound, nor unknown
