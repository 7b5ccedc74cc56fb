"""`sitectl modbus scan|read`: find the devices on a Modbus bus and read one by its template."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.cli import SubParsers

if TYPE_CHECKING:
    from drivers.modbus.bus import Bus
    from drivers.modbus.template import DeviceTemplate


def register(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("modbus", help="Modbus tools: find devices on a bus, read one")
    commands = parser.add_subparsers(dest="modbus_command", metavar="COMMAND", required=True)
    scan = commands.add_parser(
        "scan",
        help="find the devices on a bus and the template each matches",
        description="Ask every unit id on a bus and name the device template (config/devices/ and "
        "--devices-dir) each device matches, with its identification. ENDPOINT: tcp://host:port, "
        "host:port, /dev/ttyUSB0 or rtu:///dev/ttyUSB0?baudrate=9600&parity=E.",
    )
    scan.add_argument("endpoint", metavar="ENDPOINT")
    scan.add_argument("--units", default=None, help="unit ids, e.g. 1-247 or 1,2,10-20 (RTU default 1-247)")
    _common(scan)
    scan.set_defaults(handler=_scan)
    read = commands.add_parser(
        "read",
        help="read a device's live values by its template's names",
        description="Read every register of a template from one device and print it by meaning. "
        "DEVICE is a charger id of --config, or an ENDPOINT with --unit and --template.",
    )
    read.add_argument("device", metavar="DEVICE")
    read.add_argument("--config", type=Path, help="site.toml naming the charger DEVICE")
    read.add_argument("--unit", type=int, help="unit id (default: the template's)")
    read.add_argument("--template", help="template name (a file name in config/devices/ without .toml)")
    _common(read)
    read.set_defaults(handler=_read)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices-dir", type=Path, help="a directory of your own templates")
    parser.add_argument("--timeout-s", type=float, default=0.3, help="wait for an answer (default 0.3 s)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def parse_units(text: str) -> list[int]:
    units: list[int] = []
    for part in text.split(","):
        low, _, high = part.strip().partition("-")
        first, last = int(low), int(high or low)
        if not 0 <= first <= last <= 255:
            raise ValueError(f"unit ids are 0..255, got {part!r}")
        units.extend(range(first, last + 1))
    return units


def endpoint_url(text: str) -> str:
    if "://" in text:
        return text
    if text.startswith("/"):
        return f"rtu://{text}"
    return f"tcp://{text}"


def _templates(devices_dir: Path | None) -> dict[str, DeviceTemplate]:
    from controller.modbus_site import SHIPPED_DEVICES
    from drivers.modbus.template import load_templates

    found = load_templates(SHIPPED_DEVICES) if SHIPPED_DEVICES.is_dir() else {}
    if devices_dir is not None:
        found |= load_templates(devices_dir)
    return found


async def _with_bus(url: str, timeout_s: float, work: Any) -> Any:
    from controller.logs import configure_logging
    from drivers.modbus.bus import Bus, BusConfig
    from drivers.modbus.transport import Endpoint, PymodbusTransport

    configure_logging("warning", "console")  # a scan is made of expected faults: not logged

    endpoint = Endpoint.parse(url)
    bus = Bus(PymodbusTransport(endpoint, timeout_s=timeout_s), url, BusConfig(timeout_s=timeout_s))
    task = asyncio.create_task(bus.run(), name="modbus-cli-bus")
    try:
        return await work(bus, endpoint.kind)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _scan(args: argparse.Namespace) -> int:
    from drivers.modbus.scan import FoundUnit, scan
    from drivers.modbus.template import TemplateError

    try:
        url = endpoint_url(args.endpoint)
        units = parse_units(args.units or ("1-247" if url.startswith("rtu:") else "1,255"))
        templates = _templates(args.devices_dir)
    except (ValueError, TemplateError) as exc:
        print(f"sitectl modbus scan: {exc}", file=sys.stderr)
        return 2

    def progress(unit: int, found: FoundUnit) -> None:
        if not args.json and sys.stderr.isatty():
            print(f"\runit {unit:3d} of {units[-1]}  found {found.unit if found.answered else '-'}", end="",
                  file=sys.stderr)  # fmt: skip

    async def work(bus: Bus, kind: str) -> list[FoundUnit]:
        usable = {n: t for n, t in templates.items() if kind in t.device.transports}
        return await scan(bus, units, usable, progress=progress)

    try:
        found: list[FoundUnit] = asyncio.run(_with_bus(url, args.timeout_s, work))
    except (OSError, ValueError) as exc:
        print(f"sitectl modbus scan: {exc}", file=sys.stderr)
        return 1
    if not args.json and sys.stderr.isatty():
        print(file=sys.stderr)
    rows: list[dict[str, Any]] = [
        {
            "unit": f.unit,
            "matches": [
                {"template": m.template, "name": m.name, "decoded": m.decoded, "identity": dict(m.identity)}
                for m in f.matches
            ],
        }
        for f in found
    ]
    if args.json:
        print(json.dumps({"endpoint": url, "units_asked": len(units), "found": rows}, indent=2))
        return 0
    print(f"{url}: {len(found)} of {len(units)} unit ids answered")
    for row in rows:
        matches = row["matches"]
        if not matches:
            print(f"  unit {row['unit']}: answers, matches no template")
        for k, m in enumerate(matches):
            ident = ", ".join(f"{key} {value}" for key, value in m["identity"].items())
            lead = f"  unit {row['unit']}:" if k == 0 else "         "
            print(f"{lead} {m['template']} ({m['name']}){'; ' + ident if ident else ''}")
    return 0


def _read(args: argparse.Namespace) -> int:
    from drivers.modbus.scan import read_template
    from drivers.modbus.template import TemplateError
    from drivers.modbus.transport import ModbusFault

    try:
        url, unit, name, template = _target(args)
    except (ValueError, KeyError, TemplateError) as exc:
        print(f"sitectl modbus read: {exc}", file=sys.stderr)
        return 2

    async def work(bus: Bus, kind: str) -> tuple[dict[str, float | str], dict[str, str]]:
        return await read_template(bus, unit, template)

    try:
        values, problems = asyncio.run(_with_bus(url, args.timeout_s, work))
    except (OSError, ModbusFault) as exc:
        print(f"sitectl modbus read: {url} unit {unit}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"endpoint": url, "unit": unit, "template": name, "values": values,
                          "problems": problems}, indent=2))  # fmt: skip
        return 0 if not problems else 1
    print(f"{url} unit {unit}: {template.name} ({name})")
    for meaning in template.registers:
        entry = template.registers[meaning]
        if meaning in values:
            value = values[meaning]
            shown = f"{value:g}" if isinstance(value, float) else value
            unit_name = _base_unit(template, meaning)
            print(f"  {meaning:18} {shown} {unit_name}".rstrip())
        elif meaning in problems:
            print(f"  {meaning:18} -- {problems[meaning]}")
        elif not entry.readable:
            print(f"  {meaning:18} (write only)")
    return 0 if not problems else 1


def _target(args: argparse.Namespace) -> tuple[str, int, str, DeviceTemplate]:
    templates = _templates(args.devices_dir)
    if args.config is not None:
        from controller.modbus_site import load_modbus_templates, unit_id
        from controller.settings import load_settings

        settings = load_settings(args.config, {})
        charger = settings.charger(args.device)
        if charger.modbus is None:
            raise ValueError(f"charger {args.device!r} is not a Modbus charger")
        found, problems = load_modbus_templates(settings)
        if problems:
            raise ValueError(str(problems[0]))
        template = found[charger.id]
        return charger.modbus.endpoint, unit_id(charger, template), charger.modbus.register_map, template
    if args.template is None:
        raise ValueError("give --template NAME (or --config with a charger id)")
    if args.template not in templates:
        raise ValueError(f"no template {args.template!r}; known: {', '.join(sorted(templates))}")
    template = templates[args.template]
    unit = args.unit if args.unit is not None else template.device.unit_id
    return endpoint_url(args.device), unit, args.template, template


def _base_unit(template: DeviceTemplate, meaning: str) -> str:
    from drivers.modbus.template import CHARGER_MEANINGS, METER_MEANINGS, DeviceKind

    table = CHARGER_MEANINGS if template.device.kind is DeviceKind.CHARGER else METER_MEANINGS
    return table.get(meaning, "")
