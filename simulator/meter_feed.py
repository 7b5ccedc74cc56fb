"""The bridge from a fuse node's ground truth to the virtual HAN meter's input.

The HAN meter (simulator/han_meter, built separately) encodes frames from a `MeterState` with the
per-line currents and voltages, active/reactive import/export powers and energy registers. This
module names those values the way the meter expects them, so the integration is
`MeterState(**meter_state_kwargs(garage.node_truth("main")))` with no arithmetic in between.
"""

from __future__ import annotations

from collections.abc import Callable

from simulator.physics.network import NodeTruth


def meter_state_kwargs(truth: NodeTruth) -> dict[str, object]:
    """Keyword arguments for the HAN meter's MeterState (primary values; a current-transformer
    ratio, if the meter is to model one, is the meter's business)."""
    return {
        "current_a": truth.current_a,
        "voltage_v": truth.voltage_v,
        "active_power_import_w": truth.active_power_import_w,
        "active_power_export_w": truth.active_power_export_w,
        "reactive_power_import_var": truth.reactive_power_import_var,
        "reactive_power_export_var": truth.reactive_power_export_var,
        "energy_import_wh": truth.energy_import_wh,
        "energy_export_wh": truth.energy_export_wh,
        "reactive_energy_import_varh": truth.reactive_energy_import_varh,
        "reactive_energy_export_varh": truth.reactive_energy_export_varh,
    }


TruthSource = Callable[[], NodeTruth]
"""What the meter task polls: e.g. `lambda: garage.node_truth("main")`."""
