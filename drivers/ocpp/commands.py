"""Commands to one charging point, as the driver contracts have them (drivers/ocpp/handle.py).

Each waits for the charger's answer, at most `timeout_s`, and returns a CommandResult; none raises
for what a charger does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from drivers.contracts import CommandOutcome, CommandResult
from drivers.ocpp import profiles
from drivers.ocpp.session import CallFailed

if TYPE_CHECKING:
    from drivers.ocpp.station import Station


async def set_current(
    station: Station,
    connector_id: int,
    current_a: float,
    *,
    lease_s: float,
    phases: int | None,
    timeout_s: float,
) -> CommandResult:
    version = station.version()
    if version is None:
        return CommandResult(CommandOutcome.OFFLINE, "charger is not connected")
    if not station.provisioned:
        # The safe profile must be on the charger before it takes dynamic limits.
        return CommandResult(CommandOutcome.REJECTED, "charger not provisioned yet (safe profile pending)")
    if current_a != current_a or current_a < 0:
        return CommandResult(CommandOutcome.REJECTED, f"invalid current {current_a}")
    connector = station.connectors[connector_id]
    use_phases = phases if phases is not None else station.config.phases
    if use_phases not in (1, 2, 3):
        return CommandResult(CommandOutcome.REJECTED, f"invalid phases {phases}")
    quirks = station.config.quirks
    limit = profiles.to_limit(min(current_a, station.config.max_current_a), use_phases, quirks)
    payload = profiles.lease_profile_request(
        version,
        connector_id,
        min(current_a, station.config.max_current_a),
        lease_s=lease_s,
        phases=use_phases,
        quirks=quirks,
        now_utc=station.services.clock.utc_now(),
        transaction_id=connector.transaction_id,
    )
    result = await station.command("SetChargingProfile", payload, timeout_s=timeout_s)
    if result.ok:
        connector.applied_limit_a = profiles.limit_as_amps(limit, quirks)
        station.emit_status(connector)
    return result


async def remote_start(
    station: Station, connector_id: int, id_tag: str, *, timeout_s: float
) -> CommandResult:
    if station.version() == "1.6":
        payload: dict[str, Any] = {"connectorId": connector_id, "idTag": id_tag}
        return await station.command("RemoteStartTransaction", payload, timeout_s=timeout_s)
    payload = {
        "evseId": connector_id,
        "remoteStartId": int(station.services.clock.monotonic() * 1000) % 2_000_000_000,
        "idToken": {"idToken": id_tag, "type": "ISO14443"},
    }
    return await station.command("RequestStartTransaction", payload, timeout_s=timeout_s)


async def remote_stop(station: Station, connector_id: int, *, timeout_s: float) -> CommandResult:
    transaction_id = station.connectors[connector_id].transaction_id
    if transaction_id is None:
        return CommandResult(CommandOutcome.REJECTED, "no transaction on this connector")
    if station.version() == "1.6":
        return await station.command(
            "RemoteStopTransaction", {"transactionId": int(transaction_id)}, timeout_s=timeout_s
        )
    return await station.command(
        "RequestStopTransaction", {"transactionId": transaction_id}, timeout_s=timeout_s
    )


async def set_available(
    station: Station, connector_id: int, available: bool, *, timeout_s: float
) -> CommandResult:
    if station.version() == "1.6":
        payload: dict[str, Any] = {
            "connectorId": connector_id,
            "type": "Operative" if available else "Inoperative",
        }
    else:
        payload = {
            "operationalStatus": "Operative" if available else "Inoperative",
            "evse": {"id": connector_id},
        }
    return await station.command(
        "ChangeAvailability", payload, timeout_s=timeout_s, ok=("Accepted", "Scheduled")
    )


async def reset(station: Station, *, hard: bool, timeout_s: float) -> CommandResult:
    if station.version() == "1.6":
        payload = {"type": "Hard" if hard else "Soft"}
    else:
        payload = {"type": "Immediate" if hard else "OnIdle"}
    return await station.command("Reset", payload, timeout_s=timeout_s, ok=("Accepted", "Scheduled"))


async def trigger(
    station: Station, message: str, connector_id: int | None, *, timeout_s: float
) -> CommandResult:
    payload: dict[str, Any] = {"requestedMessage": message}
    if connector_id is not None:
        if station.version() == "1.6":
            payload["connectorId"] = connector_id
        else:
            payload["evse"] = {"id": connector_id}
    return await station.command("TriggerMessage", payload, timeout_s=timeout_s)


async def configure(station: Station, key: str, value: str, *, timeout_s: float) -> CommandResult:
    """1.6 ChangeConfiguration key; 2.0.1 SetVariables with key `Component.Variable`."""
    if station.version() == "1.6":
        return await station.command(
            "ChangeConfiguration",
            {"key": key, "value": value},
            timeout_s=timeout_s,
            ok=("Accepted", "RebootRequired"),
        )
    component, _, variable = key.partition(".")
    if not variable:
        return CommandResult(CommandOutcome.REJECTED, "2.0.1 keys are Component.Variable")
    try:
        answer = await station.call(
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "component": {"name": component},
                        "variable": {"name": variable},
                        "attributeValue": value,
                    }
                ]
            },
            timeout_s=timeout_s,
        )
    except CallFailed as failed:
        return CommandResult(failed.outcome, failed.detail)
    results = answer.get("setVariableResult", [])
    status = str(results[0].get("attributeStatus", "")) if results else ""
    outcome = CommandOutcome.ACCEPTED if status in ("Accepted", "RebootRequired") else CommandOutcome.REJECTED
    return CommandResult(outcome, status)


async def read_configuration(
    station: Station, keys: tuple[str, ...], *, timeout_s: float
) -> Mapping[str, str | None]:
    """1.6 GetConfiguration; 2.0.1 GetVariables (`Component.Variable`). Unknown keys map to None.
    Raises CallFailed."""
    if station.version() == "1.6":
        answer = await station.call(
            "GetConfiguration", {"key": list(keys)} if keys else {}, timeout_s=timeout_s
        )
        found: dict[str, str | None] = {str(k): None for k in answer.get("unknownKey", [])}
        for item in answer.get("configurationKey", []):
            found[str(item["key"])] = item.get("value")
        return found
    requests = []
    for key in keys:
        component, _, variable = key.partition(".")
        requests.append({"component": {"name": component}, "variable": {"name": variable}})
    answer = await station.call("GetVariables", {"getVariableData": requests}, timeout_s=timeout_s)
    values: dict[str, str | None] = {}
    for item in answer.get("getVariableResult", []):
        key = f"{item['component']['name']}.{item['variable']['name']}"
        values[key] = item.get("attributeValue") if item.get("attributeStatus") == "Accepted" else None
    return values
