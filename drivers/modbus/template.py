"""Device templates: a Modbus charger's or meter's register map, as data (config/devices/*.toml).

A template names registers by meaning (`set_current`, `energy`, `current_l1`, ...) with the address,
table, type, word order, scale and unit the vendor's document gives, and says how the device falls
back when the controller goes quiet. The driver reads and writes by meaning only, so a new model is a
new file, not code. Every template cites the document its numbers come from.

Loading checks more than the shape: the units fit the meanings, integer registers that are written
can hold the range they must, two values do not overlap, a charger has what the controller needs
to drive and bill it, and the fail-safe names the registers it uses. An error names the file, the
key and the reason (`TemplateError`).
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from drivers.modbus.codec import RegisterSpec, Table, ValueType, WordOrder

# What each meaning is measured in, and the units a template may give it in (with the factor to
# the base unit). `set_current` in W is for chargers that take a power setpoint.
_QUANTITY = {
    "A": {"A": 1.0, "mA": 0.001},
    "Wh": {"Wh": 1.0, "kWh": 1000.0},
    "W": {"W": 1.0, "kW": 1000.0},
    "V": {"V": 1.0},
    "s": {"s": 1.0, "ms": 0.001, "min": 60.0},
    "": {"": 1.0},
}
CHARGER_MEANINGS: Mapping[str, str] = {
    "set_current": "A",  # the dynamic limit the controller writes (A; W where the charger takes power)
    "applied_current": "A",  # the limit the charger applies now
    "failsafe_current": "A",
    "comm_timeout": "s",
    "heartbeat": "",
    "vehicle_state": "",
    "current_l1": "A",
    "current_l2": "A",
    "current_l3": "A",
    "voltage_l1": "V",
    "voltage_l2": "V",
    "voltage_l3": "V",
    "power": "W",
    "energy": "Wh",  # a register that only grows (lifetime, or one the charger never resets mid-session)
    "session_energy": "Wh",
    "serial": "",
    "firmware": "",
    "model": "",
    "phases": "",
    "rfid": "",
    "max_current": "A",
}
METER_MEANINGS: Mapping[str, str] = {
    "current_l1": "A",
    "current_l2": "A",
    "current_l3": "A",
    "voltage_l1": "V",
    "voltage_l2": "V",
    "voltage_l3": "V",
    "power": "W",
    "energy_import": "Wh",
    "serial": "",
    "model": "",
}
# Identification may be text or a number the vendor prints in decimal or hex.
TEXT_MEANINGS = frozenset({"serial", "firmware", "model", "rfid"})
_WRITTEN = frozenset({"set_current", "comm_timeout", "heartbeat", "phases"})
IEC_STATES = ("A", "B", "C", "D", "E", "F")


class TemplateError(ValueError):
    """A template that cannot be used: `path`, the dotted `key` and the `reason`."""

    def __init__(self, path: Path, key: str, reason: str) -> None:
        super().__init__(f"{path}: {key}: {reason}" if key else f"{path}: {reason}")
        self.path = path
        self.key = key
        self.reason = reason


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceKind(enum.StrEnum):
    CHARGER = "charger"
    METER = "meter"


class DeviceSection(_Model):
    kind: DeviceKind
    vendor: str = Field(min_length=1)
    model: str = Field(min_length=1)
    document: str = Field(min_length=1)
    """The vendor's Modbus document the register numbers come from."""
    document_version: str = Field(min_length=1)
    transports: tuple[Literal["tcp", "rtu"], ...] = Field(min_length=1)
    unit_id: int = Field(default=1, ge=0, le=255)
    """The unit id the device answers on by default (RTU: 1-247; Modbus TCP devices may use 255)."""
    identification_unit_id: int | None = Field(default=None, ge=0, le=255)
    """Where the identification registers (serial, firmware, model) are served when that is not
    `unit_id` (Alfen: 200)."""
    max_read_gap: int = Field(default=0, ge=0, le=32)
    """Registers between two values that one read request may span. 0 unless the document says the
    device answers reads across unused addresses (many answer them with an exception)."""
    notes: str = ""


class RegisterEntry(_Model):
    address: int = Field(ge=0, le=0xFFFF)
    """0-based protocol address (a document's "40001" is address 0 of the holding table)."""
    type: ValueType
    table: Table = Table.HOLDING
    access: Literal["r", "w", "rw"] | None = None
    """Read, write or both; default: both for a holding register, read for an input register."""
    word_order: WordOrder = WordOrder.BIG
    scale: float = Field(default=1.0, gt=0)
    unit: str = ""
    length: int | None = Field(default=None, ge=1, le=64)
    """Registers a string spans."""
    mask: int | None = Field(default=None, ge=1)
    """Bits of an integer register that hold the value (state codes packed with other fields)."""
    shift: int = Field(default=0, ge=0, le=63)
    """Right shift applied after the mask."""
    min: float | None = None
    """The lowest plausible reading (in `unit`); below it a reading is refused, not used."""
    max: float | None = None
    """The highest plausible reading."""

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if self.type is ValueType.STRING and self.length is None:
            raise ValueError("a string register needs `length` (in registers)")
        if self.type is not ValueType.STRING and self.length is not None:
            raise ValueError("`length` is only for strings")
        if self.mask is not None and self.type in (ValueType.F32, ValueType.F64, ValueType.STRING):
            raise ValueError("`mask` is only for integer registers")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError("`min` must be below `max`")
        if self.table is Table.INPUT and self.access not in (None, "r"):
            raise ValueError("an input register is read only")
        return self

    @property
    def readable(self) -> bool:
        return self.access != "w"

    @property
    def writable(self) -> bool:
        return self.table is Table.HOLDING and self.access != "r"

    def spec(self, name: str) -> RegisterSpec:
        return RegisterSpec(
            name=name,
            address=self.address,
            type=self.type,
            table=self.table,
            word_order=self.word_order,
            scale=self.scale,
            unit=self.unit,
            length=self.length,
        )


class VehicleStateSection(_Model):
    """How the vehicle-state register reads as IEC 61851-1 states A-F."""

    register_name: str = Field(default="vehicle_state", alias="register")
    map: dict[str, Literal["A", "B", "C", "D", "E", "F"]] = Field(min_length=1)
    """Raw value (an integer as text, or the string the register holds) -> IEC state."""


class FailsafeKind(enum.StrEnum):
    REGISTERS = "registers"  # safe current and timeout written and read back at every (re)connect
    TIMEOUT = "timeout"  # a timeout written; the charger falls back to a current set on it
    FIXED = "fixed"  # the charger falls back after `timeout_s` without a write; nothing to set
    NONE = "none"  # keeps its last setpoint for ever when the controller is gone


class FailsafeSection(_Model):
    kind: FailsafeKind
    safe_current: str | None = None
    """The register the safe current is written to (kind `registers`)."""
    timeout: str | None = None
    """The register the communication timeout is written to (kinds `registers`, `timeout`)."""
    timeout_s: float | None = Field(default=None, gt=0)
    """The timeout to write, or the charger's fixed one (kind `fixed`)."""
    heartbeat_period_s: float | None = Field(default=None, gt=0)
    """With a `heartbeat` register: how often it is written (well within the timeout)."""
    heartbeat_value: int = Field(default=1, ge=0, le=0xFFFF)
    notes: str = ""

    @model_validator(mode="after")
    def _complete(self) -> Self:
        need: dict[FailsafeKind, tuple[str, ...]] = {
            FailsafeKind.REGISTERS: ("safe_current", "timeout", "timeout_s"),
            FailsafeKind.TIMEOUT: ("timeout", "timeout_s"),
            FailsafeKind.FIXED: ("timeout_s",),
            FailsafeKind.NONE: (),
        }
        missing = [key for key in need[self.kind] if getattr(self, key) is None]
        if missing:
            raise ValueError(f"kind {self.kind.value!r} needs {', '.join(missing)}")
        return self


class DeviceTemplate(_Model):
    device: DeviceSection
    registers: dict[str, RegisterEntry]
    vehicle_state: VehicleStateSection | None = None
    failsafe: FailsafeSection | None = None

    @property
    def name(self) -> str:
        return f"{self.device.vendor} {self.device.model}"

    def spec(self, meaning: str) -> RegisterSpec | None:
        entry = self.registers.get(meaning)
        return None if entry is None else entry.spec(meaning)

    def to_base_unit(self, meaning: str, value: float) -> float:
        """A decoded value in the meaning's base unit (A, Wh, W, V, s)."""
        return value * _factor(self, meaning)

    def from_base_unit(self, meaning: str, value: float) -> float:
        return value / _factor(self, meaning)

    @property
    def has_failsafe(self) -> bool:
        return self.failsafe is not None and self.failsafe.kind is not FailsafeKind.NONE


def _factor(template: DeviceTemplate, meaning: str) -> float:
    entry = template.registers[meaning]
    meanings = CHARGER_MEANINGS if template.device.kind is DeviceKind.CHARGER else METER_MEANINGS
    base = meanings[meaning]
    if meaning == "set_current" and entry.unit in _QUANTITY["W"]:
        return _QUANTITY["W"][entry.unit]  # a power setpoint: the driver converts with the phases
    return _QUANTITY[base][entry.unit]


def _check(template: DeviceTemplate) -> list[tuple[str, str]]:
    """Cross-field problems, as (key, reason)."""
    problems: list[tuple[str, str]] = []
    kind = template.device.kind
    meanings = CHARGER_MEANINGS if kind is DeviceKind.CHARGER else METER_MEANINGS
    for name, entry in template.registers.items():
        key = f"registers.{name}"
        if name not in meanings:
            known = ", ".join(sorted(meanings))
            problems.append((key, f"unknown meaning for a {kind.value}; known: {known}"))
            continue
        base = meanings[name]
        allowed = dict(_QUANTITY[base])
        if name == "set_current":
            allowed |= _QUANTITY["W"]
        if entry.unit not in allowed:
            units = ", ".join(repr(u) for u in allowed)
            problems.append((f"{key}.unit", f"{entry.unit!r} is not a unit of {name} (use {units})"))
        if entry.type is ValueType.STRING and name not in TEXT_MEANINGS | {"vehicle_state"}:
            problems.append((f"{key}.type", f"{name} must be a number"))
        if name in _WRITTEN and not entry.writable:
            reason = "the controller writes this register: it must be a writable holding register"
            problems.append((f"{key}.access", reason))
    if "rtu" in template.device.transports and not 1 <= template.device.unit_id <= 247:
        problems.append(("device.unit_id", "an RTU device answers on a unit id in 1..247"))
    problems += _overlaps(template)
    if kind is DeviceKind.CHARGER:
        problems += _charger_needs(template)
    elif template.vehicle_state is not None or template.failsafe is not None:
        problems.append(("device.kind", "a meter has no vehicle_state or failsafe section"))
    else:
        for name in ("current_l1", "current_l2", "current_l3"):
            if name not in template.registers:
                problems.append((f"registers.{name}", "a meter must give each line's current"))
    return problems


def _charger_needs(template: DeviceTemplate) -> list[tuple[str, str]]:
    problems = []
    for name in ("set_current", "vehicle_state"):
        if name not in template.registers:
            problems.append((f"registers.{name}", "a charger template must name this register"))
    if "energy" not in template.registers and "session_energy" not in template.registers:
        problems.append(("registers.energy", "a charger must give an energy register to be billed"))
    state = template.vehicle_state
    if state is None:
        problems.append(("vehicle_state", "a charger template must map its vehicle states to IEC 61851 A-F"))
    elif state.register_name not in template.registers:
        problems.append(("vehicle_state.register", f"no register named {state.register_name!r}"))
    failsafe = template.failsafe
    if failsafe is None:
        problems.append(("failsafe", 'say how the charger falls back (kind = "none" if it does not)'))
        return problems
    for key in ("safe_current", "timeout"):
        register = getattr(failsafe, key)
        if register is not None and register not in template.registers:
            problems.append((f"failsafe.{key}", f"no register named {register!r}"))
    safe = failsafe.safe_current
    written = failsafe.kind is FailsafeKind.REGISTERS and safe in template.registers
    if written and safe is not None and not template.registers[safe].writable:
        reason = f"{safe} is written: it must be a writable holding register"
        problems.append(("failsafe.safe_current", reason))
    if "heartbeat" in template.registers and failsafe.heartbeat_period_s is None:
        problems.append(("failsafe.heartbeat_period_s", "a heartbeat register needs its period"))
    timeout_s, period_s = failsafe.timeout_s, failsafe.heartbeat_period_s
    if timeout_s is not None and period_s is not None and period_s > timeout_s / 2:
        reason = f"{period_s} s is not well within the {timeout_s} s timeout"
        problems.append(("failsafe.heartbeat_period_s", reason))
    return problems


def _overlaps(template: DeviceTemplate) -> list[tuple[str, str]]:
    problems = []
    spans = sorted(
        (entry.table, entry.address, entry.address + entry.spec(name).count, name)
        for name, entry in template.registers.items()
        if entry.mask is None  # bit fields of one register may share it
    )
    reach: dict[Table, tuple[int, str]] = {}  # per table: the furthest end so far, and whose
    for table, start, end, name in spans:
        furthest = reach.get(table)
        if furthest is not None and start < furthest[0]:
            problems.append((f"registers.{name}", f"overlaps {furthest[1]} in the {table.value} table"))
        if furthest is None or end > furthest[0]:
            reach[table] = (end, name)
    return problems


def parse_template(text: str, path: Path) -> DeviceTemplate:
    try:
        raw: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(path, "", f"not valid TOML: {exc}") from None
    try:
        template = DeviceTemplate.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise TemplateError(path, key, first["msg"]) from None
    problems = _check(template)
    if problems:
        key, reason = problems[0]
        raise TemplateError(path, key, reason)
    return template


def load_template(path: Path) -> DeviceTemplate:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(path, "", f"cannot be read: {exc}") from None
    return parse_template(text, path)


def load_templates(directory: Path) -> dict[str, DeviceTemplate]:
    """Every template in `directory`, by file name without `.toml` (what `register_map` names)."""
    return {path.stem: load_template(path) for path in sorted(directory.glob("*.toml"))}
