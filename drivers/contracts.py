"""Contracts between the drivers and everything above them.

Drivers turn wire bytes into the frozen values below and typed commands into wire bytes. They know
nothing of the controller: no fuse tree, no grid line mapping, no policy. A charger reports currents
per *terminal* (its own phase 1, 2, 3); which grid line a terminal is wired to is site configuration
and is applied above the driver.

Conventions: units in names (`_a`, `_v`, `_w`, `_wh`, `_s`), import positive, amps per phase, UTC in
records (`datetime` values are timezone-aware), and `None` for a value the device did not send - never 0.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

Line = Literal["L1", "L2", "L3"]
LINES: tuple[Line, Line, Line] = ("L1", "L2", "L3")


class Clock(Protocol):
    """Time as seen by one process. Injected everywhere so tests and accelerated simulations agree.

    `monotonic()` and `sleep()` are in the clock's own seconds, which are simulated seconds when the
    clock is accelerated; `loop_seconds()` converts a duration to event-loop seconds for APIs that take
    loop time (`asyncio.timeout`, `asyncio.wait_for`).
    """

    def monotonic(self) -> float: ...

    def utc_now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...

    def loop_seconds(self, seconds: float) -> float: ...


@dataclass(frozen=True, slots=True)
class ReceiveTime:
    """When a value arrived at the box: monotonic for staleness, UTC for records."""

    monotonic_s: float
    utc: datetime


# --------------------------------------------------------------------------------------------- meter


class MeterVendor(enum.StrEnum):
    AIDON = "aidon"
    KAIFA = "kaifa"
    KAMSTRUP = "kamstrup"
    LANDIS_GYR = "landis_gyr"


class MeterList(enum.IntEnum):
    """NVE-equivalent list content (Kamstrup's own list numbers differ)."""

    POWER_ONLY = 1
    FULL = 2
    FULL_WITH_ENERGY = 3


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One decoded HAN list. Field names match `expected` in ../shared/data/han/frames.jsonl.

    Currents and powers are already multiplied by the meter's current-transformer ratio. On IT grids
    the voltages are line-to-line. `meter_time` is the meter's own clock (Europe/Oslo wall-clock time,
    made timezone-aware), from the clock object or else from the data-notification header.
    """

    vendor: MeterVendor
    list_type: MeterList
    received: ReceiveTime
    meter_id: str | None = None
    meter_model: str | None = None
    list_version: str | None = None
    meter_time: datetime | None = None
    active_power_import_w: float | None = None
    active_power_export_w: float | None = None
    reactive_power_import_var: float | None = None
    reactive_power_export_var: float | None = None
    current_l1_a: float | None = None
    current_l2_a: float | None = None
    current_l3_a: float | None = None
    voltage_l1_v: float | None = None
    voltage_l2_v: float | None = None
    voltage_l3_v: float | None = None
    energy_import_wh: float | None = None
    energy_export_wh: float | None = None
    reactive_energy_import_varh: float | None = None
    reactive_energy_export_varh: float | None = None

    def current_a(self, line: Line) -> float | None:
        return {"L1": self.current_l1_a, "L2": self.current_l2_a, "L3": self.current_l3_a}[line]


MeterReadingSink = Callable[[MeterReading], None]


# ------------------------------------------------------------------------------------------ chargers


class ConnectorState(enum.StrEnum):
    """Connector state, the union of OCPP 1.6 ChargePointStatus and 2.0.1 ConnectorStatus/ChargingState.

    UNKNOWN is no report: the state of a charging point the charger has not told anything about
    since this process started. It proves nothing - in particular not that a transaction ended.
    """

    UNKNOWN = "unknown"  # not reported yet
    AVAILABLE = "available"  # no vehicle
    PREPARING = "preparing"  # vehicle plugged in, no energy transfer yet
    CHARGING = "charging"
    SUSPENDED_EV = "suspended_ev"  # the car does not take energy (full, or waiting)
    SUSPENDED_EVSE = "suspended_evse"  # the charger withholds energy (0 A limit)
    FINISHING = "finishing"
    RESERVED = "reserved"
    UNAVAILABLE = "unavailable"
    FAULTED = "faulted"


PerTerminal = tuple[float | None, float | None, float | None]
"""Values per charger terminal phase 1, 2, 3 (not grid lines); None where the charger does not report."""


@dataclass(frozen=True, slots=True)
class ChargerStatus:
    """Latest known state of one charging point (one connector/EVSE), as one value."""

    charger_id: str
    online: bool
    state: ConnectorState
    vehicle_connected: bool
    measured_current_a: PerTerminal = (None, None, None)
    energy_register_wh: float | None = None
    power_w: float | None = None
    id_tag: str | None = None
    transaction_id: str | None = None
    applied_limit_a: float | None = None
    last_seen: ReceiveTime | None = None  # any message from the charger
    # When `measured_current_a` was last reported (a report may repeat the same values): a
    # consumer can tell a fresh reading that shows no change from no reading at all.
    currents_received: ReceiveTime | None = None


@dataclass(frozen=True, slots=True)
class TransactionStarted:
    """A transaction began on a charging point.

    `meter_start_wh` is the energy register the charger sent with the start; None when it sent
    none (an OCPP 2.0.1 Started event may carry no meter value). Never 0 in its place: a start
    register of 0 followed by a sample of 1 234 567 Wh would bill 1.2 MWh.
    """

    charger_id: str
    transaction_id: str
    id_tag: str | None
    meter_start_wh: float | None
    started_utc: datetime
    received: ReceiveTime


@dataclass(frozen=True, slots=True)
class EnergySample:
    """An energy register reading tied to a transaction, stamped by the charger's clock."""

    charger_id: str
    transaction_id: str | None
    energy_register_wh: float
    measured_utc: datetime
    received: ReceiveTime
    clock_aligned: bool = False


@dataclass(frozen=True, slots=True)
class TransactionStopped:
    """A transaction ended. `meter_stop_wh` is the register the charger sent with the stop; None
    when it sent none (OCPP 2.0.1 Ended without a meter value)."""

    charger_id: str
    transaction_id: str
    id_tag: str | None
    meter_stop_wh: float | None
    stopped_utc: datetime
    reason: str
    received: ReceiveTime


ChargerEvent = ChargerStatus | TransactionStarted | EnergySample | TransactionStopped
ChargerEventSink = Callable[[ChargerEvent], None]
ChargerEventRecorder = Callable[[ChargerEvent], Awaitable[None]]
"""Stores a billing event for good: returns once it is committed, raises when it cannot be. A
driver answers a charger's transaction start and stop only after this returned, so that an answer
the charger has seen is never lost with the process; the event reaches the sink's consumers too."""


class CommandOutcome(enum.StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    TIMEOUT = "timeout"
    OFFLINE = "offline"
    NOT_SUPPORTED = "not_supported"


@dataclass(frozen=True, slots=True)
class CommandResult:
    outcome: CommandOutcome
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome is CommandOutcome.ACCEPTED


@runtime_checkable
class CurrentLimiter(Protocol):
    """Sets the dynamic current of a charging point. 0 A pauses; any value ≥ the minimum resumes.

    `lease_s` is how long the limit holds on the charger without a refresh; after it the charger
    falls back to its safe current on its own. `phases` is the number of phases to use, when known.
    """

    charger_id: str

    async def set_current(
        self, current_a: float, *, lease_s: float, phases: int | None = None, timeout_s: float = 10.0
    ) -> CommandResult: ...

    async def install_safe_limit(
        self, safe_current_a: float, *, timeout_s: float = 10.0
    ) -> CommandResult: ...


@runtime_checkable
class RemoteStartStop(Protocol):
    charger_id: str

    async def remote_start(self, id_tag: str, *, timeout_s: float = 10.0) -> CommandResult: ...

    async def remote_stop(self, *, timeout_s: float = 10.0) -> CommandResult: ...


@runtime_checkable
class Availability(Protocol):
    charger_id: str

    async def set_available(self, available: bool, *, timeout_s: float = 10.0) -> CommandResult: ...
