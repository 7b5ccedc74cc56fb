"""Every scenario of the library loads and runs offline with the simulator's own invariants.

Until the controller runs against them in CI, these are what a run must never break: energy
conservation between the cars, the fuse registers and the meter's registers, finite values,
metrics in their ranges, and the same report for the same seed. Long scenarios run shortened.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from simulator.garage import Garage
from simulator.garage_meter import meter_state
from simulator.metrics import report
from simulator.scenario_file import LoadedScenario, load_scenario
from tests.support import REPO_ROOT

LIBRARY = REPO_ROOT / "simulator" / "scenarios"
SCENARIOS = sorted(p.name for p in LIBRARY.glob("*.toml"))
# Simulated seconds per scenario in CI (the whole file where it is short enough).
CI_DURATION_S = {"large_400a_200.toml": 600.0, "fault_drills.toml": 3600.0}
DEFAULT_CI_DURATION_S = 1200.0


def shortened(name: str) -> LoadedScenario:
    loaded = load_scenario(LIBRARY / name)
    duration = min(loaded.scenario.duration_s, CI_DURATION_S.get(name, DEFAULT_CI_DURATION_S))
    return loaded.with_overrides(duration_s=duration)


def test_the_library_has_the_promised_scenarios() -> None:
    assert set(SCENARIOS) >= {
        "it_125a_40_evening.toml",
        "tn_63a_20.toml",
        "aidon_it_no_l2.toml",
        "kamstrup_10s.toml",
        "large_400a_200.toml",
        "fault_drills.toml",
        "demo_garage.toml",
    }


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_runs_offline_within_the_invariants(name: str) -> None:
    loaded = shortened(name)
    garage = Garage(loaded.scenario)
    rec = garage.run_offline()
    assert rec.rows == pytest.approx(loaded.scenario.duration_s / rec.row_interval_s, abs=1)

    for array in (rec.fuse_a, rec.conn_current_a, rec.conn_pilot_a):
        assert np.isfinite(array).all()
        assert (array >= 0).all()

    # Energy: every Wh a car took went through its charger's register and its visit's books ...
    tree = garage.grid.tree
    car_wh = np.zeros(len(tree))
    delivered_by_charger: dict[str, float] = {}
    for charger in garage.chargers:
        taken = sum(c.register_wh - charger.spec.energy_register_start_wh for c in charger.connectors)
        delivered_by_charger[charger.spec.identity] = taken
        for i in tree.path_to_root(charger.spec.fuse):
            car_wh[i] += taken
    total_cars = sum(delivered_by_charger.values())
    assert sum(v.delivered_wh for v in rec.visits) == pytest.approx(total_cars, rel=1e-9, abs=1e-6)
    assert total_cars > 0
    # ... and every fuse's register holds exactly its cars' energy where no base load hangs below it,
    # and more than that where one does.
    registers_wh = garage.grid.energy_ws[:, 0] / 3600.0
    base_fuses = {b.fuse for b in loaded.scenario.base_loads}
    for i, fuse_id in enumerate(tree.ids):
        has_base = any(tree.index[f] in tree.subtree(fuse_id) for f in base_fuses)
        if has_base:
            assert registers_wh[i] >= car_wh[i] - 1e-6, fuse_id
        else:
            assert registers_wh[i] == pytest.approx(car_wh[i], rel=1e-9, abs=1e-6), fuse_id
    # The meter sends the register of its fuse node (plus what it had counted before the run).
    assert loaded.meter is not None
    state = meter_state(garage.node_truth(loaded.meter.fuse), loaded.meter.energy_import_start_wh)
    meter_i = tree.index[loaded.meter.fuse]
    assert state.energy_import_wh == pytest.approx(
        registers_wh[meter_i] + loaded.meter.energy_import_start_wh, rel=1e-12
    )

    data = report(rec)
    json.dumps(data, allow_nan=False)
    for fuse, used in data["utilization"].items():
        assert used is None or 0.0 <= used <= 1.0, fuse
    fair = data["fairness"]
    n = fair["cars_with_unmet_demand"]
    for key in ("jain_energy", "jain_energy_per_hour"):
        if n:
            assert 1.0 / n - 1e-9 <= fair[key] <= 1.0 + 1e-9
    assert data["waits"]["longest_plugged_not_charging_s"] >= 0
    assert 0 <= data["waits"]["longest_for_a_charger_s"] <= loaded.scenario.duration_s + 1e-6
    assert data["energy"]["unmet_at_departure_wh"] >= 0
    assert all(v["unmet_wh"] >= -1e-6 for v in data["visits"])
    assert data["overload"]["total_as"] >= 0 and math.isfinite(data["overload"]["total_as"])


def test_a_run_is_the_same_for_the_same_seed_and_differs_for_another() -> None:
    loaded = load_scenario(LIBRARY / "demo_garage.toml").with_overrides(duration_s=900)

    def run(seed: int) -> str:
        rec = Garage(loaded.with_overrides(seed=seed).scenario).run_offline()
        return json.dumps(report(rec), sort_keys=True)

    first = run(1)
    assert run(1) == first
    assert run(2) != first


def test_fault_drills_meter_and_daemon_faults_are_on_the_timeline() -> None:
    loaded = load_scenario(LIBRARY / "fault_drills.toml")
    assert {f.kind for f in loaded.meter_faults} == {
        "meter_silence",
        "meter_freeze",
        "meter_garbage",
        "meter_corrupt",
    }
    assert {f.kind for f in loaded.scenario.faults} == {
        "charger_disconnect",
        "charger_reboot",
        "ignore_profiles",
        "network_delay",
    }
    assert [(k.at_s, k.duration_s) for k in loaded.controller_kills] == [(2700.0, 60.0)]


def test_demo_garage_is_what_sitectl_demo_needs() -> None:
    loaded = load_scenario(LIBRARY / "demo_garage.toml")
    sc = loaded.scenario
    assert sc.grid.type == "IT" and sc.grid.nominal_voltage_v == 230
    root = next(f for f in sc.fuses if f.parent is None)
    assert root.limit_a == 125
    depth = max(len(Garage(sc).grid.tree.path_to_root(f.id)) for f in sc.fuses)
    assert depth == 3
    assert len(sc.chargers) == 24
    assert {c.version for c in sc.chargers} == {"1.6", "2.0.1"}
    assert {len(c.lines) for c in sc.chargers} == {2, 3}
    assert loaded.meter is not None and loaded.meter.vendor == "kaifa" and loaded.meter.output == "pty"
    assert 5400 <= sc.duration_s <= 9000
    phases = {spec.phases for _, spec in sc.arrivals.fleet} if sc.arrivals else set()
    assert phases == {1, 3}


def test_uncontrolled_demo_garage_overloads_its_main_fuse_at_the_peak() -> None:
    # Demand exceeds capacity at the peak: without a controller the main fuse runs above 125 A.
    loaded = load_scenario(LIBRARY / "demo_garage.toml").with_overrides(duration_s=600)
    rec = Garage(loaded.scenario).run_offline()
    main = rec.fuse_ids.index("main")
    assert float(rec.fuse_a[:, main, :].max()) > 125


def test_every_library_file_documents_itself() -> None:
    for name in SCENARIOS:
        text = (LIBRARY / name).read_text()
        assert text.startswith("#"), name
        assert load_scenario(LIBRARY / name).description, name
