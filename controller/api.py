"""The daemon's methods on the local control socket (`sitectl status`, `sessions`, `chargers`,
`reload`)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING, Any

from controller.allocation.snapshot_json import allocation_to_json, snapshot_to_json
from controller.localapi.protocol import INVALID_PARAMS
from controller.localapi.server import ApiError, MethodRegistry, Params
from controller.sessions.model import parse_utc, session_to_json

if TYPE_CHECKING:
    from controller.app import Daemon


def register_methods(registry: MethodRegistry, daemon: Daemon) -> None:
    async def status(params: Params) -> Any:
        return _status(daemon)

    async def snapshot(params: Params) -> Any:
        loop = _loop(daemon)
        return snapshot_to_json(loop.snapshot)

    async def sessions(params: Params) -> Any:
        ledger = daemon.ledger
        if ledger is None:
            raise ApiError("unavailable", "the ledger is not open yet")
        since = _time(params, "since")
        until = _time(params, "until")
        found = await ledger.list_sessions(since, until)
        return [session_to_json(s) for s in found]

    async def pending(params: Params) -> Any:
        csms = daemon.csms
        if csms is None:
            return []
        return [
            {
                "identity": p.identity,
                "address": p.address,
                "first_seen_utc": p.first_seen_utc.isoformat(),
                "last_seen_utc": p.last_seen_utc.isoformat(),
                "connected": p.connected,
                "vendor": p.vendor,
                "model": p.model,
                "serial": p.serial,
            }
            for p in csms.pending()
        ]

    async def reload(params: Params) -> Any:
        from controller.app import ReloadUnsupported
        from controller.settings import ConfigError

        try:
            settings = daemon.request_reload()
        except ReloadUnsupported as exc:
            raise ApiError("unsupported", str(exc)) from None
        except ConfigError as exc:
            raise ApiError("invalid_config", str(exc)) from None
        return {
            "reloading": True,
            "chargers": [c.id for c in settings.chargers],
            "fuses": len(settings.fuses),
        }

    registry.add("status", status)
    registry.add("snapshot", snapshot)
    registry.add("sessions", sessions)
    registry.add("pending", pending)
    registry.add("reload", reload)


def _loop(daemon: Daemon) -> Any:
    loop = daemon.loop
    if loop is None or loop.last is None:
        raise ApiError("unavailable", "the control loop has not run yet")
    return loop.last


def _status(daemon: Daemon) -> dict[str, Any]:
    cycle = _loop(daemon)
    site = daemon.settings.site
    counters: dict[str, Any] = {
        "loop_cycles": daemon.loop.cycles if daemon.loop else 0,
        "loop_errors": daemon.loop.errors if daemon.loop else 0,
        "session_write_errors": 0 if daemon.intake is None else daemon.intake.write_errors,
    }
    if daemon.han is not None:
        counters["han"] = dict(daemon.han.counters)
    if daemon.site is not None and daemon.site.base_load is not None:
        counters["three_wire_il2"] = dict(daemon.site.base_load.three_wire_counts)
        counters["base_load_held_cycles"] = daemon.site.base_load.held_cycles
    if daemon.csms is not None:
        counters["ocpp"] = dict(daemon.csms.counters)
    if daemon.modbus is not None and daemon.modbus.buses:
        counters["modbus"] = {
            "buses": {key: dataclasses.asdict(bus.counters) for key, bus in daemon.modbus.buses.items()},
            "chargers": {cid: dataclasses.asdict(d.counters) for cid, d in daemon.modbus.chargers.items()},
        }
    if daemon.dispatcher is not None:
        c = daemon.dispatcher.counters
        counters["dispatch"] = {
            "sent": c.sent,
            "acked": c.acked,
            "failed": c.failed,
            "refreshes": c.refreshes,
        }
    if daemon.recorder is not None:
        counters["sessions"] = {str(k): v for k, v in daemon.recorder.counters.items()}
    chargers: dict[str, Any] = {}
    if daemon.site is not None:
        for charger_id in daemon.site.charger_ids():
            status = daemon.site.status(charger_id)
            chargers[charger_id] = (
                None
                if status is None
                else {
                    "online": status.online,
                    "state": str(status.state),
                    "measured_current_a": list(status.measured_current_a),
                    "energy_register_wh": status.energy_register_wh,
                    "id_tag": status.id_tag,
                    "transaction_id": status.transaction_id,
                }
            )
    return {
        "site": {"id": site.id, "timezone": site.timezone},
        "cycle": {
            "number": cycle.number,
            "trigger": cycle.trigger,
            "compute_ms": round(cycle.compute_s * 1000, 3),
        },
        "uplink": None if daemon.uplink is None else {"connected": daemon.uplink.connected},
        "snapshot": snapshot_to_json(cycle.snapshot),
        "allocation": allocation_to_json(cycle.allocation),
        # What the pacer commanded this cycle (the allocation's shares, moved to at its pace).
        "commanded": {
            cid: {"current_a": round(paced.current_a, 2), "paced_by": paced.reason}
            for cid, paced in cycle.paced.items()
        },
        "chargers": chargers,
        "counters": counters,
    }


def _time(params: Params, key: str) -> datetime | None:
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(INVALID_PARAMS, f"{key} must be an ISO 8601 UTC time")
    try:
        return parse_utc(value)
    except ValueError as exc:
        raise ApiError(INVALID_PARAMS, f"{key}: {exc}") from None
