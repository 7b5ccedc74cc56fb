"""OCPP 1.6J requests from a charger, answered for one Station."""

from __future__ import annotations

from typing import Any

import structlog

from drivers.contracts import ConnectorState, EnergySample, TransactionStarted, TransactionStopped
from drivers.ocpp import profiles, rpc
from drivers.ocpp.authorization import AuthDecision
from drivers.ocpp.counters import C_REPLAYED_STARTS, C_REPLAYED_STOPS, C_UNKNOWN_TRANSACTIONS
from drivers.ocpp.handlers_common import CommonHandlers
from drivers.ocpp.meter import BadMeterValue, MeterSample, parse_meter_values
from drivers.ocpp.session import Handler
from drivers.ocpp.station import Connector, Station, TransactionRecord, parse_time_or_fault

log = structlog.get_logger("drivers.ocpp.v16")

# States in which a connector has no transaction.
_NO_TRANSACTION = frozenset({ConnectorState.AVAILABLE, ConnectorState.UNAVAILABLE})

_STATES = {
    "Available": ConnectorState.AVAILABLE,
    "Preparing": ConnectorState.PREPARING,
    "Charging": ConnectorState.CHARGING,
    "SuspendedEV": ConnectorState.SUSPENDED_EV,
    "SuspendedEVSE": ConnectorState.SUSPENDED_EVSE,
    "Finishing": ConnectorState.FINISHING,
    "Reserved": ConnectorState.RESERVED,
    "Unavailable": ConnectorState.UNAVAILABLE,
    "Faulted": ConnectorState.FAULTED,
}


def id_tag_info(decision: AuthDecision) -> dict[str, Any]:
    info: dict[str, Any] = {"status": decision.status.value}
    if decision.expiry_utc is not None:
        info["expiryDate"] = profiles.ocpp_time(decision.expiry_utc)
    if decision.group_id is not None:
        info["parentIdTag"] = decision.group_id[:20]
    return info


def samples_or_fault(meter_values: Any, phases: int) -> list[MeterSample]:
    try:
        return parse_meter_values(meter_values if isinstance(meter_values, list) else [], phases=phases)
    except BadMeterValue as exc:
        raise rpc.OcppFault("PropertyConstraintViolation", str(exc), rpc.C_BAD_VALUES) from None


async def apply_samples(
    station: Station, connector: Connector, samples: list[MeterSample], transaction_id: str | None
) -> None:
    """Update the connector's measurements from the newest samples and emit the energy readings.

    Readings of a transaction are transaction messages (1.6 MeterValues with a transactionId, 2.0.1
    TransactionEvent): the charger does not send them again once answered, so they are recorded
    before the answer, like the start and the stop. Readings outside a transaction are not billing."""
    received = station.touch()
    readings = []
    for sample in sorted(samples, key=lambda s: s.timestamp_utc):
        if any(c is not None for c in sample.currents_a):
            connector.currents_a = sample.currents_a
            connector.currents_received = received
        if sample.power_w is not None:
            connector.power_w = sample.power_w
        if sample.energy_wh is not None:
            connector.energy_wh = sample.energy_wh
            readings.append(
                EnergySample(
                    charger_id=connector.charger_id,
                    transaction_id=transaction_id,
                    energy_register_wh=sample.energy_wh,
                    measured_utc=sample.timestamp_utc,
                    received=received,
                    clock_aligned=sample.clock_aligned,
                )
            )
    if transaction_id is None:
        for reading in readings:
            station.services.emit(reading)
    elif readings:
        await station.services.emit_durably(*readings)


class V16Handlers(CommonHandlers):
    def routes(self) -> dict[str, Handler]:
        return {
            "BootNotification": self.boot_notification,
            "Heartbeat": self.heartbeat,
            "StatusNotification": self.status_notification,
            "Authorize": self.authorize,
            "StartTransaction": self.start_transaction,
            "StopTransaction": self.stop_transaction,
            "MeterValues": self.meter_values,
            "DataTransfer": self.data_transfer,
            "DiagnosticsStatusNotification": self.empty,
            "FirmwareStatusNotification": self.empty,
            "SecurityEventNotification": self.security_event,
        }

    def boot_notification(self, payload: dict[str, Any]) -> dict[str, Any]:
        station = self.station
        station.touch()
        station.boot_info = dict(payload)
        config = station.services.config
        accepted = station.provisioned
        log.info(
            "ocpp.boot", identity=station.identity, accepted=accepted, vendor=payload.get("chargePointVendor")
        )
        station.after_boot(accepted)
        return {
            "status": "Accepted" if accepted else "Pending",
            "currentTime": self._now(),
            "interval": config.heartbeat_interval_s if accepted else config.boot_retry_interval_s,
        }

    def heartbeat(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.station.touch()
        return {"currentTime": self._now()}

    def status_notification(self, payload: dict[str, Any]) -> dict[str, Any]:
        station = self.station
        connector = station.connector(payload["connectorId"], allow_zero=True)
        station.touch()
        if connector is None:
            return {}
        connector.state = _STATES[payload["status"]]
        connector.error_code = payload.get("errorCode")
        if connector.state in _NO_TRANSACTION and connector.transaction_id is not None:
            # Available and Unavailable are states without a transaction (1.6 §4.9): if its
            # StopTransaction is still queued on the charger, it completes the session when it comes.
            station.transaction_gone(connector, f"StatusNotification {payload['status']}")
        if connector.state is ConnectorState.AVAILABLE:
            connector.currents_a = (None, None, None)
            connector.currents_received = None
        station.emit_status(connector)
        return {}

    def authorize(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.station.touch()
        return {"idTagInfo": id_tag_info(self.station.authorize(payload["idTag"]))}

    async def start_transaction(self, payload: dict[str, Any]) -> dict[str, Any]:
        station = self.station
        connector = station.connector(payload["connectorId"])
        if connector is None:
            raise rpc.OcppFault("PropertyConstraintViolation", "unknown connector", rpc.C_BAD_VALUES)
        meter_start = payload["meterStart"]
        if meter_start < 0:
            raise rpc.OcppFault("PropertyConstraintViolation", "meterStart must be >= 0", rpc.C_BAD_VALUES)
        started_utc = parse_time_or_fault(payload["timestamp"])
        id_tag = payload["idTag"]
        decision = station.authorize(id_tag)
        number = await station.services.transaction_ids.id_for_start(
            connector.charger_id, id_tag, float(meter_start), started_utc
        )
        transaction_id = str(number)
        received = station.touch()
        replayed = transaction_id in station.transactions
        if replayed:
            station.services.counters.inc(C_REPLAYED_STARTS)
            log.info("ocpp.start_replayed", identity=station.identity, transaction_id=transaction_id)
        # Recorded before it is answered, the replay too: a replay may be the charger's retry after
        # a start whose recording failed, and the ledger takes a duplicate as one.
        await station.services.emit_durably(
            TransactionStarted(
                charger_id=connector.charger_id,
                transaction_id=transaction_id,
                id_tag=id_tag,
                meter_start_wh=float(meter_start),
                started_utc=started_utc,
                received=received,
            )
        )
        if not replayed:
            station.remember_transaction(
                transaction_id, TransactionRecord(connector.connector_id, float(meter_start))
            )
            connector.transaction_id = transaction_id
            connector.id_tag = id_tag
            connector.meter_start_wh = float(meter_start)
            connector.energy_wh = float(meter_start)
            station.emit_status(connector)
        return {"transactionId": number, "idTagInfo": id_tag_info(decision)}

    async def stop_transaction(self, payload: dict[str, Any]) -> dict[str, Any]:
        station = self.station
        number = payload["transactionId"]
        transaction_id = str(number)
        meter_stop = payload["meterStop"]
        stopped_utc = parse_time_or_fault(payload["timestamp"])
        record = station.transactions.get(transaction_id)
        connector = station.connector_for_transaction(transaction_id)
        meter_start = record.meter_start_wh if record is not None else None
        if meter_stop < 0 or (meter_start is not None and meter_stop < meter_start):
            raise rpc.OcppFault(
                "PropertyConstraintViolation",
                f"meterStop {meter_stop} is below meterStart {meter_start}",
                rpc.C_BAD_VALUES,
            )
        samples = samples_or_fault(payload.get("transactionData"), station.config.phases)
        id_tag = payload.get("idTag")
        reply: dict[str, Any] = {}
        if id_tag is not None:
            reply["idTagInfo"] = id_tag_info(station.authorize(id_tag))
        stopped = await station.services.transaction_ids.stop(number, float(meter_stop), stopped_utc)
        received = station.touch()
        if not stopped:
            counter = C_REPLAYED_STOPS if record is not None else C_UNKNOWN_TRANSACTIONS
            station.services.counters.inc(counter)
            log.info(
                "ocpp.stop_replayed", identity=station.identity, transaction_id=transaction_id, why=counter
            )
        if connector is None:
            station.services.counters.inc(C_UNKNOWN_TRANSACTIONS)
            log.warning(
                "ocpp.stop_without_connector", identity=station.identity, transaction_id=transaction_id
            )
            return reply
        if samples:
            await apply_samples(station, connector, samples, transaction_id)
        # Recorded before it is answered, a replay too: the charger repeats a stop whose answer it
        # did not get, and the first one's recording may be what failed. The ledger takes a
        # duplicate as one.
        await station.services.emit_durably(
            TransactionStopped(
                charger_id=connector.charger_id,
                transaction_id=transaction_id,
                id_tag=id_tag if id_tag is not None else connector.id_tag,
                meter_stop_wh=float(meter_stop),
                stopped_utc=stopped_utc,
                reason=str(payload.get("reason", "Local")),
                received=received,
            )
        )
        if record is not None:
            record.ended = True
        connector.energy_wh = float(meter_stop)
        if connector.transaction_id == transaction_id:
            connector.transaction_id = None
            connector.id_tag = None
            connector.meter_start_wh = None
        station.emit_status(connector)
        return reply

    async def meter_values(self, payload: dict[str, Any]) -> dict[str, Any]:
        station = self.station
        connector = station.connector(payload["connectorId"], allow_zero=True)
        samples = samples_or_fault(payload["meterValue"], station.config.phases)
        if connector is None:
            station.touch()
            return {}
        raw_tx = payload.get("transactionId")
        transaction_id = str(raw_tx) if raw_tx is not None else connector.transaction_id
        await apply_samples(station, connector, samples, transaction_id)
        station.emit_status(connector)
        return {}
