"""The garage offline (physics only): fuse currents, energy, departures, faults, trips, determinism."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from simulator.arrivals import ArrivalProcess, CarArrival
from simulator.baseload import BaseLoadSpec
from simulator.cars import CarSpec
from simulator.chargers import ChargerSpec
from simulator.garage import Garage
from simulator.meter_feed import meter_state_kwargs
from simulator.physics import FuseSpec, mcb
from simulator.scenario import FaultSpec, GridSpec, Scenario

CAR_1PH = CarSpec(max_current_a=16, phases=1, response_delay_s=2.0, battery_kwh=100)
CAR_3PH = CarSpec(max_current_a=16, phases=3, response_delay_s=2.0, battery_kwh=100)


def visit(
    name: str,
    charger: str,
    car: CarSpec = CAR_1PH,
    arrive: float = 0.0,
    leave: float = 3600.0,
    soc: float = 0.2,
) -> CarArrival:
    return CarArrival(name, arrive, leave, car, soc, 0.9, f"TAG-{name}", charger=charger)


def it_scenario(**kw: object) -> Scenario:
    base: dict[str, object] = {
        "name": "it",
        "grid": GridSpec("IT", 230.0),
        "fuses": (
            FuseSpec("main", 63, device="none"),
            FuseSpec("c1", 32, parent="main", device="C"),
            FuseSpec("c2", 32, parent="main", device="C"),
            FuseSpec("c3", 32, parent="main", device="C"),
        ),
        "chargers": (
            ChargerSpec("A", "c1", lines=("L1", "L2"), max_current_a=16),
            ChargerSpec("B", "c2", lines=("L2", "L3"), max_current_a=16),
            ChargerSpec("C", "c3", lines=("L3", "L1", "L2"), max_current_a=16),
        ),
        "duration_s": 600.0,
        "record_every_steps": 4,
    }
    base.update(kw)
    return Scenario(**base)  # type: ignore[arg-type]


def row_at(rec: object, t_s: float) -> int:
    return int(np.searchsorted(rec.t_s, t_s))  # type: ignore[attr-defined]


def test_fuse_line_currents_are_phasor_sums_of_the_cars() -> None:
    scenario = it_scenario(
        visits=(visit("a", "A"), visit("b", "B"), visit("c", "C", car=CAR_3PH)),
    )
    rec = Garage(scenario).run_offline()
    i = row_at(rec, 100.0)
    main = rec.fuse_a[i, rec.fuse_ids.index("main")]
    # Branches 16 A on L1-L2 and L2-L3 plus a 3-phase 16 A car (branch 16/sqrt 3 on each pair):
    b12 = b23 = 16 + 16 / math.sqrt(3)
    b31 = 16 / math.sqrt(3)
    expected = [
        math.sqrt(b12**2 + b31**2 + b12 * b31),
        math.sqrt(b12**2 + b23**2 + b12 * b23),
        math.sqrt(b23**2 + b31**2 + b23 * b31),
    ]
    assert list(main) == pytest.approx(expected, rel=1e-5)
    assert list(rec.fuse_a[i, rec.fuse_ids.index("c1")]) == pytest.approx([16, 16, 0])


def test_energy_and_unmet_demand_at_departure() -> None:
    scenario = it_scenario(visits=(visit("a", "A", arrive=10.0, leave=610.0),), duration_s=700.0)
    rec = Garage(scenario).run_offline()
    (v,) = rec.visits
    assert v.departed
    assert v.plug_s == pytest.approx(10.0)
    # Plugged at 10 s, offered 16 A at once, the car follows 2 s later, leaves at 610 s.
    assert v.delivered_wh == pytest.approx(230 * 16 * 598 / 3600, rel=1e-9)
    wanted = (0.9 - 0.2) * 100_000 / 0.92
    assert v.wanted_wh == pytest.approx(wanted)
    assert v.unmet_wh == pytest.approx(wanted - v.delivered_wh, rel=1e-6)
    assert v.starts == 1
    assert v.stops == 0
    assert v.longest_wait_s == pytest.approx(2.0, abs=0.3)


def test_a_queue_forms_when_every_charger_is_taken() -> None:
    visits = tuple(CarArrival(f"v{i}", 5.0 * i, 300.0 + 5 * i, CAR_1PH, 0.2, 0.9, f"T{i}") for i in range(5))
    rec = Garage(it_scenario(visits=visits, duration_s=900.0)).run_offline()
    assert rec.queue_len.max() == 2
    waited = [v for v in rec.visits if v.plug_s is not None and v.plug_s > v.arrival_s + 1]
    assert len(waited) == 2
    assert all(v.plug_s is not None and v.plug_s >= 300.0 for v in waited)


def test_reboot_fault_pauses_the_car_for_the_reboot_time() -> None:
    scenario = it_scenario(
        visits=(visit("a", "A"),),
        faults=(FaultSpec(100.0, "charger_reboot", "A"),),
        chargers=(ChargerSpec("A", "c1", lines=("L1", "L2"), max_current_a=16, reboot_s=30.0),),
    )
    rec = Garage(scenario).run_offline()
    c = rec.connector_ids.index("A/1")
    assert rec.conn_current_a[row_at(rec, 99.0), c] == 16.0
    assert rec.conn_current_a[row_at(rec, 115.0), c] == 0.0
    assert rec.conn_current_a[row_at(rec, 135.0), c] == 16.0
    (v,) = rec.visits
    assert (v.starts, v.stops) == (2, 1)


def test_overload_trips_the_breaker_cuts_its_charger_and_reclose_restores_it() -> None:
    # A 3-phase car at 32 A on a C16 breaker: 2 x In, a thermal trip after minutes.
    scenario = it_scenario(
        fuses=(FuseSpec("main", 63, device="none"), FuseSpec("c1", 16, parent="main", device="C")),
        chargers=(ChargerSpec("A", "c1", lines=("L1", "L2", "L3"), max_current_a=32, reboot_s=5.0),),
        visits=(
            visit("a", "A", car=CarSpec(max_current_a=32, phases=3, response_delay_s=1, battery_kwh=200)),
        ),
        faults=(FaultSpec(400.0, "fuse_reclose", "c1"),),
    )
    rec = Garage(scenario).run_offline()
    assert [t.fuse_id for t in rec.trips] == ["c1"]
    trip = rec.trips[0]
    # MCB at 2 x In from cold: the time the curve gives, counted from when the car drew (1 s).
    expected_s = float(mcb(16, "C").time_to_trip_s(np.array([2.0]))[0]) + 1.0
    assert trip.t_s == pytest.approx(expected_s, abs=0.5)
    assert 60.0 < trip.t_s < 400.0
    c = rec.connector_ids.index("A/1")
    # Nothing flows through an open breaker, not even for the car's response delay (1 s).
    assert rec.conn_current_a[row_at(rec, trip.t_s + 0.3), c] == 0.0
    assert rec.conn_current_a[row_at(rec, trip.t_s + 5), c] == 0.0
    assert rec.conn_current_a[row_at(rec, 420.0), c] == 32.0


def test_deterministic_for_a_seed() -> None:
    def run(seed: int) -> object:
        scenario = it_scenario(
            arrivals=ArrivalProcess(rate_per_h=(30.0,), mean_dwell_s=600.0, min_dwell_s=60.0),
            base_loads=(BaseLoadSpec("lift", "main", kind="lift", amps=(0, 12, 0), starts_per_h=20),),
            seed=seed,
            duration_s=1200.0,
        )
        return Garage(scenario).run_offline()

    a, b, c = run(1), run(1), run(2)
    assert np.array_equal(a.fuse_a, b.fuse_a)  # type: ignore[attr-defined]
    assert a.visits == b.visits  # type: ignore[attr-defined]
    assert not np.array_equal(a.fuse_a, c.fuse_a)  # type: ignore[attr-defined]


def test_node_truth_feeds_a_meter_state() -> None:
    garage = Garage(it_scenario(visits=(visit("a", "A"),), duration_s=60.0))
    garage.run_offline()
    kwargs = meter_state_kwargs(garage.node_truth("main"))
    assert kwargs["current_a"] == pytest.approx((16.0, 16.0, 0.0))
    assert kwargs["voltage_v"] == (230.0, 230.0, 230.0)
    assert kwargs["active_power_import_w"] == pytest.approx(230 * 16)
    # The meter's register agrees with the car's exactly integrated energy.
    assert kwargs["energy_import_wh"] == pytest.approx(230 * 16 * (60 - 2) / 3600, rel=1e-9)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"chargers": (ChargerSpec("A", "nope"),)}, "unknown fuse"),
        ({"chargers": (ChargerSpec("A", "c1"), ChargerSpec("A", "c2"))}, "used twice"),
        ({"faults": (FaultSpec(1.0, "charger_reboot", "Z"),)}, "unknown charger"),
        ({"faults": (FaultSpec(1.0, "fuse_reclose", "Z"),)}, "unknown fuse"),
        ({"visits": (visit("a", "Z"),)}, "unknown charger"),
        ({"step_s": 10.0}, "step_s"),
        ({"chargers": (ChargerSpec("A", "c1", lines=("L1",)),)}, "two or three lines"),
    ],
)
def test_broken_scenarios_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Garage(it_scenario(**change))


def test_tn_garage_with_base_load(tmp_path: Path) -> None:
    scenario = Scenario(
        name="tn",
        grid=GridSpec("TN", 230.0),
        fuses=(FuseSpec("main", 100, device="none"),),
        chargers=(ChargerSpec("A", "main", lines=("L2",), max_current_a=16),),
        base_loads=(BaseLoadSpec("b", "main", amps=(5, 6, 7), noise_fraction=0.0),),
        visits=(CarArrival("a", 0.0, 500.0, CAR_1PH, 0.2, 0.9, "T", charger="A"),),
        duration_s=100.0,
    )
    rec = Garage(scenario).run_offline()
    assert list(rec.fuse_a[-1, 0]) == pytest.approx([5, 22, 7])
