"""The allocation engine: fair, phase-exact current allocation under a fuse tree (DESIGN §3, §4).

    allocate(snapshot) -> Allocation                      pure; the snapshot carries time and history
    predict_fuse_currents(snapshot, setpoints_a) -> {fuse: (L1, L2, L3)}
    check_failsafe_budget(snapshot, worst_base_a) -> BudgetCheck

The JSON form of snapshots and allocations (DESIGN §7.2, docs/snapshot.md) is in
`controller.allocation.snapshot_json`, which imports pydantic; this package itself needs only numpy.
"""

from controller.allocation.allocator import (
    allocate,
    base_at_meters,
    check_failsafe_budget,
    predict_fuse_currents,
)
from controller.allocation.model import (
    COMMANDABLE,
    Allocation,
    BudgetCheck,
    Charger,
    ChargerDecision,
    Drive,
    Fuse,
    FuseLoad,
    Grid,
    Meter,
    Policy,
    SiteSnapshot,
    SnapshotError,
    Vehicle,
)

__all__ = [
    "COMMANDABLE",
    "Allocation",
    "BudgetCheck",
    "Charger",
    "ChargerDecision",
    "Drive",
    "Fuse",
    "FuseLoad",
    "Grid",
    "Meter",
    "Policy",
    "SiteSnapshot",
    "SnapshotError",
    "Vehicle",
    "allocate",
    "base_at_meters",
    "check_failsafe_budget",
    "predict_fuse_currents",
]
