"""`sitectl config check FILE`: validate a site configuration the way `sitectl run` reads it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from controller.cli import SubParsers

if TYPE_CHECKING:
    from controller.settings import SiteSettings


def register(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("config", help="site configuration tools")
    commands = parser.add_subparsers(dest="config_command", metavar="COMMAND", required=True)
    check = commands.add_parser(
        "check",
        help="validate a site.toml (with SITECTL_* overrides from the environment)",
        description="Validate a site configuration: prints OK and a summary, or every problem "
        "with its location and exits 2. SITECTL_<SECTION>__<KEY> variables apply as for `sitectl run`.",
    )
    check.add_argument("file", type=Path, metavar="FILE", help="the site configuration (TOML)")
    check.set_defaults(handler=_check)
    # DESIGN.md §5 names it `sitectl check`: the same check, for the electrician on site.
    short = subparsers.add_parser(
        "check",
        help="validate a site.toml, including the fail-safe budget (same as `config check`)",
        description=check.description,
    )
    short.add_argument("file", type=Path, metavar="FILE", help="the site configuration (TOML)")
    short.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    from controller.settings import ConfigError, load_settings
    from controller.settings.loader import ENV_PREFIX

    env = dict(os.environ)
    try:
        from controller.site_checks import site_checks

        settings = load_settings(args.file, env, failsafe_budget_check=site_checks)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"OK: {args.file}")
    for line in summary(settings):
        print(f"  {line}")
    overrides = sorted(k for k in env if k.upper().startswith(ENV_PREFIX) and "__" in k)
    if overrides:
        print(f"  environment overrides: {', '.join(overrides)}")
    for line in modbus_summary(settings):
        print(f"  {line}")
    print("  fail-safe budget: fits (every charger at its safe current plus the configured base load)")
    for warning in missing_files(settings):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def summary(settings: SiteSettings) -> list[str]:
    root = next(f for f in settings.fuses if f.parent is None)
    depth = max(len(settings.fuse_path(f.id)) for f in settings.fuses)
    by_protocol = {p: sum(c.protocol == p for c in settings.chargers) for p in ("ocpp", "modbus")}
    three_phase = sum(settings.charger_phases(c) == 3 for c in settings.chargers)
    lines = [
        f"site {settings.site.id} ({settings.site.timezone}), {settings.grid.type} "
        f"{settings.grid.nominal_voltage_v:g} V",
        f"fuses: {len(settings.fuses)}, root {root.id!r} {root.limit_a:g} A, tree depth {depth}",
        f"chargers: {len(settings.chargers)} ({by_protocol['ocpp']} ocpp, {by_protocol['modbus']} modbus; "
        f"{three_phase} three-phase, {len(settings.chargers) - three_phase} single-phase)",
    ]
    meter = settings.meter
    lines.append(
        f"meter: {meter.vendor} on {meter.port} measuring fuse {meter.fuse!r}"
        if meter
        else "meter: none (chargers run at their safe current)"
    )
    ocpp = settings.ocpp
    lines.append(
        f"ocpp: {ocpp.listen}, security profile {ocpp.security_profile}, "
        f"adoption {'on' if ocpp.adoption else 'off'}"
        if ocpp
        else "ocpp: off"
    )
    mqtt = settings.mqtt
    lines.append(
        f"mqtt: {mqtt.url}, prefix {mqtt.prefix}" if mqtt else "mqtt: off (sessions wait in the outbox)"
    )
    lines.append(f"storage: {settings.storage.path}; control socket: {settings.control.socket_path}")
    return lines


def modbus_summary(settings: SiteSettings) -> list[str]:
    """Each Modbus charger's template and fail-safe, as the daemon will drive it."""
    from controller.modbus_site import load_modbus_templates, unit_id

    templates, _ = load_modbus_templates(settings)
    lines = []
    for charger in settings.chargers:
        template = templates.get(charger.id)
        if template is None or charger.modbus is None:
            continue
        failsafe = template.failsafe
        if failsafe is None or not template.has_failsafe:
            how = "no fail-safe: counted at its maximum in the fail-safe budget"
        else:
            how = f"fail-safe {failsafe.kind.value}" + (
                f", {failsafe.timeout_s:g} s" if failsafe.timeout_s is not None else ""
            )
        lines.append(
            f"modbus {charger.id}: {template.name} ({charger.modbus.register_map}) on "
            f"{charger.modbus.endpoint} unit {unit_id(charger, template)}; {how}"
        )
    return lines


def missing_files(settings: SiteSettings) -> list[str]:
    """Files the configuration names that are not on this machine: fine on a laptop, fatal on the box."""
    named: list[tuple[str, Path | None]] = []
    if settings.ocpp is not None:
        named += [(f"ocpp.{k}", getattr(settings.ocpp, k)) for k in ("cert_file", "key_file", "ca_file")]
    if settings.mqtt is not None:
        named += [(f"mqtt.{k}", getattr(settings.mqtt, k)) for k in ("ca_file", "cert_file", "key_file")]
    return [
        f"{key} {path} does not exist here" for key, path in named if path is not None and not path.exists()
    ]
