"""The values the allocation engine takes and gives: one picture of the site in, one decision out.

Everything the decision depends on is in `SiteSnapshot`, including the time (`now`) and the setpoints
last sent, so `allocate` needs no clock and no memory of its own. The JSON form of these values (the
site snapshot of DESIGN §7.2) lives in `snapshot_json`; `docs/snapshot.md` documents every field.

Per-line values are tuples in the order L1, L2, L3 with `None` where nothing is known - never 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from drivers.contracts import Line

GridType = Literal["IT", "TN"]
ChargerState = Literal["charging", "paused", "idle"]
LineValues = tuple[float | None, float | None, float | None]
LineTriple = tuple[float, float, float]

SNAPSHOT_VERSION = 1

# `limited_by` values besides `fuse:<id>:<line>`; docs/snapshot.md explains each.
CHARGER_MAX = "charger_max"
VEHICLE_MAX = "vehicle_max"
DRAWING = "drawing"
ROTATION = "rotation"
START_LIMIT = "start_limit"
RESTART_HOLD = "restart_hold"
FAILSAFE = "failsafe"
OFFLINE = "offline"
RAMP = "ramp"
DEADBAND = "deadband"


def fuse_reason(fuse_id: str, line: Line) -> str:
    return f"fuse:{fuse_id}:{line}"


class SnapshotError(ValueError):
    """A snapshot that cannot be allocated, with the path of the offending field (`chargers[3].lines`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class Grid:
    type: GridType
    nominal_voltage_v: float = 230.0


@dataclass(frozen=True, slots=True)
class Policy:
    """How the site shares current. Defaults are the documented ones (docs/snapshot.md)."""

    safety_margin_a: float = 2.0
    min_current_a: float = 6.0
    rotation_period_s: float = 900.0
    deadband_a: float = 1.0
    # None: an increase is made in one step.
    increase_step_a: float | None = 4.0
    taper_ratio: float = 0.95
    taper_tolerance_a: float = 0.5
    taper_headroom_a: float = 3.0
    max_starts_per_hour: int = 4
    meter_stale_after_s: float = 30.0
    # A car the controller paused (`paused_at`) is not started again for this long: readings wobbling
    # around a fuse line's limit would otherwise start and pause it every few seconds.
    restart_hold_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Fuse:
    id: str
    limit_a: float
    parent: str | None = None
    # Non-EV load on this fuse outside any child fuse; used only where no meter sits on the fuse.
    base_load_a: float = 0.0


@dataclass(frozen=True, slots=True)
class Meter:
    """A meter on a fuse node: it measures everything below that node. `age_s` None: never read."""

    fuse: str
    currents_a: LineValues
    age_s: float | None
    # The base load below this fuse as the daemon holds it while the meter's latest list cannot be
    # matched with the chargers' reports (see controller.site.state); None: computed from currents_a.
    base_a: LineValues | None = None


@dataclass(frozen=True, slots=True)
class Vehicle:
    connected: bool = True
    wants_energy: bool = True
    max_a: float | None = None
    # Grid lines the car draws on; None until learned (then all wired lines are assumed).
    active_lines: tuple[Line, ...] | None = None
    # Measured current per grid line.
    drawing_a: LineValues = (None, None, None)
    charging_since: datetime | None = None
    waiting_since: datetime | None = None
    # When the controller last paused this car after it charged (restart hold); None: never.
    paused_at: datetime | None = None
    session_energy_wh: float | None = None
    # When the controller started or paused this car (for the per-hour limit); older entries are ignored.
    start_times: tuple[datetime, ...] = ()


@dataclass(frozen=True, slots=True)
class Charger:
    id: str
    fuse: str
    # Grid lines wired to terminals 1, 2, 3 (phase rotation).
    lines: tuple[Line, ...]
    max_a: float
    min_a: float | None = None  # None: the policy's min_current_a
    setpoint_a: float | None = None  # last sent; None: never sent
    vehicle: Vehicle | None = None
    safe_current_a: float | None = None  # None: min_a
    online: bool = True
    weight: float = 1.0


@dataclass(frozen=True, slots=True)
class SiteSnapshot:
    now: datetime
    grid: Grid
    fuses: tuple[Fuse, ...]
    chargers: tuple[Charger, ...] = ()
    meters: tuple[Meter, ...] = ()
    policy: Policy = field(default_factory=Policy)
    version: int = SNAPSHOT_VERSION


@dataclass(frozen=True, slots=True)
class ChargerDecision:
    """`current_a` is what to send now; `target_a` the fair share before smoothing and deadband."""

    current_a: float
    state: ChargerState
    limited_by: str | None
    target_a: float


@dataclass(frozen=True, slots=True)
class FuseLoad:
    limit_a: float
    predicted_a: LineTriple


@dataclass(frozen=True, slots=True)
class Allocation:
    chargers: Mapping[str, ChargerDecision]
    fuses: Mapping[str, FuseLoad]
    # Why the site runs on safe currents (stale or unusable meter); None in normal operation.
    failsafe: str | None = None


@dataclass(frozen=True, slots=True)
class BudgetCheck:
    """Safe currents plus worst-case base load against every fuse line (`limit_a - safety_margin_a`)."""

    fits: bool
    fuses: Mapping[str, FuseLoad]
    overloaded: tuple[str, ...]  # `fuse:<id>:<line>` of every line that does not fit
