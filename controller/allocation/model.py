"""The values the allocation engine takes and gives: one picture of the site in, one decision out.

Everything the decision depends on is in `SiteSnapshot`, including the time (`now`) and the setpoints
last sent, so `allocate` needs no clock and no memory of its own. The JSON form of these values (the
site snapshot of DESIGN §7.2) lives in `snapshot_json`; `docs/snapshot.md` documents every field.

Per-line values are tuples in the order L1, L2, L3 with `None` where nothing is known - never 0.
"""

from __future__ import annotations

import enum
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


class Drive(enum.StrEnum):
    """What is known of a charger's limit, and so what it may be drawing now (docs/snapshot.md).

    Commandable (`COMMANDABLE`): the allocator decides its current, its `setpoint_a` is what it holds
    or is heading to. Otherwise it is budgeted as a fixed load of `may_draw_a` on every wired line
    (its maximum when not given) and decided nothing: the dispatcher keeps trying to regain it.
    """

    ACKNOWLEDGED = "acknowledged"  # the charger confirmed its limit; the lease runs
    IN_FLIGHT = "in_flight"  # a new limit is on its way (setpoint_a: that limit)
    UNKNOWN = "unknown"  # (re)connected, nothing confirmed yet: the first limit is at most its safe current
    FAILED = "failed"  # the last command failed: the higher of the confirmed and the failed limit
    LAPSED = "lapsed"  # the lease ran out unrefreshed: the higher of the confirmed and its safe current
    REFUSED = "refused"  # it refuses limits (not provisioned, rejects profiles): up to its maximum
    OFFLINE = "offline"  # not connected, or silent while it may be charging: up to its maximum
    NOT_DRIVEN = "not_driven"  # no driver for its protocol: up to its maximum


COMMANDABLE = frozenset({Drive.ACKNOWLEDGED, Drive.IN_FLIGHT, Drive.UNKNOWN})


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
    # ... unless its minimum fits with this much to spare on every line it loads.
    restart_margin_a: float = 3.0


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
    # matched with the chargers' reports (see controller.site.base_load); None: computed from currents_a.
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
    setpoint_a: float | None = None  # the limit it holds or is heading to; None or 0: not charging
    vehicle: Vehicle | None = None
    safe_current_a: float | None = None  # None: min_a
    drive: Drive = Drive.ACKNOWLEDGED
    # What it may be drawing now when it is not commandable (None: its maximum).
    may_draw_a: float | None = None
    weight: float = 1.0

    @property
    def commandable(self) -> bool:
        return self.drive in COMMANDABLE

    @property
    def online(self) -> bool:
        return self.drive is not Drive.OFFLINE


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
    """`current_a` is the fair share (`target_a` the same, kept for the JSON format); how fast the
    charger is moved to it is the pacer's (controller/pacing.py)."""

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
