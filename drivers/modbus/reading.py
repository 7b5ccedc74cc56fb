"""Reading and writing a device by meaning: a template's registers turned into values in base units
(A, Wh, W, V, s), IEC 61851 vehicle states and text, and the reads a poll needs grouped into as few
requests as the bus allows.

Pure. A value that fails its template's plausibility range, a state code the template does not
map, or registers that do not decode raise `BadRegisterValue` naming the register: the caller counts
it and uses the worst case, never the value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from drivers.modbus.codec import (
    BadRegisterValue,
    Table,
    ValueType,
    decode,
    decode_raw,
    decode_string,
    encode,
)
from drivers.modbus.template import TEXT_MEANINGS, DeviceTemplate

# A read request carries at most 125 registers (Modbus application protocol, function 3 and 4).
MAX_READ_REGISTERS = 125


def read_number(template: DeviceTemplate, meaning: str, words: Sequence[int]) -> float:
    entry = template.registers[meaning]
    spec = entry.spec(meaning)
    if entry.mask is not None:
        value = float((decode_raw(spec, words) & entry.mask) >> entry.shift) * entry.scale
    else:
        value = decode(spec, words)
    if (entry.min is not None and value < entry.min) or (entry.max is not None and value > entry.max):
        low = "-inf" if entry.min is None else f"{entry.min:g}"
        high = "inf" if entry.max is None else f"{entry.max:g}"
        where = f"{meaning} (address {entry.address})"
        raise BadRegisterValue(f"{where}: {value:g} {entry.unit} is outside {low}..{high}")
    return template.to_base_unit(meaning, value)


def read_text(template: DeviceTemplate, meaning: str, words: Sequence[int]) -> str:
    """Identification as text: a string register as it reads, a number in decimal."""
    entry = template.registers[meaning]
    spec = entry.spec(meaning)
    if entry.type is ValueType.STRING:
        return decode_string(spec, words)
    return str(decode_raw(spec, words))


def read_state(template: DeviceTemplate, words: Sequence[int]) -> str:
    """The IEC 61851-1 state (A-F) the vehicle-state register reads as."""
    section = template.vehicle_state
    if section is None:
        raise BadRegisterValue("the template has no vehicle_state section")
    meaning = section.register_name
    entry = template.registers[meaning]
    spec = entry.spec(meaning)
    if entry.type is ValueType.STRING:
        raw = decode_string(spec, words)
    else:
        code = decode_raw(spec, words)
        raw = str((code & entry.mask) >> entry.shift if entry.mask is not None else code)
    state = section.map.get(raw)
    if state is None:
        where = f"{meaning} (address {entry.address})"
        raise BadRegisterValue(f"{where}: state {raw!r} is not in the template's map")
    return state


def write_words(template: DeviceTemplate, meaning: str, value: float) -> list[int]:
    """The registers to write for `value` in the meaning's base unit."""
    return encode(template.registers[meaning].spec(meaning), template.from_base_unit(meaning, value))


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: `count` registers of `table` from `start`, holding `meanings`."""

    table: Table
    start: int
    count: int
    meanings: tuple[str, ...]

    def words_of(self, template: DeviceTemplate, meaning: str, words: Sequence[int]) -> Sequence[int]:
        """The registers of one meaning out of this block's answer."""
        spec = template.registers[meaning].spec(meaning)
        offset = spec.address - self.start
        return words[offset : offset + spec.count]


def plan_reads(
    template: DeviceTemplate, meanings: Iterable[str], *, max_gap: int | None = None
) -> list[ReadBlock]:
    """The meanings' registers grouped into read requests: neighbours in one table share a request
    when the registers between them are no more than `max_gap` (default: the template's
    `max_read_gap`; a gap costs 2 bytes a register,
    a request its own header, CRC and 3.5-character silences on RTU), never beyond 125 registers.
    Write-only registers are left out: reading them is an exception response."""
    gap = template.device.max_read_gap if max_gap is None else max_gap
    spans = sorted(
        (entry.table, entry.address, entry.address + entry.spec(name).count, name)
        for name in set(meanings)
        for entry in (template.registers[name],)
        if entry.readable
    )
    blocks: list[ReadBlock] = []
    current: list[tuple[Table, int, int, str]] = []
    for span in spans:
        if current:
            table, start = current[0][0], current[0][1]
            end = max(s[2] for s in current)
            fits = span[0] == table and span[1] - end <= gap and span[2] - start <= MAX_READ_REGISTERS
            if not fits:
                blocks.append(_block(current))
                current = []
        current.append(span)
    if current:
        blocks.append(_block(current))
    return blocks


def _block(spans: Sequence[tuple[Table, int, int, str]]) -> ReadBlock:
    start = spans[0][1]
    end = max(s[2] for s in spans)
    return ReadBlock(spans[0][0], start, end - start, tuple(s[3] for s in spans))


def decode_block(
    template: DeviceTemplate, block: ReadBlock, words: Sequence[int]
) -> tuple[dict[str, float | str], dict[str, str]]:
    """(values, problems) of one block's answer: numbers in base units, the vehicle state as its
    IEC letter, identification as text; a meaning that does not decode is in `problems` with why."""
    values: dict[str, float | str] = {}
    problems: dict[str, str] = {}
    state_register = None if template.vehicle_state is None else template.vehicle_state.register_name
    for meaning in block.meanings:
        own = block.words_of(template, meaning, words)
        try:
            if meaning == state_register:
                values[meaning] = read_state(template, own)
            elif template.registers[meaning].type is ValueType.STRING or meaning in TEXT_MEANINGS:
                values[meaning] = read_text(template, meaning, own)
            else:
                values[meaning] = read_number(template, meaning, own)
        except BadRegisterValue as exc:
            problems[meaning] = str(exc)
    return values, problems
