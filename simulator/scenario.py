"""A scenario: everything the simulated garage is built from, as typed, frozen values.

A TOML loader can map a file onto these one to one; `Scenario.validate()` holds the cross-checks
(every charger hangs under a known fuse, identities are unique, faults name things that exist).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from simulator.arrivals import ArrivalProcess, CarArrival
from simulator.baseload import BaseLoadSpec
from simulator.chargers.spec import ChargerSpec
from simulator.physics.network import FuseSpec
from simulator.physics.phasors import Grid

FaultKind = Literal[
    "charger_disconnect", "charger_reboot", "ignore_profiles", "network_delay", "fuse_reclose"
]


@dataclass(frozen=True, slots=True)
class GridSpec:
    type: Grid = "IT"
    nominal_voltage_v: float = 230.0


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """Something that happens to a charger (or a fuse) at `at_s` seconds from the start.

    - charger_disconnect: the link drops for `duration_s`;
    - charger_reboot: the charger loses power and boots again after its reboot time;
    - ignore_profiles: the charger accepts but ignores charging profiles for `duration_s` (0: to the end);
    - network_delay: every frame is delayed by `value` seconds for `duration_s` (0: to the end);
    - fuse_reclose: an electrician replaces the blown fuse `target`.
    `target` is a charger identity, a fuse id for fuse_reclose, or "*" for every charger.
    """

    at_s: float
    kind: FaultKind
    target: str
    duration_s: float = 0.0
    value: float = 0.0


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    fuses: tuple[FuseSpec, ...]
    chargers: tuple[ChargerSpec, ...]
    grid: GridSpec = field(default_factory=GridSpec)
    base_loads: tuple[BaseLoadSpec, ...] = ()
    arrivals: ArrivalProcess | None = None
    visits: tuple[CarArrival, ...] = ()
    faults: tuple[FaultSpec, ...] = ()
    duration_s: float = 3600.0
    seed: int = 0
    step_s: float = 0.25
    record_every_steps: int = 4
    start_utc: datetime = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)
    timezone: str = "Europe/Oslo"
    csms_url: str | None = None
    ca_file: str | None = None

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistency."""
        if self.duration_s <= 0:
            raise ValueError("duration_s must be positive")
        if not 0.01 <= self.step_s <= 5.0:
            raise ValueError("step_s must be between 0.01 and 5 s")
        if self.record_every_steps < 1:
            raise ValueError("record_every_steps must be at least 1")
        if self.start_utc.tzinfo is None:
            raise ValueError("start_utc must be timezone-aware")
        fuse_ids = {f.id for f in self.fuses}
        identities: set[str] = set()
        for charger in self.chargers:
            if charger.identity in identities:
                raise ValueError(f"charger identity {charger.identity!r} used twice")
            identities.add(charger.identity)
            if charger.fuse not in fuse_ids:
                raise ValueError(f"charger {charger.identity}: unknown fuse {charger.fuse!r}")
            charger.phases(self.grid.type)
        for load in self.base_loads:
            if load.fuse not in fuse_ids:
                raise ValueError(f"base load {load.id}: unknown fuse {load.fuse!r}")
        for visit in self.visits:
            if visit.charger is not None and visit.charger not in identities:
                raise ValueError(f"visit {visit.name}: unknown charger {visit.charger!r}")
        for fault in self.faults:
            if fault.kind == "fuse_reclose":
                if fault.target not in fuse_ids:
                    raise ValueError(f"fault at {fault.at_s} s: unknown fuse {fault.target!r}")
            elif fault.target != "*" and fault.target not in identities:
                raise ValueError(f"fault at {fault.at_s} s: unknown charger {fault.target!r}")
            if fault.at_s < 0 or fault.duration_s < 0:
                raise ValueError(f"fault at {fault.at_s} s: times must not be negative")
