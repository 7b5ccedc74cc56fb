"""Scenario files: a garage to simulate, in TOML, read into the simulator's typed values.

The site part uses the product's `site.toml` keys (DESIGN.md 7.5): `[site]`, `[grid]`, `[meter]`,
`[[fuses]]`, `[[chargers]]` (and `[policy]`, passed through to a daemon under test), either inline in
the scenario or in a site file named by `site = "path"` (relative to the scenario file), so a
scenario can run against an operator's real configuration. The simulator reads those keys itself
(it imports nothing of the product) and ignores the sections it has no use for (`[ocpp]`, `[mqtt]`,
`[storage]`, `[control]`, `[log]`). Everything else is simulator-only: `[scenario]`, `[meter_sim]`,
`[[fuse_sim]]`, `[charger_defaults]`, `[[charger_sim]]`, `[[base_loads]]`, `[arrivals]`,
`[[car_models]]`, `[[visits]]`, `[[faults]]`. Any key the simulator does not know is an error that
names it. docs/simulator.md documents every key.
"""

from __future__ import annotations

import fnmatch
import math
import random
import re
import string
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from simulator.arrivals import DEFAULT_FLEET, ArrivalProcess, CarArrival
from simulator.baseload import BaseLoadSpec
from simulator.cars import CarSpec
from simulator.chargers.spec import ChargerSpec
from simulator.physics.network import FuseSpec
from simulator.scenario import FaultSpec, GridSpec, Scenario

# --------------------------------------------------------------------------- the site.toml keys
# The product's names (controller/settings/sections.py); tests/unit keeps these sets in step.
SITE_SECTION_KEYS = frozenset({"id", "timezone"})
GRID_KEYS = frozenset({"type", "nominal_voltage_v"})
METER_KEYS = frozenset({"fuse", "port", "vendor", "ct_ratio", "full_list_interval_s"})
FUSE_KEYS = frozenset({"id", "parent", "limit_a", "base_load_a"})
CHARGER_KEYS = frozenset(
    {
        "id",
        "protocol",
        "fuse",
        "lines",
        "phases",
        "min_a",
        "max_a",
        "safe_current_a",
        "password_hash",
        "space",
        "ocpp_identity",
        "connector",
        "quirks",
        "modbus",
    }
)
SITE_TABLES = ("site", "grid", "policy", "meter", "fuses", "chargers")
"""Site sections the simulator reads (policy only to hand it on to a daemon under test)."""
IGNORED_SITE_TABLES = ("ocpp", "mqtt", "authorization", "storage", "control", "log", "modbus")
"""Site sections that describe the box, not the garage: ignored by the simulator."""
SIM_TABLES = (
    "scenario",
    "meter_sim",
    "fuse_sim",
    "charger_defaults",
    "charger_sim",
    "base_loads",
    "arrivals",
    "car_models",
    "visits",
    "faults",
)

CHARGER_FAULTS = ("charger_disconnect", "charger_reboot", "ignore_profiles", "network_delay")
METER_FAULTS = ("meter_silence", "meter_freeze", "meter_garbage", "meter_corrupt")
FAULT_KINDS = (*CHARGER_FAULTS, "fuse_reclose", *METER_FAULTS, "controller_kill")
MeterFaultKind = Literal["meter_silence", "meter_freeze", "meter_garbage", "meter_corrupt"]
MeterVendor = Literal["aidon", "kaifa", "kamstrup", "landis_gyr"]

DEFAULT_SPEED = 60.0
DEFAULT_START_UTC = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)
PASSWORD_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 24


class ScenarioFileError(ValueError):
    """A scenario (or site) file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class MeterSim:
    """The virtual AMS meter: which meter, where it sits and where its bytes go."""

    fuse: str
    vendor: MeterVendor
    grid: Literal["IT", "TN"]
    phases: Literal[1, 3] = 3
    ct_ratio: float = 1.0
    meter_id: str | None = None
    model: str | None = None
    legacy_firmware: bool = False
    output: Literal["pty", "tcp"] = "pty"
    link: Path | None = None
    tcp_host: str = "127.0.0.1"
    tcp_port: int = 0
    energy_import_start_wh: float = 0.0


@dataclass(frozen=True, slots=True)
class MeterFaultSpec:
    """A fault on the meter's line at `at_s` seconds from the scenario start: silence or frozen
    values for `duration_s`, or garbage bytes before / bit errors in the next `frames` frames."""

    at_s: float
    kind: MeterFaultKind
    duration_s: float = 0.0
    garbage_bytes: int = 64
    frames: int = 1
    bits: int = 1


@dataclass(frozen=True, slots=True)
class ControllerKill:
    """SIGKILL the daemon under test at `at_s`; start it again `duration_s` later."""

    at_s: float
    duration_s: float


@dataclass(frozen=True, slots=True)
class SiteDescription:
    """The site part of a scenario as the product's site.toml tables (plain TOML values), for a
    daemon configuration; `source` is the site file when the scenario named one."""

    site: dict[str, Any]
    grid: dict[str, Any]
    fuses: tuple[dict[str, Any], ...]
    chargers: tuple[dict[str, Any], ...]
    meter: dict[str, Any] | None = None
    policy: dict[str, Any] | None = None
    source: Path | None = None


@dataclass(frozen=True, slots=True)
class LoadedScenario:
    """A scenario file, read: the garage (`scenario`), its meter, the faults the garage does not
    apply itself (meter, daemon), the site description and the chargers' passwords."""

    path: Path
    scenario: Scenario
    site: SiteDescription
    speed: float
    description: str = ""
    meter: MeterSim | None = None
    meter_faults: tuple[MeterFaultSpec, ...] = ()
    controller_kills: tuple[ControllerKill, ...] = ()
    passwords: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def with_overrides(
        self, *, seed: int | None = None, duration_s: float | None = None, speed: float | None = None
    ) -> LoadedScenario:
        """The same scenario with a command line's --seed, --duration and --speed applied."""
        scenario = self.scenario
        if seed is not None:
            scenario = replace(scenario, seed=seed)
        if duration_s is not None:
            if not duration_s > 0:
                raise ScenarioFileError(f"duration must be positive, got {duration_s}")
            scenario = replace(scenario, duration_s=duration_s)
        if speed is not None and not speed > 0:
            raise ScenarioFileError(f"speed must be positive, got {speed}")
        scenario.validate()
        return replace(self, scenario=scenario, speed=self.speed if speed is None else speed)


# --------------------------------------------------------------------------- reading tables
_REQUIRED: Any = object()


class _Table:
    """One TOML table being read: typed getters that name the key in errors, and `done()` that
    rejects every key nobody asked for."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise ScenarioFileError(f"{where}: expected a table, got {_kind(data)}")
        self.data: dict[str, Any] = data
        self.where = where
        self.used: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self.where}.{key}"

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.data.get(key, default)

    def _get(self, key: str, default: Any) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is _REQUIRED:
                raise ScenarioFileError(f"{self._key(key)}: required key missing")
            return default
        return self.data[key]

    def text(self, key: str, default: Any = _REQUIRED, choices: tuple[str, ...] | None = None) -> Any:
        value = self._get(key, default)
        if value is default and key not in self.data:
            return value
        if not isinstance(value, str):
            raise ScenarioFileError(f"{self._key(key)}: expected a string, got {_kind(value)}")
        if choices is not None and value not in choices:
            raise ScenarioFileError(f"{self._key(key)}: expected one of {', '.join(choices)}, got {value!r}")
        return value

    def number(
        self,
        key: str,
        default: Any = _REQUIRED,
        *,
        min_value: float | None = None,
        max_value: float | None = None,
        above: float | None = None,
    ) -> Any:
        value = self._get(key, default)
        if value is default and key not in self.data:
            return value
        return _number(value, self._key(key), min_value=min_value, max_value=max_value, above=above)

    def integer(self, key: str, default: Any = _REQUIRED, *, min_value: int | None = None) -> Any:
        value = self._get(key, default)
        if value is default and key not in self.data:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScenarioFileError(f"{self._key(key)}: expected an integer, got {_kind(value)}")
        if min_value is not None and value < min_value:
            raise ScenarioFileError(f"{self._key(key)}: must be at least {min_value}, got {value}")
        return value

    def flag(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self._get(key, default)
        if value is default and key not in self.data:
            return value
        if not isinstance(value, bool):
            raise ScenarioFileError(f"{self._key(key)}: expected true or false, got {_kind(value)}")
        return value

    def str_list(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self._get(key, default)
        if value is default and key not in self.data:
            return value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ScenarioFileError(f"{self._key(key)}: expected a list of strings")
        return tuple(value)

    def tables(self, key: str) -> Iterator[_Table]:
        value = self._get(key, [])
        if not isinstance(value, list):
            raise ScenarioFileError(f"{self._key(key)}: expected an array of tables ([[{key}]])")
        for i, item in enumerate(value):
            yield _Table(item, f"{self.where}.{key}[{i}]" if self.where else f"{key}[{i}]")

    def table(self, key: str) -> _Table | None:
        self.used.add(key)
        if key not in self.data:
            return None
        return _Table(self.data[key], self._key(key) if self.where else key)

    def done(self, allowed: frozenset[str] | None = None) -> None:
        for key in self.data:
            if key not in self.used and (allowed is None or key not in allowed):
                raise ScenarioFileError(f"{self._key(key) if self.where else key}: unknown key")


def _kind(value: object) -> str:
    return {dict: "a table", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _number(
    value: object,
    where: str,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    above: float | None = None,
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioFileError(f"{where}: expected a number, got {_kind(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise ScenarioFileError(f"{where}: must be a finite number")
    if min_value is not None and number < min_value:
        raise ScenarioFileError(f"{where}: must be at least {min_value:g}, got {number:g}")
    if max_value is not None and number > max_value:
        raise ScenarioFileError(f"{where}: must be at most {max_value:g}, got {number:g}")
    if above is not None and number <= above:
        raise ScenarioFileError(f"{where}: must be above {above:g}, got {number:g}")
    return number


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioFileError(f"{path}: cannot read: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioFileError(f"{path}: invalid TOML: {exc}") from None


# --------------------------------------------------------------------------- the loader
def load_scenario(path: str | Path) -> LoadedScenario:
    """Read a scenario file; raises ScenarioFileError naming the file and the key at fault."""
    path = Path(path)
    data = _read_toml(path)
    try:
        return _Loader(path, data).load()
    except ScenarioFileError as exc:
        message = str(exc)
        raise ScenarioFileError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    except ValueError as exc:  # a typed value's own check (CarSpec, ChargerSpec, Scenario...)
        raise ScenarioFileError(f"{path}: {exc}") from None


def parse_scenario(text: str, path: str | Path = "<scenario>") -> LoadedScenario:
    """Like `load_scenario` for TOML text; a `site = ...` reference is relative to `path`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioFileError(f"{path}: invalid TOML: {exc}") from None
    try:
        return _Loader(Path(path), data).load()
    except ScenarioFileError as exc:
        raise ScenarioFileError(f"{path}: {exc}") from None
    except ValueError as exc:
        raise ScenarioFileError(f"{path}: {exc}") from None


class _Loader:
    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.top = _Table(data, "")
        self.notes: list[str] = []

    def load(self) -> LoadedScenario:
        top = self.top
        for key in top.data:
            if key not in (*SITE_TABLES, *IGNORED_SITE_TABLES, *SIM_TABLES):
                raise ScenarioFileError(
                    f"{key}: unknown key (sections: {', '.join(SIM_TABLES)} and site.toml's)"
                )
        site_data, site_source = self._site_data()
        info = self._scenario_table()
        site = _Table(site_data, "")
        site_where = f"{site_source}: " if site_source is not None else ""
        try:
            site_desc, grid, fuses_raw, chargers_raw, meter_raw = self._read_site(site, site_source)
        except ScenarioFileError as exc:
            raise ScenarioFileError(f"{site_where}{exc}") from None
        timezone = site_desc.site.get("timezone", "Europe/Oslo")
        fuses = self._fuses(fuses_raw)
        chargers, passwords = self._chargers(chargers_raw, grid.type, info["name"])
        fleet = self._car_models()
        base_loads = tuple(self._base_load(t) for t in top.tables("base_loads"))
        arrivals = self._arrivals(fleet, info["start_utc"], timezone)
        visits = tuple(self._visit(t, i, fleet) for i, t in enumerate(top.tables("visits")))
        meter = self._meter(meter_raw, grid.type)
        id_to_identity = {c.data["id"]: c.data.get("ocpp_identity") or c.data["id"] for c in chargers_raw}
        faults, meter_faults, kills = self._faults(id_to_identity, meter is not None)
        scenario = Scenario(
            name=info["name"],
            fuses=fuses,
            chargers=chargers,
            grid=grid,
            base_loads=base_loads,
            arrivals=arrivals,
            visits=visits,
            faults=faults,
            duration_s=info["duration_s"],
            seed=info["seed"],
            step_s=info["step_s"],
            record_every_steps=info["record_every_steps"],
            start_utc=info["start_utc"],
            timezone=timezone,
        )
        scenario.validate()
        return LoadedScenario(
            path=self.path,
            scenario=scenario,
            site=site_desc,
            speed=info["speed"],
            description=info["description"],
            meter=meter,
            meter_faults=meter_faults,
            controller_kills=kills,
            passwords=passwords,
            notes=tuple(self.notes),
        )

    # ------------------------------------------------------------------ the site
    def _site_data(self) -> tuple[dict[str, Any], Path | None]:
        ref = self.top.data.get("site")
        if not isinstance(ref, str):
            return {k: v for k, v in self.top.data.items() if k in (*SITE_TABLES, *IGNORED_SITE_TABLES)}, None
        self.top.used.add("site")
        inline = [k for k in self.top.data if k in (*SITE_TABLES, *IGNORED_SITE_TABLES) and k != "site"]
        if inline:
            raise ScenarioFileError(
                f"{inline[0]}: the site comes from site = {ref!r}; put site keys in that file, not here"
            )
        site_path = (self.path.parent / ref).resolve()
        data = _read_toml(site_path)
        for key in data:
            if key not in (*SITE_TABLES, *IGNORED_SITE_TABLES):
                raise ScenarioFileError(f"{site_path}: {key}: unknown key in a site file")
        return data, site_path

    def _read_site(
        self, site: _Table, source: Path | None
    ) -> tuple[SiteDescription, GridSpec, list[_Table], list[_Table], _Table | None]:
        for key in IGNORED_SITE_TABLES:
            site.raw(key)
        site_table = site.table("site")
        site_section: dict[str, Any] = {}
        if site_table is not None:
            site_section["id"] = site_table.text("id", None)
            site_section["timezone"] = site_table.text("timezone", "Europe/Oslo")
            site_table.done()
            site_section = {k: v for k, v in site_section.items() if v is not None}
        if "timezone" in site_section:
            try:
                ZoneInfo(site_section["timezone"])
            except (ZoneInfoNotFoundError, ValueError):
                raise ScenarioFileError(
                    f"site.timezone: unknown time zone {site_section['timezone']!r}"
                ) from None
        grid_table = site.table("grid")
        if grid_table is None:
            raise ScenarioFileError('grid: required table missing ([grid] type = "IT" or "TN")')
        grid_type = grid_table.text("type", choices=("IT", "TN"))
        voltage = grid_table.number("nominal_voltage_v", 230.0, min_value=100, max_value=500)
        grid_table.done()
        policy = site.table("policy")
        policy_raw = dict(policy.data) if policy is not None else None
        if policy is not None:
            policy.used.update(policy.data)
        fuses = list(site.tables("fuses"))
        if not fuses:
            raise ScenarioFileError("fuses: at least one [[fuses]] table is needed")
        chargers = list(site.tables("chargers"))
        meter = site.table("meter")
        site.done()
        for table in fuses:
            table.done(FUSE_KEYS)
        for table in chargers:
            table.done(CHARGER_KEYS)
        if meter is not None:
            meter.done(METER_KEYS)
        desc = SiteDescription(
            site=site_section,
            grid={"type": grid_type, "nominal_voltage_v": voltage},
            fuses=tuple(dict(t.data) for t in fuses),
            chargers=tuple(dict(t.data) for t in chargers),
            meter=dict(meter.data) if meter is not None else None,
            policy=policy_raw,
            source=source,
        )
        return desc, GridSpec(grid_type, voltage), fuses, chargers, meter

    def _fuses(self, tables: list[_Table]) -> tuple[FuseSpec, ...]:
        rules = []
        for rule in self.top.tables("fuse_sim"):
            pattern = rule.text("match")
            device = rule.text("device", None, choices=("gG", "B", "C", "D", "none"))
            rated = rule.number("rated_a", None, above=0)
            rule.done()
            rules.append((pattern, device, rated, rule.where))
        out = []
        matched: set[str] = set()
        for table in tables:
            fuse_id = table.text("id")
            parent = table.text("parent", None)
            limit = table.number("limit_a", above=0)
            table.number("base_load_a", 0.0, min_value=0)
            device, rated = "gG", None
            for pattern, rule_device, rule_rated, where in rules:
                if fnmatch.fnmatchcase(fuse_id, pattern):
                    matched.add(where)
                    device = rule_device or device
                    rated = rule_rated if rule_rated is not None else rated
            out.append(FuseSpec(fuse_id, limit, parent=parent, device=device, rated_a=rated))
        for _, _, _, where in rules:
            if where not in matched:
                raise ScenarioFileError(f"{where}.match: matches no fuse")
        return tuple(out)

    def _charger_rules(self) -> list[tuple[str, dict[str, Any], str]]:
        rules: list[tuple[str, dict[str, Any], str]] = []
        defaults = self.top.table("charger_defaults")
        if defaults is not None:
            rules.append(("*", _charger_sim_values(defaults), defaults.where))
            defaults.done()
        for rule in self.top.tables("charger_sim"):
            pattern = rule.text("match")
            rules.append((pattern, _charger_sim_values(rule), rule.where))
            rule.done()
        return rules

    def _chargers(
        self, tables: list[_Table], grid: str, scenario_name: str
    ) -> tuple[tuple[ChargerSpec, ...], dict[str, str]]:
        groups: dict[str, list[tuple[_Table, dict[str, Any]]]] = {}
        for table in tables:
            row = {
                "id": table.text("id"),
                "protocol": table.text("protocol", choices=("ocpp", "modbus")),
                "fuse": table.text("fuse"),
                "lines": table.str_list("lines"),
                "min_a": table.number("min_a", 6.0, min_value=6.0),
                "max_a": table.number("max_a", above=0, max_value=80),
                "safe_current_a": table.number("safe_current_a", min_value=0),
                "connector": table.integer("connector", 1, min_value=1),
                "identity": table.text("ocpp_identity", None),
            }
            phases = table.raw("phases")
            for key in ("password_hash", "space", "quirks", "modbus"):
                table.raw(key)
            if row["protocol"] == "modbus":
                self.notes.append(
                    f"charger {row['id']}: Modbus chargers are not simulated yet; it is left out of the "
                    "garage and of a daemon configuration"
                )
                continue
            bad = [line for line in row["lines"] if line not in ("L1", "L2", "L3")]
            if bad:
                raise ScenarioFileError(f"{table.where}.lines: {bad[0]!r} is not a line (L1, L2, L3)")
            implied = {"TN": {1: 1, 3: 3}, "IT": {2: 1, 3: 3}}[grid].get(len(row["lines"]))
            if implied is None:
                wanted = "1 or 3 lines" if grid == "TN" else "2 or 3 lines"
                raise ScenarioFileError(f"{table.where}.lines: a charger on {grid} has {wanted}")
            if phases is not None and phases != implied:
                raise ScenarioFileError(
                    f"{table.where}.phases: {phases} does not match lines {list(row['lines'])}"
                )
            groups.setdefault(row["identity"] or row["id"], []).append((table, row))
        rules = self._charger_rules()
        used_rules: set[str] = set()
        specs = []
        passwords: dict[str, str] = {}
        for identity, members in groups.items():
            members.sort(key=lambda m: int(m[1]["connector"]))
            first_table, first = members[0]
            connectors: dict[int, tuple[str, ...]] = {}
            for table, row in members:
                if row["fuse"] != first["fuse"]:
                    raise ScenarioFileError(
                        f"{table.where}.fuse: connectors of charger {identity} hang on different fuses "
                        f"({first['fuse']!r}, {row['fuse']!r}); the simulator models one circuit per charger"
                    )
                if len(row["lines"]) != len(first["lines"]):
                    raise ScenarioFileError(
                        f"{table.where}.lines: connectors of charger {identity} need the same number of lines"
                    )
                if row["connector"] in connectors:
                    raise ScenarioFileError(
                        f"{table.where}.connector: connector {row['connector']} used twice"
                    )
                connectors[row["connector"]] = row["lines"]
            count = max(connectors)
            per_connector = tuple(connectors.get(i, first["lines"]) for i in range(1, count + 1))
            sim: dict[str, Any] = {}
            for pattern, values, where in rules:
                if fnmatch.fnmatchcase(identity, pattern):
                    used_rules.add(where)
                    sim.update(values)
            password = sim.pop("password", None) or _password(scenario_name, identity)
            passwords[identity] = password
            kwargs: dict[str, Any] = {
                "identity": identity,
                "fuse": first["fuse"],
                "lines": per_connector[0],
                "connector_lines": per_connector if len(set(per_connector)) > 1 else (),
                "connectors": count,
                "max_current_a": max(float(r["max_a"]) for _, r in members),
                "min_current_a": min(float(r["min_a"]) for _, r in members),
                "password": password,
                "serial_number": f"SIM-{identity}",
            }
            kwargs.update(sim)
            try:
                specs.append(ChargerSpec(**kwargs))
            except ValueError as exc:
                raise ScenarioFileError(f"{first_table.where}: {exc}") from None
        for _, _, where in rules:
            if where not in used_rules and not where.startswith("charger_defaults"):
                raise ScenarioFileError(f"{where}.match: matches no charger")
        return tuple(specs), passwords

    def _meter(self, table: _Table | None, grid: Literal["IT", "TN"]) -> MeterSim | None:
        sim = self.top.table("meter_sim")
        if table is None:
            if sim is not None:
                raise ScenarioFileError(
                    "meter_sim: the site has no [meter] (it names the fuse the meter is on)"
                )
            return None
        fuse = table.text("fuse")
        site_vendor = table.text(
            "vendor", "auto", choices=("auto", "aidon", "kaifa", "kamstrup", "landis_gyr")
        )
        site_ct = table.number("ct_ratio", 1.0, above=0)
        if sim is None:
            sim = _Table({}, "meter_sim")
        vendor = sim.text(
            "vendor",
            "aidon" if site_vendor == "auto" else site_vendor,
            choices=("aidon", "kaifa", "kamstrup", "landis_gyr"),
        )
        phases = sim.integer("phases", 3)
        if phases not in (1, 3):
            raise ScenarioFileError(f"meter_sim.phases: expected 1 or 3, got {phases}")
        output = sim.text("output", "pty", choices=("pty", "tcp"))
        link = sim.text("link", None)
        host, port = "127.0.0.1", 0
        listen = sim.text("tcp_listen", None)
        if listen is not None:
            match = re.fullmatch(r"(?P<host>[^:\s]+):(?P<port>\d{1,5})", listen)
            if match is None or int(match["port"]) > 65535:
                raise ScenarioFileError(f"meter_sim.tcp_listen: expected host:port, got {listen!r}")
            host, port = match["host"], int(match["port"])
        meter = MeterSim(
            fuse=fuse,
            vendor=vendor,
            grid=grid,
            phases=cast(Literal[1, 3], phases),
            ct_ratio=sim.number("ct_ratio", site_ct, above=0),
            meter_id=sim.text("meter_id", None),
            model=sim.text("model", None),
            legacy_firmware=sim.flag("legacy_firmware", False),
            output=output,
            link=(self.path.parent / link) if link is not None else None,
            tcp_host=host,
            tcp_port=port,
            energy_import_start_wh=sim.number("energy_import_start_wh", 0.0, min_value=0),
        )
        sim.done()
        if phases == 1 and grid == "IT":
            self.notes.append("meter_sim: a 1-phase meter on IT measures one line pair only")
        return meter

    # ------------------------------------------------------------------ cars, loads, arrivals
    def _car_models(self) -> dict[str, tuple[float, CarSpec]]:
        models: dict[str, tuple[float, CarSpec]] = {spec.model: (w, spec) for w, spec in DEFAULT_FLEET}
        custom: dict[str, tuple[float, CarSpec]] = {}
        for table in self.top.tables("car_models"):
            name = table.text("name")
            weight = table.number("weight", 1.0, min_value=0)
            values = {
                "battery_kwh": table.number("battery_kwh", None, above=0),
                "max_current_a": table.number("max_current_a", None, above=0),
                "phases": table.integer("phases", None, min_value=1),
                "min_current_a": table.number("min_current_a", None, above=0),
                "response_delay_s": table.number("response_delay_s", None, min_value=0),
                "taper_start_soc": table.number("taper_start_soc", None, above=0, max_value=1),
                "taper_floor_a": table.number("taper_floor_a", None, min_value=0),
                "draw_ratio": table.number("draw_ratio", None, above=0, max_value=1),
                "ignores_setpoint": table.flag("ignores_setpoint", None),
                "charge_efficiency": table.number("charge_efficiency", None, above=0, max_value=1),
            }
            table.done()
            if name in custom:
                raise ScenarioFileError(f"{table.where}.name: car model {name!r} defined twice")
            try:
                spec = CarSpec(model=name, **{k: v for k, v in values.items() if v is not None})
            except ValueError as exc:
                raise ScenarioFileError(f"{table.where}: {exc}") from None
            custom[name] = (weight, spec)
        if custom:
            if not any(w > 0 for w, _ in custom.values()):
                raise ScenarioFileError("car_models: at least one model needs a weight above 0")
            models.update(custom)
            self._fleet = tuple((w, s) for w, s in custom.values() if w > 0)
        else:
            self._fleet = DEFAULT_FLEET
        return models

    def _base_load(self, table: _Table) -> BaseLoadSpec:
        amps = table.raw("amps_a", [10.0, 10.0, 10.0])
        if not isinstance(amps, list) or len(amps) != 3:
            raise ScenarioFileError(
                f"{table.where}.amps_a: expected three numbers (per line on TN, per branch on IT)"
            )
        values = tuple(_number(a, f"{table.where}.amps_a", min_value=0) for a in amps)
        optional = {
            "power_factor": table.number("power_factor", None, above=0, max_value=1),
            "noise_fraction": table.number("noise_fraction", None, min_value=0, max_value=0.99),
            "period_s": table.number("period_s", None, above=0),
            "duty": table.number("duty", None, min_value=0, max_value=1),
            "starts_per_h": table.number("starts_per_h", None, min_value=0),
            "run_s": table.number("run_s", None, min_value=0),
            "inrush_factor": table.number("inrush_factor", None, min_value=0),
            "inrush_s": table.number("inrush_s", None, min_value=0),
            "idle_fraction": table.number("idle_fraction", None, min_value=0),
            "at_s": table.number("at_s", None, min_value=0),
            "duration_s": table.number("duration_s", None, above=0),
        }
        spec = BaseLoadSpec(
            id=table.text("id"),
            fuse=table.text("fuse"),
            kind=table.text(
                "kind", "constant", choices=("constant", "evening_peak", "ventilation", "lift", "step")
            ),
            amps=(values[0], values[1], values[2]),
            **{k: v for k, v in optional.items() if v is not None},
        )
        table.done()
        return spec

    def _arrivals(
        self, models: dict[str, tuple[float, CarSpec]], start: datetime, tz: str
    ) -> ArrivalProcess | None:
        table = self.top.table("arrivals")
        if table is None:
            return None
        rate = table.raw("rate_per_h")
        if isinstance(rate, list):
            if len(rate) != 24:
                raise ScenarioFileError(
                    f"{table.where}.rate_per_h: give one rate or 24 (by local hour), got {len(rate)}"
                )
            rates = tuple(_number(r, f"{table.where}.rate_per_h", min_value=0) for r in rate)
        elif rate is None:
            raise ScenarioFileError(f"{table.where}.rate_per_h: required key missing")
        else:
            rates = (_number(rate, f"{table.where}.rate_per_h", min_value=0),)
        soc_min = table.number("soc_min", 0.15, min_value=0, max_value=1)
        soc_max = table.number("soc_max", 0.6, min_value=0, max_value=1)
        target = table.number("target_soc", 0.9, above=0, max_value=1)
        if not soc_min <= soc_max < target:
            raise ScenarioFileError(f"{table.where}: need soc_min <= soc_max < target_soc")
        mix = table.raw("car_mix")
        fleet = self._fleet
        if mix is not None:
            mix_table = _Table(mix, f"{table.where}.car_mix")
            picked = []
            for name in mix_table.data:
                if name not in models:
                    raise ScenarioFileError(
                        f"{mix_table.where}.{name}: unknown car model (see [[car_models]])"
                    )
                picked.append((mix_table.number(name, min_value=0), models[name][1]))
            if not any(w > 0 for w, _ in picked):
                raise ScenarioFileError(f"{mix_table.where}: at least one weight above 0")
            fleet = tuple((w, s) for w, s in picked if w > 0)
        local = start.astimezone(ZoneInfo(tz))
        process = ArrivalProcess(
            rate_per_h=rates,
            mean_dwell_s=table.number("mean_dwell_s", 4 * 3600.0, above=0),
            dwell_sigma=table.number("dwell_sigma", 0.5, min_value=0),
            min_dwell_s=table.number("min_dwell_s", 900.0, above=0),
            soc_range=(soc_min, soc_max),
            target_soc=target,
            fleet=fleet,
            tags=table.str_list("tags", ()),
            # Hourly rates follow the site's local clock from the scenario's start.
            day_offset_s=local.hour * 3600 + local.minute * 60 + local.second,
        )
        table.done()
        return process

    def _visit(self, table: _Table, index: int, models: dict[str, tuple[float, CarSpec]]) -> CarArrival:
        name = table.text("name", f"visit-{index:03d}")
        car = table.text("car")
        if car not in models:
            raise ScenarioFileError(
                f"{table.where}.car: unknown car model {car!r} (known: {', '.join(sorted(models))})"
            )
        arrival = CarArrival(
            name=name,
            arrival_s=table.number("arrival_s", min_value=0),
            departure_s=table.number("departure_s", above=0),
            car=models[car][1],
            soc=table.number("soc", min_value=0, max_value=1),
            target_soc=table.number("target_soc", 0.9, above=0, max_value=1),
            id_tag=table.text("id_tag", f"TAG-{name}"),
            charger=table.text("charger", None),
        )
        table.done()
        return arrival

    # ------------------------------------------------------------------ faults and [scenario]
    def _faults(
        self, id_to_identity: dict[str, str], has_meter: bool
    ) -> tuple[tuple[FaultSpec, ...], tuple[MeterFaultSpec, ...], tuple[ControllerKill, ...]]:
        garage: list[FaultSpec] = []
        meter: list[MeterFaultSpec] = []
        kills: list[ControllerKill] = []
        for table in self.top.tables("faults"):
            at_s = table.number("at_s", min_value=0)
            kind = table.text("kind", choices=FAULT_KINDS)
            duration = table.number("duration_s", 0.0, min_value=0)
            if kind in METER_FAULTS:
                if not has_meter:
                    raise ScenarioFileError(f"{table.where}.kind: {kind} needs a meter ([meter] in the site)")
                target = table.text("target", "meter")
                if target != "meter":
                    raise ScenarioFileError(
                        f'{table.where}.target: meter faults target "meter", got {target!r}'
                    )
                if kind in ("meter_silence", "meter_freeze") and duration <= 0:
                    raise ScenarioFileError(f"{table.where}.duration_s: {kind} needs a duration above 0")
                meter.append(
                    MeterFaultSpec(
                        at_s=at_s,
                        kind=cast(MeterFaultKind, kind),
                        duration_s=duration,
                        garbage_bytes=table.integer("garbage_bytes", 64, min_value=1)
                        if kind == "meter_garbage"
                        else 64,
                        frames=table.integer("frames", 1, min_value=1)
                        if kind in ("meter_garbage", "meter_corrupt")
                        else 1,
                        bits=table.integer("bits", 1, min_value=1) if kind == "meter_corrupt" else 1,
                    )
                )
            elif kind == "controller_kill":
                target = table.text("target", "controller")
                if target != "controller":
                    raise ScenarioFileError(f'{table.where}.target: controller_kill targets "controller"')
                kills.append(ControllerKill(at_s, duration))
            else:
                target = table.text("target")
                if kind != "fuse_reclose" and target != "*":
                    target = id_to_identity.get(target, target)
                delay = table.number("delay_s", 0.0, min_value=0) if kind == "network_delay" else 0.0
                if kind == "network_delay" and delay <= 0:
                    raise ScenarioFileError(f"{table.where}.delay_s: network_delay needs delay_s above 0")
                if kind == "charger_disconnect" and duration <= 0:
                    raise ScenarioFileError(f"{table.where}.duration_s: charger_disconnect needs a duration")
                garage.append(FaultSpec(at_s, kind, target, duration_s=duration, value=delay))
            table.done()
        return tuple(garage), tuple(meter), tuple(kills)

    def _scenario_table(self) -> dict[str, Any]:
        table = self.top.table("scenario") or _Table({}, "scenario")
        start = table.raw("start_utc", DEFAULT_START_UTC)
        info = {
            "name": table.text("name", self.path.stem),
            "description": table.text("description", ""),
            "duration_s": table.number("duration_s", 3600.0, above=0),
            "seed": table.integer("seed", 0),
            "speed": table.number("speed", DEFAULT_SPEED, above=0),
            "step_s": table.number("step_s", 0.25, min_value=0.01, max_value=5.0),
            "record_every_steps": table.integer("record_every_steps", 4, min_value=1),
            "start_utc": _utc(start, f"{table.where}.start_utc"),
        }
        table.done()
        return info


def _charger_sim_values(table: _Table) -> dict[str, Any]:
    getters: dict[str, Callable[[str], Any]] = {
        "version": lambda k: table.text(k, None, choices=("1.6", "2.0.1")),
        "max_current_a": lambda k: table.number(k, None, above=0),
        "default_limit_a": lambda k: table.number(k, None, min_value=0),
        "password": lambda k: table.text(k, None),
        "profile_delay_s": lambda k: table.number(k, None, min_value=0),
        "ignore_profiles": lambda k: table.flag(k, None),
        "reboot_s": lambda k: table.number(k, None, min_value=0),
        "reconnect_s": lambda k: table.number(k, None, above=0),
        "response_timeout_s": lambda k: table.number(k, None, above=0),
        "meter_sample_interval_s": lambda k: table.number(k, None, min_value=0),
        "clock_aligned_interval_s": lambda k: table.number(k, None, min_value=0),
        "heartbeat_interval_s": lambda k: table.number(k, None, above=0),
        "energy_register_start_wh": lambda k: table.number(k, None, min_value=0),
        "vendor": lambda k: table.text(k, None),
        "model": lambda k: table.text(k, None),
    }
    values = {key: getter(key) for key, getter in getters.items()}
    password = values.get("password")
    if password is not None and (
        not 16 <= len(password) <= 40 or ":" in password or not password.isprintable()
    ):
        raise ScenarioFileError(f"{table.where}.password: 16-40 printable characters without ':'")
    return {k: v for k, v in values.items() if v is not None}


def _password(scenario_name: str, identity: str) -> str:
    # Derived from the names, so a scenario's endpoints are the same on every run; a simulator's
    # chargers guard nothing.
    rng = random.Random(f"{scenario_name}/{identity}")
    return "".join(rng.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def _utc(value: object, where: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ScenarioFileError(f"{where}: not an ISO 8601 date-time: {value!r}") from None
    if isinstance(value, date | time) and not isinstance(value, datetime):
        raise ScenarioFileError(f"{where}: needs a date and a time with its offset (2026-11-22T15:00:00Z)")
    if not isinstance(value, datetime):
        raise ScenarioFileError(f"{where}: expected a date-time, got {_kind(value)}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ScenarioFileError(f"{where}: needs a UTC offset (2026-11-22T15:00:00Z)")
    return value.astimezone(UTC)


def scenario_summary(loaded: LoadedScenario) -> list[str]:
    """A few lines that say what a scenario is, for `check` and the start of a run."""
    sc = loaded.scenario
    connectors = sum(c.connectors for c in sc.chargers)
    root = next(f for f in sc.fuses if f.parent is None)
    lines = [
        f"scenario {sc.name}: {sc.grid.type} {sc.grid.nominal_voltage_v:g} V, "
        f"main fuse 3x{root.limit_a:g} A, "
        f"{len(sc.fuses)} fuses, {len(sc.chargers)} chargers ({connectors} connectors), "
        f"{timedelta(seconds=round(sc.duration_s))} simulated from {sc.start_utc.isoformat()}",
    ]
    versions = sorted({c.version for c in sc.chargers})
    lines.append(f"  OCPP {', '.join(versions) or '-'}; seed {sc.seed}; default speed {loaded.speed:g}x")
    if loaded.meter is not None:
        m = loaded.meter
        ct = f", CT {m.ct_ratio:g}" if m.ct_ratio != 1 else ""
        lines.append(f"  meter: {m.vendor} {m.phases}-phase on {m.grid}, at fuse {m.fuse}{ct}")
    faults = len(sc.faults) + len(loaded.meter_faults) + len(loaded.controller_kills)
    if faults:
        lines.append(f"  faults: {faults}")
    lines += [f"  note: {note}" for note in loaded.notes]
    return lines


__all__ = [
    "CHARGER_KEYS",
    "FAULT_KINDS",
    "FUSE_KEYS",
    "GRID_KEYS",
    "METER_KEYS",
    "SITE_SECTION_KEYS",
    "ControllerKill",
    "LoadedScenario",
    "MeterFaultSpec",
    "MeterSim",
    "ScenarioFileError",
    "SiteDescription",
    "load_scenario",
    "parse_scenario",
    "scenario_summary",
]
