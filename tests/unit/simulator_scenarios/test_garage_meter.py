"""The virtual meter's input from the garage: ground truth, register offset, faults, identity."""

from __future__ import annotations

from simulator.garage_meter import meter_fault, meter_profile, meter_state
from simulator.han_meter import FlipBits, Freeze, Garbage, Silence, Vendor
from simulator.physics.network import NodeTruth
from simulator.scenario_file import MeterFaultSpec, MeterSim

TRUTH = NodeTruth(
    fuse_id="main",
    current_a=(80.0, 70.0, 60.0),
    voltage_v=(230.0, 230.0, 230.0),
    active_power_import_w=27_000.0,
    active_power_export_w=0.0,
    reactive_power_import_var=3_000.0,
    reactive_power_export_var=0.0,
    energy_import_wh=1_500.0,
    energy_export_wh=0.0,
    reactive_energy_import_varh=100.0,
    reactive_energy_export_varh=0.0,
)


def test_meter_state_is_the_node_truth_plus_the_register_it_started_with() -> None:
    state = meter_state(TRUTH, energy_import_start_wh=1_000_000.0)
    assert state.current_a == TRUTH.current_a
    assert state.voltage_v == TRUTH.voltage_v
    assert state.active_power_import_w == 27_000.0
    assert state.energy_import_wh == 1_001_500.0
    assert state.reactive_energy_import_varh == 100.0
    assert meter_state(TRUTH).energy_import_wh == 1_500.0


def test_meter_profile_carries_vendor_wiring_and_ct_ratio() -> None:
    sim = MeterSim(
        fuse="main", vendor="aidon", grid="IT", ct_ratio=40.0, model="6540", meter_id="7359992890012345"
    )
    profile = meter_profile(sim)
    assert profile.vendor is Vendor.AIDON
    assert (profile.grid, profile.phases, profile.ct_ratio) == ("IT", 3, 40.0)
    assert (profile.model, profile.meter_id) == ("6540", "7359992890012345")
    assert profile.three_wire
    default = meter_profile(MeterSim(fuse="main", vendor="kamstrup", grid="TN"))
    assert default.vendor is Vendor.KAMSTRUP and default.ct_ratio == 1.0


def test_scenario_meter_faults_map_to_the_meters_fault_drills() -> None:
    assert meter_fault(MeterFaultSpec(10.0, "meter_silence", duration_s=30)) == Silence(30.0)
    assert meter_fault(MeterFaultSpec(10.0, "meter_freeze", duration_s=60)) == Freeze(60.0)
    assert meter_fault(MeterFaultSpec(10.0, "meter_garbage", garbage_bytes=9, frames=2)) == Garbage(9, 2)
    assert meter_fault(MeterFaultSpec(10.0, "meter_corrupt", bits=2, frames=3)) == FlipBits(2, 3)
