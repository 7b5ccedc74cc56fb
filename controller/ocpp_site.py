"""The site's OCPP chargers as the OCPP server's charge points (one per identity)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from controller.settings import ChargerSection, SiteSettings
from drivers.ocpp import ChargePointConfig, Quirks


def charge_points(settings: SiteSettings) -> list[ChargePointConfig]:
    """Group the site's OCPP charging points by identity (one charger, several connectors)."""
    groups: dict[str, list[ChargerSection]] = defaultdict(list)
    for charger in settings.chargers:
        if charger.protocol == "ocpp":
            groups[charger.identity].append(charger)
    points = []
    for identity, members in groups.items():
        first = members[0]
        points.append(
            ChargePointConfig(
                identity=identity,
                connectors={c.connector: c.id for c in members},
                password_hash=first.password_hash,
                safe_current_a=min(c.safe_current_a for c in members),
                max_current_a=max(c.max_a for c in members),
                phases=settings.charger_phases(first),
                quirks=quirks(first.quirks, settings.grid.nominal_voltage_v),
            )
        )
    return points


def quirks(values: Mapping[str, bool | int | float | str], nominal_voltage_v: float) -> Quirks:
    relaxed = values.get("relaxed_actions", "")
    phase = values.get("phase_to_use")
    return Quirks(
        stack_level_zero_only=bool(values.get("stack_level_zero_only", False)),
        limit_in_watts=bool(values.get("limit_in_watts", False)),
        nominal_voltage_v=nominal_voltage_v,
        relaxed_actions=tuple(a.strip() for a in str(relaxed).split(",") if a.strip()),
        phase_to_use=int(phase) if isinstance(phase, int | float) and not isinstance(phase, bool) else None,
    )
