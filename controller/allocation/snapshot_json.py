"""The site snapshot and the allocation as JSON (DESIGN §7.2, version 1; docs/snapshot.md).

`snapshot_from_json` validates with pydantic (types, unknown fields) and then with the allocator's own
checks (references, ranges), and raises `SnapshotError` naming the field either way, e.g.
`chargers[3].lines[1]: Input should be 'L1', 'L2' or 'L3'`. `snapshot_to_json` writes every field,
defaults included, so that what the daemon prints `sitectl balance` reads back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from controller.allocation.compiled import compile_site
from controller.allocation.model import (
    SNAPSHOT_VERSION,
    Allocation,
    Charger,
    Drive,
    Fuse,
    Grid,
    LineValues,
    Meter,
    Policy,
    SiteSnapshot,
    SnapshotError,
    Vehicle,
)
from drivers.contracts import LINES

LineName = Literal["L1", "L2", "L3"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PerLineJson(_Model):
    """Amps per grid line; a line left out is not known (null), never 0."""

    L1: float | None = None
    L2: float | None = None
    L3: float | None = None

    def values(self) -> LineValues:
        return (self.L1, self.L2, self.L3)


class GridJson(_Model):
    type: Literal["IT", "TN"]
    nominal_voltage_v: float = 230.0


class PolicyJson(_Model):
    safety_margin_a: float = 2.0
    min_current_a: float = 6.0
    rotation_period_s: float = 900.0
    deadband_a: float = 1.0
    increase_step_a: float | None = 4.0
    taper_ratio: float = 0.95
    taper_tolerance_a: float = 0.5
    taper_headroom_a: float = 3.0
    max_starts_per_hour: int = 4
    meter_stale_after_s: float = 30.0
    restart_hold_s: float = 30.0
    restart_margin_a: float = 3.0


class FuseJson(_Model):
    id: str
    parent: str | None = None
    limit_a: float
    base_load_a: float = 0.0


class MeterJson(_Model):
    fuse: str
    currents_a: PerLineJson
    age_s: float | None
    base_a: PerLineJson | None = None


class VehicleJson(_Model):
    connected: bool = True
    wants_energy: bool = True
    max_a: float | None = None
    active_lines: list[LineName] | None = None
    drawing_a: PerLineJson = Field(default_factory=PerLineJson)
    charging_since: AwareDatetime | None = None
    waiting_since: AwareDatetime | None = None
    paused_at: AwareDatetime | None = None
    session_energy_wh: float | None = None
    start_times: list[AwareDatetime] = Field(default_factory=list)


class ChargerJson(_Model):
    id: str
    fuse: str
    lines: list[LineName]
    min_a: float | None = None
    max_a: float
    setpoint_a: float | None = None
    safe_current_a: float | None = None
    # `online: false` alone is `drive: "offline"`; `drive` says more and wins.
    online: bool = True
    drive: Drive | None = None
    may_draw_a: float | None = None
    weight: float = 1.0
    vehicle: VehicleJson | None = None


class SnapshotJson(_Model):
    version: Literal[1]
    now: AwareDatetime
    grid: GridJson
    policy: PolicyJson = Field(default_factory=PolicyJson)
    fuses: list[FuseJson]
    meters: list[MeterJson] = Field(default_factory=list)
    chargers: list[ChargerJson] = Field(default_factory=list)


def snapshot_from_json(obj: object) -> SiteSnapshot:
    """A checked SiteSnapshot from parsed JSON; `SnapshotError` names the first bad field."""
    try:
        parsed = SnapshotJson.model_validate(obj)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise SnapshotError(_path(error["loc"]), error["msg"]) from None
    snapshot = SiteSnapshot(
        version=parsed.version,
        now=parsed.now,
        grid=Grid(type=parsed.grid.type, nominal_voltage_v=parsed.grid.nominal_voltage_v),
        policy=Policy(**parsed.policy.model_dump()),
        fuses=tuple(
            Fuse(id=f.id, limit_a=f.limit_a, parent=f.parent, base_load_a=f.base_load_a) for f in parsed.fuses
        ),
        meters=tuple(
            Meter(
                fuse=m.fuse,
                currents_a=m.currents_a.values(),
                age_s=m.age_s,
                base_a=None if m.base_a is None else m.base_a.values(),
            )
            for m in parsed.meters
        ),
        chargers=tuple(_charger(c) for c in parsed.chargers),
    )
    compile_site(snapshot)
    return snapshot


def snapshot_to_json(snapshot: SiteSnapshot) -> dict[str, Any]:
    policy = snapshot.policy
    return {
        "version": snapshot.version,
        "now": _time(snapshot.now),
        "grid": {"type": snapshot.grid.type, "nominal_voltage_v": snapshot.grid.nominal_voltage_v},
        "policy": {name: getattr(policy, name) for name in PolicyJson.model_fields},
        "fuses": [
            {"id": f.id, "parent": f.parent, "limit_a": f.limit_a, "base_load_a": f.base_load_a}
            for f in snapshot.fuses
        ],
        "meters": [
            {
                "fuse": m.fuse,
                "currents_a": _per_line(m.currents_a),
                "age_s": m.age_s,
                **({} if m.base_a is None else {"base_a": _per_line(m.base_a)}),
            }
            for m in snapshot.meters
        ],
        "chargers": [_charger_json(c) for c in snapshot.chargers],
    }


def allocation_to_json(allocation: Allocation) -> dict[str, Any]:
    """The allocation as `sitectl balance` prints it; amps rounded to 0.01 for reading."""
    return {
        "version": SNAPSHOT_VERSION,
        "failsafe": allocation.failsafe,
        "chargers": {
            cid: {
                "current_a": round(d.current_a, 2),
                "target_a": round(d.target_a, 2),
                "state": d.state,
                "limited_by": d.limited_by,
            }
            for cid, d in allocation.chargers.items()
        },
        "fuses": {
            fid: {
                "limit_a": f.limit_a,
                "predicted_a": {line: round(v, 2) for line, v in zip(LINES, f.predicted_a, strict=True)},
            }
            for fid, f in allocation.fuses.items()
        },
    }


def _charger(c: ChargerJson) -> Charger:
    v = c.vehicle
    vehicle = (
        None
        if v is None
        else Vehicle(
            connected=v.connected,
            wants_energy=v.wants_energy,
            max_a=v.max_a,
            active_lines=None if v.active_lines is None else tuple(v.active_lines),
            drawing_a=v.drawing_a.values(),
            charging_since=v.charging_since,
            waiting_since=v.waiting_since,
            paused_at=v.paused_at,
            session_energy_wh=v.session_energy_wh,
            start_times=tuple(v.start_times),
        )
    )
    return Charger(
        id=c.id,
        fuse=c.fuse,
        lines=tuple(c.lines),
        max_a=c.max_a,
        min_a=c.min_a,
        setpoint_a=c.setpoint_a,
        vehicle=vehicle,
        safe_current_a=c.safe_current_a,
        drive=c.drive if c.drive is not None else (Drive.ACKNOWLEDGED if c.online else Drive.OFFLINE),
        may_draw_a=c.may_draw_a,
        weight=c.weight,
    )


def _charger_json(c: Charger) -> dict[str, Any]:
    v = c.vehicle
    return {
        "id": c.id,
        "fuse": c.fuse,
        "lines": list(c.lines),
        "min_a": c.min_a,
        "max_a": c.max_a,
        "setpoint_a": c.setpoint_a,
        "safe_current_a": c.safe_current_a,
        "online": c.online,
        "drive": str(c.drive),
        "may_draw_a": c.may_draw_a,
        "weight": c.weight,
        "vehicle": None
        if v is None
        else {
            "connected": v.connected,
            "wants_energy": v.wants_energy,
            "max_a": v.max_a,
            "active_lines": None if v.active_lines is None else list(v.active_lines),
            "drawing_a": _per_line(v.drawing_a),
            "charging_since": _time(v.charging_since),
            "waiting_since": _time(v.waiting_since),
            "paused_at": _time(v.paused_at),
            "session_energy_wh": v.session_energy_wh,
            "start_times": [_time(t) for t in v.start_times],
        },
    }


def _per_line(values: LineValues) -> dict[str, float | None]:
    return dict(zip(LINES, values, strict=True))


def _time(when: datetime | None) -> str | None:
    if when is None:
        return None
    text = when.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def policy_defaults() -> Mapping[str, Any]:
    """The documented policy defaults (docs/snapshot.md), for tools that print them."""
    return PolicyJson().model_dump()
