"""Cross-checks of a structurally valid site configuration: what no single section can check alone.

Each check returns every problem it finds (not just the first), located by the path of the offending
value, so an electrician fixes a configuration in one pass. The fail-safe budget (all safe currents
plus worst-case base load fit every fuse) needs the electrical model and is not checked here: it is
passed to `load_settings` as `failsafe_budget_check`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controller.settings.sections import ChargerSection, FuseSection, phases_from_lines

if TYPE_CHECKING:
    from controller.settings.model import SiteSettings

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem in a configuration: where (`loc` path, and `source` such as `site.toml:42` or an
    environment variable name, when known) and what."""

    loc: Loc
    message: str
    source: str | None = None

    @property
    def path(self) -> str:
        return format_loc(self.loc)

    def __str__(self) -> str:
        parts = [p for p in (self.source, self.path) if p]
        return ": ".join([*parts, self.message])


SiteCheck = Callable[["SiteSettings"], Iterable[ConfigProblem]]
"""A check over a whole validated site; the fail-safe budget check has this shape."""


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def site_problems(site: SiteSettings) -> list[ConfigProblem]:
    problems = fuse_tree_problems(site.fuses)
    problems += charger_problems(site)
    problems += meter_problems(site)
    problems += ocpp_problems(site)
    problems += mqtt_problems(site)
    return problems


def fuse_tree_problems(fuses: tuple[FuseSection, ...]) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    first_index: dict[str, int] = {}
    for i, fuse in enumerate(fuses):
        if fuse.id in first_index:
            problems.append(
                ConfigProblem(
                    ("fuses", i, "id"), f"duplicate fuse id {fuse.id!r} (also fuses[{first_index[fuse.id]}])"
                )
            )
        else:
            first_index[fuse.id] = i

    roots = [i for i, f in enumerate(fuses) if f.parent is None]
    if not roots:
        problems.append(
            ConfigProblem(("fuses",), "no root fuse: exactly one fuse (the main fuse) has no parent")
        )
    for i in roots[1:]:
        problems.append(
            ConfigProblem(
                ("fuses", i, "parent"),
                f"fuse {fuses[i].id!r} has no parent but {fuses[roots[0]].id!r} is already the root; "
                "exactly one fuse (the main fuse) has no parent",
            )
        )

    parents: dict[str, str | None] = {}
    for i, fuse in enumerate(fuses):
        parents.setdefault(fuse.id, fuse.parent)
        if fuse.parent is None:
            continue
        if fuse.parent == fuse.id:
            problems.append(ConfigProblem(("fuses", i, "parent"), f"fuse {fuse.id!r} is its own parent"))
        elif fuse.parent not in first_index:
            problems.append(
                ConfigProblem(
                    ("fuses", i, "parent"), f"parent {fuse.parent!r} of fuse {fuse.id!r} is not a fuse"
                )
            )

    reported: set[str] = set()
    for fuse_id in parents:
        cycle = _cycle_from(fuse_id, parents)
        if cycle and not reported.intersection(cycle) and len(cycle) > 1:
            reported.update(cycle)
            problems.append(
                ConfigProblem(
                    ("fuses", first_index[cycle[0]], "parent"),
                    "fuse parents form a cycle: " + " → ".join([*cycle, cycle[0]]),
                )
            )
    return problems


def _cycle_from(start: str, parents: dict[str, str | None]) -> list[str]:
    """The cycle reached by walking up from `start`, in walking order; [] if the walk ends at a root."""
    seen: dict[str, int] = {}
    walk: list[str] = []
    current: str | None = start
    while current is not None and current in parents:
        if current in seen:
            return walk[seen[current] :]
        seen[current] = len(walk)
        walk.append(current)
        current = parents[current]
    return []


def charger_problems(site: SiteSettings) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    fuse_limits: dict[str, float] = {}
    for fuse in site.fuses:
        fuse_limits.setdefault(fuse.id, fuse.limit_a)  # a duplicate id is reported by the tree check
    first_index: dict[str, int] = {}
    endpoints: dict[tuple[str, int], int] = {}
    for i, charger in enumerate(site.chargers):
        at = ("chargers", i)
        if charger.id in first_index:
            problems.append(
                ConfigProblem(
                    (*at, "id"),
                    f"duplicate charger id {charger.id!r} (also chargers[{first_index[charger.id]}])",
                )
            )
        else:
            first_index[charger.id] = i
        if charger.protocol == "ocpp":
            endpoint = (charger.identity, charger.connector)
            if endpoint in endpoints:
                problems.append(
                    ConfigProblem(
                        (*at, "connector"),
                        f"OCPP identity {charger.identity!r} connector {charger.connector} is also "
                        f"chargers[{endpoints[endpoint]}]",
                    )
                )
            else:
                endpoints[endpoint] = i

        if charger.fuse not in fuse_limits:
            problems.append(
                ConfigProblem(
                    (*at, "fuse"),
                    f"charger {charger.id!r} hangs on fuse {charger.fuse!r}, which is not a fuse",
                )
            )
        elif charger.max_a > fuse_limits[charger.fuse]:
            problems.append(
                ConfigProblem(
                    (*at, "max_a"),
                    f"max_a {charger.max_a:g} A exceeds the {fuse_limits[charger.fuse]:g} A rating of "
                    f"fuse {charger.fuse!r} it hangs on",
                )
            )
        problems += _line_problems(charger, site.grid.type, at)
        problems += _current_problems(charger, at)
        problems += _protocol_problems(charger, at)
    return problems


def _line_problems(charger: ChargerSection, grid_type: str, at: Loc) -> list[ConfigProblem]:
    lines = charger.lines
    if len(set(lines)) != len(lines):
        return [ConfigProblem((*at, "lines"), f"lines {list(lines)} name a line twice")]
    phases = phases_from_lines(grid_type, len(lines))
    if phases is None:
        wanted = "1 line (single-phase) or 3" if grid_type == "TN" else "2 lines (single-phase) or 3"
        return [
            ConfigProblem(
                (*at, "lines"), f"a charger on a {grid_type} grid is wired to {wanted}, got {list(lines)}"
            )
        ]
    if charger.phases is not None and charger.phases != phases:
        return [
            ConfigProblem(
                (*at, "phases"),
                f"phases = {charger.phases} but lines {list(lines)} on {grid_type} make a "
                f"{phases}-phase charger",
            )
        ]
    return []


def _current_problems(charger: ChargerSection, at: Loc) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    if charger.min_a > charger.max_a:
        problems.append(
            ConfigProblem((*at, "min_a"), f"min_a {charger.min_a:g} A is above max_a {charger.max_a:g} A")
        )
    safe = charger.safe_current_a
    if safe != 0 and not charger.min_a <= safe <= charger.max_a:
        problems.append(
            ConfigProblem(
                (*at, "safe_current_a"),
                f"safe_current_a {safe:g} A must be 0 (paused without the controller) or between "
                f"min_a {charger.min_a:g} A and max_a {charger.max_a:g} A",
            )
        )
    return problems


def _protocol_problems(charger: ChargerSection, at: Loc) -> list[ConfigProblem]:
    if charger.protocol == "modbus":
        problems: list[ConfigProblem] = []
        if charger.modbus is None:
            problems.append(
                ConfigProblem((*at, "modbus"), "a modbus charger needs a [chargers.modbus] table")
            )
        for key in ("password_hash", "ocpp_identity"):
            if getattr(charger, key) is not None:
                problems.append(ConfigProblem((*at, key), f"{key} is only for OCPP chargers"))
        return problems
    if charger.modbus is not None:
        return [ConfigProblem((*at, "modbus"), '[chargers.modbus] is only for protocol = "modbus"')]
    return []


def meter_problems(site: SiteSettings) -> list[ConfigProblem]:
    if site.meter is None or any(f.id == site.meter.fuse for f in site.fuses):
        return []
    return [ConfigProblem(("meter", "fuse"), f"meter fuse {site.meter.fuse!r} is not a fuse")]


def ocpp_problems(site: SiteSettings) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    ocpp = site.ocpp
    ocpp_chargers = [(i, c) for i, c in enumerate(site.chargers) if c.protocol == "ocpp"]
    if ocpp is None:
        problems += [
            ConfigProblem(
                ("chargers", i, "protocol"), f"charger {c.id!r} uses OCPP but there is no [ocpp] section"
            )
            for i, c in ocpp_chargers
        ]
        return problems
    profile = ocpp.security_profile
    if profile in (2, 3):
        for key in ("cert_file", "key_file"):
            if getattr(ocpp, key) is None:
                problems.append(ConfigProblem(("ocpp", key), f"security profile {profile} (TLS) needs {key}"))
    if profile == 3 and ocpp.ca_file is None:
        problems.append(
            ConfigProblem(
                ("ocpp", "ca_file"), "security profile 3 needs ca_file to verify charger certificates"
            )
        )
    if profile in (1, 2):
        problems += [
            ConfigProblem(
                ("chargers", i, "password_hash"),
                f"charger {c.id!r}: security profile {profile} authenticates chargers by password; "
                "set password_hash (from `sitectl secret hash`)",
            )
            for i, c in ocpp_chargers
            if c.password_hash is None
        ]
    return problems


def mqtt_problems(site: SiteSettings) -> list[ConfigProblem]:
    mqtt = site.mqtt
    if mqtt is None:
        return []
    problems: list[ConfigProblem] = []
    if (mqtt.cert_file is None) != (mqtt.key_file is None):
        missing = "key_file" if mqtt.key_file is None else "cert_file"
        problems.append(
            ConfigProblem(("mqtt", missing), "a client certificate needs both cert_file and key_file")
        )
    if not mqtt.tls:
        problems += [
            ConfigProblem(("mqtt", key), f"{key} is set but the url is not mqtts:// (no TLS)")
            for key in ("ca_file", "cert_file", "key_file")
            if getattr(mqtt, key) is not None
        ]
    return problems
