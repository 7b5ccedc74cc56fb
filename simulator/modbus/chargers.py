"""Virtual Modbus chargers: a charging point's physics and fail-safe, laid out in registers as each
vendor's document describes it (written here from the documents, not from drivers/ or config/).

The physics is shared: a limit written by the controller holds while it is refreshed (the model's
fail-safe); without that the charger falls back to its safe current. A car plugged in draws
min(limit, what it takes) once the limit reaches 6 A (IEC 61851-1), after `response_s`. The energy
register integrates what it drew. `step(now_s)` advances the physics and publishes the registers.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

from simulator.modbus.frames import ILLEGAL_VALUE, Bank
from simulator.modbus.server import Unit

MIN_A = 6.0
VOLTAGE_V = 230.0


@dataclass(slots=True)
class PluggedCar:
    takes_a: float  # the most it draws per phase; 0 = full
    phases: int = 3


def f32_words(value: float) -> list[int]:
    raw = struct.pack(">f", value)
    return [int.from_bytes(raw[:2], "big"), int.from_bytes(raw[2:], "big")]


def _f64(value: float) -> list[int]:
    raw = struct.pack(">d", value)
    return [int.from_bytes(raw[k : k + 2], "big") for k in range(0, 8, 2)]


def _u32(value: int) -> list[int]:
    value &= 0xFFFFFFFF
    return [value >> 16, value & 0xFFFF]


def _text(value: str, registers: int) -> list[int]:
    raw = value.encode("ascii")[: 2 * registers].ljust(2 * registers, b"\0")
    return [int.from_bytes(raw[k : k + 2], "big") for k in range(0, len(raw), 2)]


class VirtualModbusCharger:
    """Vendor-neutral physics; the subclasses are the register layouts."""

    model = "generic"

    def __init__(
        self,
        unit_id: int,
        *,
        max_a: float,
        safe_a: float,
        timeout_s: float,
        serial: str = "SIM0001",
        response_s: float = 2.0,
    ) -> None:
        self.unit_id = unit_id
        self.max_a = max_a
        self.safe_a = safe_a
        self.timeout_s = timeout_s
        self.serial = serial
        self.response_s = response_s
        self.setpoint_a: float | None = None
        self.refreshed_s = -math.inf
        self.car: PluggedCar | None = None
        self.drawing_a = 0.0
        self.energy_wh = 0.0
        self.session_wh = 0.0
        self._target_since_s = 0.0
        self._target_a = 0.0
        self._now_s = 0.0
        self.bank = Bank(on_write=self._on_write)
        self.fell_back = 0

    # the physics ---------------------------------------------------------------------------

    @property
    def limit_a(self) -> float:
        """What the charger offers now: the controller's limit while it holds, else the safe current."""
        if self.setpoint_a is None or self._now_s - self.refreshed_s > self.timeout_s:
            return self.safe_a
        return min(self.setpoint_a, self.max_a)

    def plug(self, car: PluggedCar) -> None:
        self.car = car
        self.session_wh = 0.0

    def unplug(self) -> None:
        self.car = None

    def step(self, now_s: float) -> None:
        dt_s = max(0.0, now_s - self._now_s)
        was_fallen_back = self._now_s - self.refreshed_s > self.timeout_s
        self._now_s = now_s
        if not was_fallen_back and now_s - self.refreshed_s > self.timeout_s and self.setpoint_a is not None:
            self.fell_back += 1
        car = self.car
        offered = self.limit_a if self.limit_a >= MIN_A else 0.0
        target = 0.0 if car is None else min(offered, car.takes_a)
        if target != self._target_a:
            self._target_a, self._target_since_s = target, now_s
        # The car follows a new limit after its response time (falls at once when the limit is cut).
        if target < self.drawing_a or now_s - self._target_since_s >= self.response_s:
            self.drawing_a = target
        phases = 0 if car is None else car.phases
        wh = self.drawing_a * VOLTAGE_V * phases * dt_s / 3600.0
        self.energy_wh += wh
        self.session_wh += wh
        self.publish()

    def refresh(self) -> None:
        self.refreshed_s = self._now_s

    @property
    def iec_state(self) -> str:
        if self.car is None:
            return "A"
        return "C" if self.drawing_a > 0 else "B"

    def per_phase_a(self) -> tuple[float, float, float]:
        phases = 0 if self.car is None else self.car.phases
        a = self.drawing_a
        return (a if phases >= 1 else 0.0, a if phases >= 2 else 0.0, a if phases >= 3 else 0.0)

    # the layout ----------------------------------------------------------------------------

    def units(self) -> dict[int, Unit]:
        self.publish()
        return {self.unit_id: Unit(self.bank)}

    def publish(self) -> None:
        raise NotImplementedError

    def _on_write(self, address: int, values: list[int]) -> int | None:
        raise NotImplementedError


class VestelEvc04(VirtualModbusCharger):
    """Vestel EVC04 register map: input registers for the state and the measurements, holding
    registers for the fail-safe (2000 current, 2002 timeout), the charging current (5004) and the
    alive register (6000), which must be written within the fail-safe timeout."""

    model = "vestel_evc04"

    def __init__(self, unit_id: int = 255, **kwargs: Any) -> None:
        super().__init__(unit_id, **kwargs)
        self.rfid = ""  # the card presented at the charger's reader
        self.bank.writable = {2000, 2002, 5004, 6000}
        self.bank.holding.update({2000: int(self.safe_a), 2002: int(self.timeout_s), 5004: 0, 6000: 0})

    def publish(self) -> None:
        bank = self.bank
        bank.set_words("input", 100, _text(self.serial, 25))
        bank.set_words("input", 190, _text("VESTEL", 10))
        bank.set_words("input", 210, _text("EVC04", 5))
        bank.set_words("input", 230, _text("v3.187.0", 50))
        state = {"A": 0, "B": 3 if not self.limit_a else 4, "C": 2}[self.iec_state]
        cable = 0 if self.car is None else 2
        # 1000-1036 is one table: every register in it answers.
        bank.set_words("input", 1000, [state, 1 if self.iec_state == "C" else 0, 0, 0, cable, 0, 0, 0])
        l1, l2, l3 = self.per_phase_a()
        volts = 0 if self.car is None else int(VOLTAGE_V)
        bank.set_words("input", 1008, [round(l1 * 1000), 0, round(l2 * 1000), 0, round(l3 * 1000), 0])
        bank.set_words("input", 1014, [volts, 0, volts, 0, volts, 0])
        power_w = round(self.drawing_a * VOLTAGE_V * (0 if self.car is None else self.car.phases))
        bank.set_words("input", 1020, [*_u32(power_w), *[0] * 14])
        bank.set_words("input", 1036, _u32(int(self.energy_wh / 100)))
        bank.set_words("input", 1502, _u32(round(self.session_wh)))
        bank.set_words("input", 1516, _text(self.rfid, 16))
        bank.holding[5004] = int(self.setpoint_a or 0)

    def _on_write(self, address: int, values: list[int]) -> int | None:
        for k, value in enumerate(values):
            where = address + k
            if where == 5004:
                if value and not MIN_A <= value <= self.max_a:
                    return ILLEGAL_VALUE
                self.setpoint_a = float(value)
            elif where == 6000:
                self.refresh()
            elif where == 2000:
                self.safe_a = float(value)
            elif where == 2002:
                self.timeout_s = float(value)
        return None


class AbbTerraAc(VirtualModbusCharger):
    """ABB Terra AC: two holding registers per value from 0x4000, currents in mA, the charging
    state in the third byte of 0x400C, the set-current register 0x4100 write only. It has no
    fail-safe: a limit holds until the next one."""

    model = "abb_terra_ac"

    def __init__(self, unit_id: int = 1, **kwargs: Any) -> None:
        kwargs.setdefault("timeout_s", math.inf)
        super().__init__(unit_id, **kwargs)
        self.bank.writable = {0x4100, 0x4101}
        self.refreshed_s = 0.0

    @property
    def limit_a(self) -> float:
        return self.max_a if self.setpoint_a is None else min(self.setpoint_a, self.max_a)

    def publish(self) -> None:
        state = {"A": 0, "B": 2, "C": 4}[self.iec_state]
        l1, l2, l3 = self.per_phase_a()
        volts = 0 if self.car is None else round(VOLTAGE_V * 10)
        power_w = round(self.drawing_a * VOLTAGE_V * (0 if self.car is None else self.car.phases))
        words = [
            *_u32(0x0012_3456), *_u32(0x0015_0102),  # serial (64 bits)
            *_u32(0x0105_0000),  # firmware
            *_u32(round(self.max_a * 1000)),
            *_u32(0),  # error code
            *_u32(0x0101 if self.car else 0),  # socket lock
            *_u32(state << 8),
            *_u32(round(self.limit_a * 1000)),
            *_u32(round(l1 * 1000)), *_u32(round(l2 * 1000)), *_u32(round(l3 * 1000)),
            *_u32(volts), *_u32(volts), *_u32(volts),
            *_u32(power_w),
            *_u32(round(self.session_wh)),
        ]  # fmt: skip
        self.bank.set_words("holding", 0x4000, words)

    def _on_write(self, address: int, values: list[int]) -> int | None:
        if address != 0x4100 or len(values) != 2:
            return ILLEGAL_VALUE
        self.setpoint_a = ((values[0] << 16) | values[1]) / 1000.0
        return None


class AlfenEve(VirtualModbusCharger):
    """Alfen NG9xx: socket registers on unit 1 (floats; the mode 3 state as text at 1201), the
    identification on unit 200. The max current written to 1210 is valid for `timeout_s` (60 s by
    default, set in the installer's tool), then the socket falls back to the safe current (1212)."""

    model = "alfen_eve"

    def __init__(self, unit_id: int = 1, **kwargs: Any) -> None:
        kwargs.setdefault("timeout_s", 60.0)
        super().__init__(unit_id, **kwargs)
        self.bank.writable = {1210, 1211, 1215}
        self.identification = Bank()

    def units(self) -> dict[int, Unit]:
        self.publish()
        return {self.unit_id: Unit(self.bank), 200: Unit(self.identification)}

    def publish(self) -> None:
        bank = self.bank
        l1, l2, l3 = self.per_phase_a()
        volts = 0.0 if self.car is None else VOLTAGE_V
        power_w = self.drawing_a * VOLTAGE_V * (0 if self.car is None else self.car.phases)
        bank.set_words(
            "holding",
            300,
            [0] * 6 + f32_words(volts) * 3 + [0] * 8 + f32_words(l1) + f32_words(l2) + f32_words(l3),
        )
        bank.set_words("holding", 326, [0] * 18 + f32_words(power_w) + [0] * 28 + _f64(self.energy_wh))
        remaining_s = max(0.0, self.refreshed_s + self.timeout_s - self._now_s) if self.setpoint_a else 0.0
        mode3 = {"A": "A", "B": "B2", "C": "C2"}[self.iec_state]
        bank.set_words(
            "holding",
            1200,
            [0, *_text(mode3, 5), *f32_words(self.limit_a), *_u32(int(min(remaining_s, 2**31))),
             *f32_words(self.setpoint_a or 0.0), *f32_words(self.safe_a), 0, 3],
        )  # fmt: skip
        ident = self.identification
        ident.set_words("holding", 100, _text("ALF_1000", 17) + _text("Alfen NV", 5) + [0])
        ident.set_words("holding", 123, _text("6.4.0-4210", 17) + [0] * 17 + _text(self.serial, 11))

    def _on_write(self, address: int, values: list[int]) -> int | None:
        if address == 1210 and len(values) == 2:
            raw = struct.pack(">HH", *values)
            (value,) = struct.unpack(">f", raw)
            if not math.isfinite(value) or value < 0:
                return ILLEGAL_VALUE
            self.setpoint_a = value
            self.refresh()
            return None
        if address == 1215 and len(values) == 1 and values[0] in (1, 3):
            return None
        return ILLEGAL_VALUE


MODELS: dict[str, type[VirtualModbusCharger]] = {
    cls.model: cls for cls in (VestelEvc04, AbbTerraAc, AlfenEve)
}
