"""Grid physics: phasor line currents on IT and TN, the fuse tree, and trip models."""

from simulator.physics.network import FuseSpec, FuseTree, GridModel, NodeTruth
from simulator.physics.phasors import (
    LINES,
    Grid,
    Line,
    balanced_three_phase_load,
    branch_load,
    car_load,
    it_line_currents_closed_form,
    line_currents_a,
    line_load,
    power_per_amp_w,
    star_voltage_v,
)
from simulator.physics.protection import TripAccumulator, TripCurve, gg_fuse, mcb, trip_curve

__all__ = [
    "LINES",
    "FuseSpec",
    "FuseTree",
    "Grid",
    "GridModel",
    "Line",
    "NodeTruth",
    "TripAccumulator",
    "TripCurve",
    "balanced_three_phase_load",
    "branch_load",
    "car_load",
    "gg_fuse",
    "it_line_currents_closed_form",
    "line_currents_a",
    "line_load",
    "mcb",
    "power_per_amp_w",
    "star_voltage_v",
    "trip_curve",
]
