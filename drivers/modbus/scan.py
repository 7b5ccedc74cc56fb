"""Finding devices on a Modbus bus and naming the template each matches, for the electrician.

A unit id answers if any request to it gets an answer (registers or an exception response); it
matches a template when every register of the template's probe (its vehicle state for a charger,
its line currents for a meter, and its identification where it has one) reads back and decodes
within the template's ranges and state map. Several templates may match one device (siblings
share maps); they are listed best first, by how many of their registers decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from drivers.modbus.bus import Bus
from drivers.modbus.reading import decode_block, plan_reads
from drivers.modbus.template import TEXT_MEANINGS, DeviceKind, DeviceTemplate
from drivers.modbus.transport import ExceptionAnswer, ModbusFault, NoAnswer

GATEWAY_NO_TARGET = frozenset({10, 11})
_PROBE = {
    DeviceKind.CHARGER: ("vehicle_state",),
    DeviceKind.METER: ("current_l1", "current_l2", "current_l3"),
}


@dataclass(frozen=True, slots=True)
class Match:
    template: str
    name: str
    decoded: int  # registers of the template that read and decoded
    identity: Mapping[str, str]
    values: Mapping[str, float | str]


@dataclass(slots=True)
class FoundUnit:
    unit: int
    answered: bool = False
    matches: list[Match] = field(default_factory=list)


async def read_template(
    bus: Bus, unit: int, template: DeviceTemplate, meanings: Iterable[str] | None = None
) -> tuple[dict[str, float | str], dict[str, str]]:
    """Every readable register of `template` (or `meanings`) at `unit`: (values, problems); the
    identification comes from `identification_unit_id` where the template has one."""
    wanted = [m for m in (meanings or template.registers) if m in template.registers]
    values: dict[str, float | str] = {}
    problems: dict[str, str] = {}
    for identity in (False, True):
        chosen = [m for m in wanted if (m in TEXT_MEANINGS) is identity]
        at = (template.device.identification_unit_id or unit) if identity else unit
        for block in plan_reads(template, chosen):
            try:
                words = await bus.read(at, block.table, block.start, block.count)
            except ModbusFault as fault:
                if isinstance(fault, ExceptionAnswer) and fault.code in GATEWAY_NO_TARGET:
                    raise NoAnswer(str(fault)) from None  # a gateway saying nobody is there
                problems |= {m: str(fault) for m in block.meanings}
                if isinstance(fault, NoAnswer):
                    raise
                continue
            got, bad = decode_block(template, block, words)
            values |= got
            problems |= bad
    return values, problems


async def probe_unit(bus: Bus, unit: int, templates: Mapping[str, DeviceTemplate]) -> FoundUnit:
    found = FoundUnit(unit)
    for name, template in templates.items():
        probe = [m for m in _PROBE[template.device.kind] if m in template.registers]
        try:
            values, problems = await read_template(bus, unit, template)
        except NoAnswer:
            return found  # nobody there (a silent unit is not probed further)
        found.answered = True
        if not probe or any(m in problems for m in probe):
            continue
        identity = {m: str(values[m]) for m in sorted(TEXT_MEANINGS) if m in values and values[m] != ""}
        if any(m in problems for m in TEXT_MEANINGS if m in template.registers):
            continue
        found.matches.append(Match(name, template.name, len(values), identity, values))
    found.matches.sort(key=lambda m: -m.decoded)
    return found


async def scan(
    bus: Bus,
    units: Iterable[int],
    templates: Mapping[str, DeviceTemplate],
    *,
    progress: Callable[[int, FoundUnit], None] | None = None,
) -> list[FoundUnit]:
    """Every unit in `units` that answered, with the templates it matches."""
    out = []
    for unit in units:
        try:
            found = await probe_unit(bus, unit, templates)
        except ExceptionAnswer:
            found = FoundUnit(unit, answered=True)
        if progress is not None:
            progress(unit, found)
        if found.answered:
            out.append(found)
    return out
