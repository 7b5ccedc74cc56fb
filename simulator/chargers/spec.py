"""Configuration of a virtual charger: what it is (spec) and what the CSMS may change (settings)."""

from __future__ import annotations

from dataclasses import dataclass, field

from simulator.chargers.rpc import Version
from simulator.physics.phasors import Grid, line_index

DEFAULT_MEASURANDS = ("Energy.Active.Import.Register", "Current.Import", "Power.Active.Import")
SUPPORTED_MEASURANDS = frozenset({*DEFAULT_MEASURANDS, "Current.Offered", "Voltage", "SoC"})


@dataclass(frozen=True, slots=True)
class ChargerSpec:
    """One charger. `lines` are the grid lines of its terminals in terminal order (DESIGN.md 3):
    TN one line per phase; IT a single-phase charger has two (its phase and return terminals), a
    three-phase charger three. `connector_lines` optionally gives each connector its own wiring (a
    twin charger whose two single-phase outlets sit on different line pairs); all connectors then
    have the same number of lines, and `lines` describes connector 1. `default_limit_a` is what it
    offers when no charging profile applies (None: its hardware maximum). A limit below
    `min_current_a` pauses charging. Times are in simulated seconds."""

    identity: str
    fuse: str
    lines: tuple[str, ...] = ("L1", "L2", "L3")
    connector_lines: tuple[tuple[str, ...], ...] = ()
    version: Version = "1.6"
    connectors: int = 1
    max_current_a: float = 32.0
    default_limit_a: float | None = None
    min_current_a: float = 6.0
    password: str | None = None
    profile_delay_s: float = 1.0
    ignore_profiles: bool = False
    reboot_s: float = 30.0
    reconnect_s: float = 10.0
    response_timeout_s: float = 30.0
    meter_sample_interval_s: float = 60.0
    clock_aligned_interval_s: float = 900.0
    heartbeat_interval_s: float = 300.0
    energy_register_start_wh: float = 0.0
    vendor: str = "SimGarage"
    model: str = "VirtualCharger"
    serial_number: str | None = None

    def __post_init__(self) -> None:
        if not self.identity or "/" in self.identity:
            raise ValueError(f"charger identity {self.identity!r} is empty or contains '/'")
        for lines in (self.lines, *self.connector_lines):
            for line in lines:
                line_index(line)
            if len(set(lines)) != len(lines) or not 1 <= len(lines) <= 3:
                raise ValueError(f"charger {self.identity}: lines must be 1-3 different lines, got {lines}")
        if self.connector_lines:
            if len(self.connector_lines) != self.connectors:
                raise ValueError(
                    f"charger {self.identity}: connector_lines has {len(self.connector_lines)} entries "
                    f"for {self.connectors} connectors"
                )
            if any(len(lines) != len(self.lines) for lines in self.connector_lines):
                raise ValueError(f"charger {self.identity}: every connector needs as many lines as `lines`")
        if self.version not in ("1.6", "2.0.1"):
            raise ValueError(f"charger {self.identity}: version must be 1.6 or 2.0.1")
        if self.connectors < 1:
            raise ValueError(f"charger {self.identity}: needs at least one connector")
        if not 0 < self.min_current_a <= self.max_current_a:
            raise ValueError(f"charger {self.identity}: need 0 < min_current_a <= max_current_a")

    def phases(self, grid: Grid) -> int:
        """Charging phases the charger offers: IT two wires carry one phase."""
        if grid == "IT":
            if len(self.lines) < 2:
                raise ValueError(f"charger {self.identity}: an IT charger needs two or three lines")
            return 1 if len(self.lines) == 2 else 3
        return len(self.lines)

    def lines_of(self, connector_id: int) -> tuple[str, ...]:
        """The grid lines of one connector's terminals (1-based connector id)."""
        if self.connector_lines:
            return self.connector_lines[connector_id - 1]
        return self.lines

    @property
    def fallback_limit_a(self) -> float:
        return self.max_current_a if self.default_limit_a is None else self.default_limit_a


@dataclass(slots=True)
class Settings:
    """Runtime configuration, the neutral form of 1.6 configuration keys and 2.0.1 variables."""

    heartbeat_interval_s: float = 300.0
    sample_interval_s: float = 60.0
    aligned_interval_s: float = 900.0
    sampled_measurands: list[str] = field(default_factory=lambda: list(DEFAULT_MEASURANDS))
    aligned_measurands: list[str] = field(default_factory=lambda: ["Energy.Active.Import.Register"])
    # 2.0.1 SampledDataCtrlr.TxStartedMeasurands / TxEndedMeasurands: what a Started / Ended
    # TransactionEvent carries. Empty: no meter value at all, which the specification allows.
    started_measurands: list[str] = field(default_factory=lambda: ["Energy.Active.Import.Register"])
    ended_measurands: list[str] = field(default_factory=lambda: ["Energy.Active.Import.Register"])
    connection_timeout_s: float = 60.0
    local_authorize_offline: bool = True
    authorize_remote_start: bool = False
    message_attempts: int = 3
    message_retry_interval_s: float = 20.0
