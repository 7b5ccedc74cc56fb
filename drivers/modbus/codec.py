"""Values in Modbus registers: what a template's register spec means on the wire.

A Modbus register is 16 bits. Wider values span consecutive registers, in an order the vendor's
document states: `big` (the high word first, Modbus' own convention for its 16-bit values, used by
Alfen, ABB and Eastron) or `little` (the low word first, used by Carlo Gavazzi and Schneider for
some values). Bytes within a register are always big-endian.

A raw value times `scale` is the value in the spec's unit; an integer register written from a value
is rounded to the nearest step of `scale`. Strings are ASCII, two characters a register, high byte
first, padded with NUL or spaces.

Pure: no I/O. A value that cannot be a reading (a NaN or infinite float, a register count that does
not match the type) raises `BadRegisterValue`, which names the register.
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass


class ValueType(enum.StrEnum):
    U16 = "u16"
    S16 = "s16"
    U32 = "u32"
    S32 = "s32"
    U64 = "u64"
    F32 = "f32"
    F64 = "f64"
    STRING = "string"


class WordOrder(enum.StrEnum):
    BIG = "big"  # high word first
    LITTLE = "little"  # low word first


class Table(enum.StrEnum):
    """The register table a value is read from: holding registers (function 3, written with 6 or
    16) or input registers (function 4, read only)."""

    HOLDING = "holding"
    INPUT = "input"


_WORDS = {
    ValueType.U16: 1,
    ValueType.S16: 1,
    ValueType.U32: 2,
    ValueType.S32: 2,
    ValueType.U64: 4,
    ValueType.F32: 2,
    ValueType.F64: 4,
}
_STRUCT = {
    ValueType.U16: ">H",
    ValueType.S16: ">h",
    ValueType.U32: ">I",
    ValueType.S32: ">i",
    ValueType.U64: ">Q",
    ValueType.F32: ">f",
    ValueType.F64: ">d",
}


class BadRegisterValue(ValueError):
    """Registers that do not hold a usable value of their spec."""


@dataclass(frozen=True, slots=True)
class RegisterSpec:
    """One value in a device's register map. `address` is the 0-based protocol address (what goes
    on the wire), not the 1-based "40001" register number some documents print."""

    name: str
    address: int
    type: ValueType
    table: Table = Table.HOLDING
    word_order: WordOrder = WordOrder.BIG
    scale: float = 1.0
    unit: str = ""
    length: int | None = None  # registers, for strings only

    @property
    def count(self) -> int:
        """How many registers the value spans."""
        if self.type is ValueType.STRING:
            return self.length or 1
        return _WORDS[self.type]

    @property
    def is_float(self) -> bool:
        return self.type in (ValueType.F32, ValueType.F64)


def decode(spec: RegisterSpec, words: Sequence[int]) -> float:
    """The value of a numeric register spec, scaled to its unit."""
    raw = _raw_bytes(spec, words)
    if spec.type is ValueType.STRING:
        raise BadRegisterValue(f"{spec.name}: a string register has no numeric value")
    (value,) = struct.unpack(_STRUCT[spec.type], raw)
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRegisterValue(f"{spec.name} (address {spec.address}): {value} is not a reading")
    return float(value) * spec.scale


def decode_raw(spec: RegisterSpec, words: Sequence[int]) -> int:
    """The unscaled integer in an integer register spec (for state codes and bit fields)."""
    if spec.is_float or spec.type is ValueType.STRING:
        raise BadRegisterValue(f"{spec.name}: {spec.type} is not an integer register")
    (value,) = struct.unpack(_STRUCT[spec.type], _raw_bytes(spec, words))
    return int(value)


def decode_string(spec: RegisterSpec, words: Sequence[int]) -> str:
    raw = _raw_bytes(spec, words)
    text = raw.split(b"\x00", 1)[0].decode("ascii", errors="replace")
    return text.strip()


def encode(spec: RegisterSpec, value: float) -> list[int]:
    """The registers that hold `value` (in the spec's unit). An integer type takes the nearest
    multiple of `scale`; a value outside the type's range raises BadRegisterValue."""
    if spec.type is ValueType.STRING:
        raise BadRegisterValue(f"{spec.name}: strings are not written")
    if not math.isfinite(value):
        raise BadRegisterValue(f"{spec.name}: {value} cannot be written")
    fmt = _STRUCT[spec.type]
    if spec.is_float:
        raw = struct.pack(fmt, value / spec.scale)
    else:
        steps = round(value / spec.scale)
        try:
            raw = struct.pack(fmt, steps)
        except struct.error:
            raise BadRegisterValue(f"{spec.name}: {value} {spec.unit} is outside {spec.type}") from None
    words = [int.from_bytes(raw[k : k + 2], "big") for k in range(0, len(raw), 2)]
    return words[::-1] if spec.word_order is WordOrder.LITTLE else words


def _raw_bytes(spec: RegisterSpec, words: Sequence[int]) -> bytes:
    if len(words) != spec.count:
        raise BadRegisterValue(f"{spec.name}: {len(words)} registers, the spec spans {spec.count}")
    if any(not 0 <= w <= 0xFFFF for w in words):
        raise BadRegisterValue(f"{spec.name}: a register value outside 0..65535")
    ordered = list(words)
    if spec.type is not ValueType.STRING and spec.word_order is WordOrder.LITTLE:
        ordered.reverse()
    return b"".join(w.to_bytes(2, "big") for w in ordered)
