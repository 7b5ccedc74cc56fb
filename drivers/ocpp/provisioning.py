"""Provisioning a charger on each new connection, and asking it what it has.

Before a charger takes dynamic limits (and before its boot is answered Accepted) it gets its meter
value intervals and its permanent safe profile; then it is asked for its connectors' states and for
a reading of every transaction known to be open on it (docs/ocpp.md, docs/sessions.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from drivers.ocpp import profiles
from drivers.ocpp.counters import C_PROVISIONING_FAILURES
from drivers.ocpp.session import CallFailed, RpcSession

if TYPE_CHECKING:
    from drivers.ocpp.station import Connector, Station

log = structlog.get_logger("drivers.ocpp.provisioning")

METER_MEASURANDS = "Energy.Active.Import.Register,Current.Import,Power.Active.Import"
ALIGNED_MEASURANDS = "Energy.Active.Import.Register"


async def provision_unless_booted(station: Station) -> None:
    # A 1.6 charger that only lost its connection does not boot again; provision it anyway.
    await station.services.clock.sleep(station.services.config.provision_unbooted_after_s)
    start_provisioning(station)


def start_provisioning(station: Station) -> None:
    if station.provisioning or station.provisioned or not station.connected:
        return
    station.provisioning = True
    station.spawn(_provision(station), f"ocpp-provision-{station.identity}")


async def _provision(station: Station) -> None:
    config = station.services.config
    session = station.session
    if session is None:
        return
    try:
        while not session.closed:
            if await _provision_once(station, session):
                break
            station.services.counters.inc(C_PROVISIONING_FAILURES)
            await station.services.clock.sleep(config.boot_retry_interval_s)
    finally:
        station.provisioning = False
    if station.session is not session or session.closed:
        return  # the connection is gone; a newer one provisions itself
    station.ready.set()
    log.info("ocpp.provisioned", identity=station.identity, safe_current_a=station.config.safe_current_a)
    for connector in station.connectors.values():
        station.emit_status(connector)
    if station.boot_pending:
        # Ask for the boot again now instead of waiting out the Pending interval.
        await _tolerant(station, session, "TriggerMessage", {"requestedMessage": "BootNotification"})
    await _reconcile(station, session)


async def _reconcile(station: Station, session: RpcSession) -> None:
    """Ask a (re)connected charger what it has, so that nothing is concluded from what it has
    not said yet: its connectors' states and, for every transaction known to be open on it,
    a fresh reading (1.6 MeterValues; 2.0.1 GetTransactionStatus, then the transaction's own
    TransactionEvent). A charger that has been charging while we were away reports the
    register it reached, which carries the energy of the gap."""
    if session.version == "1.6":
        await _tolerant(station, session, "TriggerMessage", {"requestedMessage": "StatusNotification"})
        for connector in station.connectors.values():
            if connector.transaction_id is not None:
                await _tolerant(
                    station,
                    session,
                    "TriggerMessage",
                    {"requestedMessage": "MeterValues", "connectorId": connector.connector_id},
                )
        return
    for connector in station.connectors.values():
        await _tolerant(
            station,
            session,
            "TriggerMessage",
            {
                "requestedMessage": "StatusNotification",
                "evse": {"id": connector.connector_id, "connectorId": 1},
            },
        )
        if connector.transaction_id is not None:
            await check_transaction(station, connector, session)


async def check_transaction(
    station: Station, connector: Connector, session: RpcSession | None = None
) -> None:
    """2.0.1: is the connector's transaction still running? GetTransactionStatus answers for
    the station; only "not ongoing, nothing queued" ends it here - its Ended event will not
    come. Ongoing: the station is asked for the transaction's event (state and register)."""
    session = session or station.session
    transaction_id = connector.transaction_id
    if session is None or transaction_id is None:
        return
    answer = await _tolerant(station, session, "GetTransactionStatus", {"transactionId": transaction_id})
    if answer is None or connector.transaction_id != transaction_id:
        return
    if answer.get("ongoingIndicator") is True:
        await _tolerant(
            station,
            session,
            "TriggerMessage",
            {"requestedMessage": "TransactionEvent", "evse": {"id": connector.connector_id}},
        )
    elif answer.get("ongoingIndicator") is False and answer.get("messagesInQueue") is False:
        station.transaction_gone(connector, "GetTransactionStatus: not ongoing, nothing queued")
        station.emit_status(connector)


async def _tolerant(
    station: Station, session: RpcSession, action: str, payload: dict[str, Any]
) -> dict[str, Any] | None:
    """A call whose refusal we can live with; None if it failed."""
    try:
        return await session.call(action, payload, timeout_s=station.services.config.call_timeout_s)
    except CallFailed as failed:
        log.info("ocpp.optional_call_failed", identity=station.identity, action=action, detail=failed.detail)
        return None


async def _provision_once(station: Station, session: RpcSession) -> bool:
    config = station.services.config
    if session.version == "1.6":
        settings = (
            ("MeterValueSampleInterval", str(config.meter_value_sample_interval_s)),
            ("ClockAlignedDataInterval", str(config.clock_aligned_data_interval_s)),
            ("MeterValuesSampledData", METER_MEASURANDS),
            ("MeterValuesAlignedData", ALIGNED_MEASURANDS),
        )
        for key, value in settings:
            answer = await _tolerant(station, session, "ChangeConfiguration", {"key": key, "value": value})
            log.info(
                "ocpp.configured", identity=station.identity, key=key, status=answer and answer.get("status")
            )
    else:
        variables = [
            ("SampledDataCtrlr", "TxUpdatedInterval", str(config.meter_value_sample_interval_s)),
            ("SampledDataCtrlr", "TxUpdatedMeasurands", METER_MEASURANDS),
            ("AlignedDataCtrlr", "Interval", str(config.clock_aligned_data_interval_s)),
            ("AlignedDataCtrlr", "Measurands", ALIGNED_MEASURANDS),
        ]
        answer = await _tolerant(
            station,
            session,
            "SetVariables",
            {
                "setVariableData": [
                    {"component": {"name": c}, "variable": {"name": v}, "attributeValue": value}
                    for c, v, value in variables
                ]
            },
        )
        log.info("ocpp.configured", identity=station.identity, answer=answer)
        await _tolerant(
            station,
            session,
            "SetChargingProfile",
            profiles.station_max_profile_request(
                station.config.max_current_a,
                station.config.phases,
                station.config.quirks,
                station.services.clock.utc_now(),
            ),
        )
    result = await station.install_safe_limit(
        station.config.safe_current_a, timeout_s=config.call_timeout_s, session=session
    )
    if not result.ok:
        log.warning("ocpp.safe_profile_failed", identity=station.identity, detail=result.detail)
    return result.ok
