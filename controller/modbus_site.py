"""The site's Modbus chargers: their templates found and checked, their buses and drivers built.

A charger's `register_map` names a template (`<name>.toml`) in `[modbus] devices_dir`, else among
the shipped ones (config/devices/ of this checkout). Chargers on the same endpoint share one bus
(one task, one request at a time); on RTU the same serial device must have the same line settings.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from controller.settings import ChargerSection, SiteSettings
from controller.settings.checks import ConfigProblem
from drivers.contracts import ChargerEventRecorder, ChargerEventSink, Clock
from drivers.modbus.bus import Bus, BusConfig
from drivers.modbus.charger import ModbusCharger, ModbusChargerConfig
from drivers.modbus.template import DeviceKind, DeviceTemplate, TemplateError, load_template
from drivers.modbus.transport import Endpoint, PymodbusTransport

SHIPPED_DEVICES = Path(__file__).resolve().parent.parent / "config" / "devices"


def template_dirs(settings: SiteSettings) -> list[Path]:
    dirs = [settings.modbus.devices_dir] if settings.modbus.devices_dir is not None else []
    return [*dirs, SHIPPED_DEVICES]


def find_template(settings: SiteSettings, name: str) -> Path | None:
    for directory in template_dirs(settings):
        path = directory / f"{name}.toml"
        if path.is_file():
            return path
    return None


def modbus_chargers(settings: SiteSettings) -> list[tuple[int, ChargerSection]]:
    return [
        (i, c) for i, c in enumerate(settings.chargers) if c.protocol == "modbus" and c.modbus is not None
    ]


def load_modbus_templates(settings: SiteSettings) -> tuple[dict[str, DeviceTemplate], list[ConfigProblem]]:
    """Each Modbus charger's template by charger id, and what is wrong with them."""
    found: dict[str, DeviceTemplate] = {}
    problems: list[ConfigProblem] = []
    endpoints: dict[tuple[str, int], str] = {}
    lines: dict[str, tuple[str, Endpoint]] = {}
    for index, charger in modbus_chargers(settings):
        assert charger.modbus is not None
        at = ("chargers", index, "modbus")
        name = charger.modbus.register_map
        path = find_template(settings, name)
        if path is None:
            where = ", ".join(str(d) for d in template_dirs(settings))
            problems.append(ConfigProblem((*at, "register_map"), f"no template {name}.toml in {where}"))
            continue
        try:
            template = load_template(path)
        except TemplateError as exc:
            problems.append(ConfigProblem((*at, "register_map"), f"template {exc}"))
            continue
        if template.device.kind is not DeviceKind.CHARGER:
            problems.append(ConfigProblem((*at, "register_map"), f"{path} is a {template.device.kind.value}"))
            continue
        found[charger.id] = template
        endpoint = Endpoint.parse(charger.modbus.endpoint)
        unit = unit_id(charger, template)
        if endpoint.kind not in template.device.transports:
            problems.append(
                ConfigProblem(
                    (*at, "endpoint"),
                    f"{template.name} speaks {', '.join(template.device.transports)}, not {endpoint.kind}",
                )
            )
        if endpoint.kind == "rtu" and not 1 <= unit <= 247:
            problems.append(ConfigProblem((*at, "unit_id"), f"unit id {unit} on RTU: use 1..247"))
        key = (bus_key(endpoint), unit)
        if key in endpoints:
            problems.append(
                ConfigProblem(
                    (*at, "unit_id"), f"unit {unit} on {key[0]} is charger {endpoints[key]!r} already"
                )
            )
        endpoints[key] = charger.id
        if endpoint.kind == "rtu":
            seen = lines.get(endpoint.device)
            if seen is not None and seen[1] != endpoint:
                problems.append(
                    ConfigProblem(
                        (*at, "endpoint"), f"{endpoint.device}: line settings differ from {seen[0]!r}'s"
                    )
                )
            lines.setdefault(endpoint.device, (charger.id, endpoint))
        if not template.has_failsafe and not charger.modbus.accept_no_failsafe:
            problems.append(
                ConfigProblem(
                    (*at, "accept_no_failsafe"),
                    f"{template.name} has no fail-safe: it keeps its last current for ever without the "
                    "controller. Set accept_no_failsafe = true to drive it anyway (it is then counted at "
                    "its maximum in the fail-safe budget)",
                )
            )
    return found, problems


def unit_id(charger: ChargerSection, template: DeviceTemplate) -> int:
    assert charger.modbus is not None
    return charger.modbus.unit_id if charger.modbus.unit_id is not None else template.device.unit_id


def bus_key(endpoint: Endpoint) -> str:
    return f"tcp://{endpoint.host}:{endpoint.port}" if endpoint.kind == "tcp" else f"rtu://{endpoint.device}"


@dataclass(frozen=True, slots=True)
class ModbusSite:
    buses: dict[str, Bus]
    chargers: dict[str, ModbusCharger]


def build_modbus_site(
    settings: SiteSettings,
    clock: Clock,
    *,
    sink: ChargerEventSink,
    record: ChargerEventRecorder,
    new_transaction_id: Callable[[], str] | None = None,
) -> ModbusSite:
    """Buses and drivers for the configured Modbus chargers (the settings were checked)."""
    templates, problems = load_modbus_templates(settings)
    if problems:
        raise ValueError("; ".join(str(p) for p in problems))
    defaults = settings.modbus
    config = BusConfig(timeout_s=defaults.timeout_s, gap_s=defaults.frame_gap_s)
    buses: dict[str, Bus] = {}
    chargers: dict[str, ModbusCharger] = {}
    ids = new_transaction_id or (lambda: f"mb-{uuid.uuid4().hex}")
    for _, charger in modbus_chargers(settings):
        assert charger.modbus is not None
        template = templates[charger.id]
        endpoint = Endpoint.parse(charger.modbus.endpoint)
        key = bus_key(endpoint)
        if key not in buses:
            buses[key] = Bus(PymodbusTransport(endpoint, timeout_s=defaults.timeout_s), key, config)
        chargers[charger.id] = ModbusCharger(
            ModbusChargerConfig(
                charger_id=charger.id,
                unit_id=unit_id(charger, template),
                template=template,
                safe_current_a=charger.safe_current_a,
                max_current_a=charger.max_a,
                phases=settings.charger_phases(charger),
                nominal_voltage_v=settings.grid.nominal_voltage_v,
                poll_interval_s=defaults.poll_interval_s,
                stale_after_polls=defaults.stale_after_polls,
                lease_s=settings.policy.lease_s,
            ),
            buses[key],
            clock,
            sink=sink,
            record=record,
            new_transaction_id=ids,
        )
    return ModbusSite(buses, chargers)
