"""The charger model without a network: limits offered to cars, terminals, states, power."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from simulator.cars import Car, CarSpec
from simulator.chargers import ChargerSpec, VirtualCharger, make_charger
from simulator.chargers.smart import parse_profile
from simulator.clock import SimClock

EPOCH = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)


def charger(grid: str = "IT", **kw: object) -> VirtualCharger:
    args: dict[str, object] = {"identity": "X", "fuse": "f", "lines": ("L2", "L3", "L1")}
    args.update(kw)
    return make_charger(
        ChargerSpec(**args),  # type: ignore[arg-type]
        grid=grid,  # type: ignore[arg-type]
        nominal_voltage_v=230.0,
        clock=SimClock(1.0, EPOCH),
    )


def run(c: VirtualCharger, until_s: float, dt: float = 0.25) -> None:
    t = c.now_s
    while t < until_s - 1e-9:
        t += dt
        c.step(t, EPOCH + timedelta(seconds=t))


def car(phases: int = 1, max_a: float = 32.0) -> Car:
    return Car(
        CarSpec(max_current_a=max_a, phases=phases, response_delay_s=1.0), soc=0.2, power_per_amp_w=1.0
    )


def install(c: VirtualCharger, raw: dict[str, object], connector: int) -> None:
    c.profiles.install(parse_profile(raw, connector, "1.6", c.now_utc, 8))


def amps(
    pid: int, purpose: str, limit: float, unit: str = "A", level: int = 0, kind: str = "Relative"
) -> dict[str, object]:
    return {
        "chargingProfileId": pid,
        "stackLevel": level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": {
            "chargingRateUnit": unit,
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
        },
    }


def test_without_profiles_the_charger_offers_its_default() -> None:
    c = charger(default_limit_a=10.0)
    c.plug(1, car(), "T")
    run(c, 5)
    assert c.connectors[0].pilot_a == 10.0
    assert c.connectors[0].current_a == 10.0
    assert c.connectors[0].status == "Charging"


def test_terminal_currents_of_a_single_phase_car_on_an_it_three_phase_charger() -> None:
    c = charger()
    c.plug(1, car(phases=1, max_a=16), "T")
    run(c, 5)
    assert c.connectors[0].terminal_a == pytest.approx((16.0, 16.0, 0.0))
    assert c.sampled_value(c.connectors[0], "Current.Import") == [
        (16.0, "L1", "A"),
        (16.0, "L2", "A"),
        (0.0, "L3", "A"),
    ]
    assert c.connectors[0].power_w == pytest.approx(16 * 230.0)


def test_max_profile_caps_the_sum_over_connectors() -> None:
    c = charger(connectors=2, max_current_a=16)
    install(c, amps(1, "ChargePointMaxProfile", 20, kind="Absolute"), 0)
    c.plug(1, car(), "A")
    c.plug(2, car(), "B")
    run(c, 5)
    # 16 A to the first; 4 A is left, below the 6 A minimum: the second waits.
    assert [k.pilot_a for k in c.connectors] == [16.0, 0.0]
    assert [k.status for k in c.connectors] == ["Charging", "SuspendedEVSE"]


def test_watts_convert_with_the_cars_phases() -> None:
    c = charger(grid="TN", lines=("L1", "L2", "L3"))
    install(c, amps(1, "TxDefaultProfile", 6900, unit="W"), 0)
    c.plug(1, car(phases=3), "A")
    run(c, 5)
    assert c.connectors[0].pilot_a == pytest.approx(10.0)
    c.unplug(1)
    c.plug(1, car(phases=1), "B")
    run(c, 10)
    assert c.connectors[0].pilot_a == 30.0


def test_ignoring_profiles_keeps_the_default() -> None:
    c = charger(default_limit_a=32.0, ignore_profiles=True, profile_delay_s=0.0)
    c.plug(1, car(), "A")
    c.set_profile(lambda: install(c, amps(1, "TxDefaultProfile", 8), 0))
    run(c, 5)
    assert c.connectors[0].current_a == 32.0


def test_profile_delay_then_car_delay() -> None:
    c = charger(profile_delay_s=2.0)
    c.plug(1, car(), "A")
    run(c, 10)
    c.set_profile(lambda: install(c, amps(1, "TxDefaultProfile", 8), 0))
    run(c, 11.75)
    assert c.connectors[0].pilot_a == 32.0
    run(c, 12.25)
    assert c.connectors[0].pilot_a == 8.0
    # The pilot changed at 12.0 s; the car answers 1 s later.
    run(c, 12.75)
    assert c.connectors[0].current_a == 32.0
    run(c, 13.0)
    assert c.connectors[0].current_a == 8.0


def test_power_cycle_pauses_and_resumes_with_the_same_tag() -> None:
    c = charger(reboot_s=20.0)
    c.plug(1, car(), "A")
    run(c, 5)
    first = c.connectors[0].tx
    c.power_cycle()
    run(c, 10)
    conn = c.connectors[0]
    assert (conn.pilot_a, conn.tx) == (0.0, None)
    run(c, 30)
    second = c.connectors[0].tx
    assert second is not None
    assert second is not first
    assert second.id_tag == "A"
    assert c.connectors[0].current_a == 32.0


def test_without_supply_the_car_stops_at_once_and_the_register_stands_still() -> None:
    c = charger(reboot_s=20.0)
    c.plug(1, car(), "A")
    run(c, 5)
    conn = c.connectors[0]
    assert conn.current_a == 32.0
    c.power_cycle()
    register_wh = conn.register_wh
    run(c, 5.25)
    # No response delay: the car cannot draw from a charger that has no supply.
    assert (conn.current_a, conn.mean_current_a, conn.power_w) == (0.0, 0.0, 0.0)
    run(c, 20)
    assert conn.register_wh == register_wh
    run(c, 30)
    assert conn.current_a == 32.0


def test_unplug_ends_the_transaction_and_removes_tx_profiles() -> None:
    c = charger()
    c.plug(1, car(), "A")
    run(c, 2)
    raw = amps(5, "TxProfile", 10, level=2)
    install(c, raw, 1)
    assert len(c.profiles.profiles) == 1
    assert c.unplug(1) is not None
    assert c.connectors[0].status == "Available"
    assert c.profiles.profiles == []
    assert c.unplug(1) is None


def test_energy_register_grows_with_the_car() -> None:
    c = charger(energy_register_start_wh=1000.0)
    c.plug(1, car(phases=1, max_a=16), "A")
    run(c, 3601)
    assert c.connectors[0].register_wh == pytest.approx(1000.0 + 16 * 230.0 * 3600 / 3600)


def test_plugging_twice_is_refused() -> None:
    c = charger()
    c.plug(1, car(), None)
    with pytest.raises(ValueError, match="already has a car"):
        c.plug(1, car(), None)
    with pytest.raises(ValueError, match="no connector 3"):
        c.plug(3, car(), None)
