"""OCPP 2.0.1 requests from a charging station, answered for one Station.

EVSE ids play the role of 1.6 connector ids. Transaction ids are the station's own strings; a replayed
Started event gets the same answer and no second TransactionStarted, an Ended event closes a
transaction at most once.
"""

from __future__ import annotations

from typing import Any

import structlog

from drivers.contracts import ConnectorState, TransactionStarted, TransactionStopped
from drivers.ocpp import profiles, rpc
from drivers.ocpp.authorization import AuthDecision
from drivers.ocpp.counters import C_REPLAYED_STARTS, C_REPLAYED_STOPS
from drivers.ocpp.handlers16 import apply_samples, samples_or_fault
from drivers.ocpp.handlers_common import CommonHandlers
from drivers.ocpp.provisioning import check_transaction
from drivers.ocpp.session import Handler
from drivers.ocpp.station import Connector, TransactionRecord, parse_time_or_fault

log = structlog.get_logger("drivers.ocpp.v201")

_CONNECTOR_STATUS = {
    "Available": ConnectorState.AVAILABLE,
    "Occupied": ConnectorState.PREPARING,
    "Reserved": ConnectorState.RESERVED,
    "Unavailable": ConnectorState.UNAVAILABLE,
    "Faulted": ConnectorState.FAULTED,
}
_IDLE = frozenset({ConnectorState.AVAILABLE, ConnectorState.UNAVAILABLE, ConnectorState.FAULTED})
_CHARGING_STATE = {
    "Charging": ConnectorState.CHARGING,
    "EVConnected": ConnectorState.PREPARING,
    "SuspendedEV": ConnectorState.SUSPENDED_EV,
    "SuspendedEVSE": ConnectorState.SUSPENDED_EVSE,
    "Idle": ConnectorState.AVAILABLE,
}


def id_token_info(decision: AuthDecision) -> dict[str, Any]:
    info: dict[str, Any] = {"status": decision.status.value}
    if decision.expiry_utc is not None:
        info["cacheExpiryDateTime"] = profiles.ocpp_time(decision.expiry_utc)
    if decision.group_id is not None:
        info["groupIdToken"] = {"idToken": decision.group_id[:36], "type": "Central"}
    return info


class V201Handlers(CommonHandlers):
    def routes(self) -> dict[str, Handler]:
        return {
            "BootNotification": self.boot_notification,
            "Heartbeat": self.heartbeat,
            "StatusNotification": self.status_notification,
            "Authorize": self.authorize,
            "TransactionEvent": self.transaction_event,
            "MeterValues": self.meter_values,
            "DataTransfer": self.data_transfer,
            "NotifyReport": self.empty,
            "NotifyEvent": self.empty,
            "NotifyChargingLimit": self.empty,
            "ReportChargingProfiles": self.empty,
            "FirmwareStatusNotification": self.empty,
            "LogStatusNotification": self.empty,
            "SecurityEventNotification": self.security_event,
        }

    def boot_notification(self, payload: dict[str, Any]) -> dict[str, Any]:
        station = self.station
        station.touch()
        station.boot_info = dict(payload)
        config = station.services.config
        accepted = station.provisioned
        log.info(
            "ocpp.boot",
            identity=station.identity,
            accepted=accepted,
            vendor=payload["chargingStation"].get("vendorName"),
            reason=payload.get("reason"),
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
        station.check_id(payload["connectorId"])
        connector = station.connector(payload["evseId"], allow_zero=True)
        station.touch()
        if connector is None:
            return {}
        state = _CONNECTOR_STATUS[payload["connectorStatus"]]
        if state is ConnectorState.PREPARING and connector.state in _CHARGING_STATE.values():
            state = connector.state if connector.state is not ConnectorState.AVAILABLE else state
        connector.state = state
        if state in _IDLE and connector.transaction_id is not None:
            # A 2.0.1 transaction may outlive the cable (TxStopPoint): only the station can say.
            station.spawn(check_transaction(station, connector), f"ocpp-tx-check-{station.identity}")
        station.emit_status(connector)
        return {}

    def authorize(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.station.touch()
        return {"idTokenInfo": id_token_info(self.station.authorize(payload["idToken"]["idToken"]))}

    def _connector(self, payload: dict[str, Any], transaction_id: str) -> Connector | None:
        evse = payload.get("evse")
        if isinstance(evse, dict):
            if "connectorId" in evse:
                self.station.check_id(evse["connectorId"])
            return self.station.connector(evse["id"])
        return self.station.connector_for_transaction(transaction_id)

    async def transaction_event(self, payload: dict[str, Any]) -> dict[str, Any]:
        station = self.station
        info = payload["transactionInfo"]
        transaction_id: str = info["transactionId"]
        event_type = payload["eventType"]
        moment = parse_time_or_fault(payload["timestamp"])
        if type(payload["seqNo"]) is not int or payload["seqNo"] < 0:
            raise rpc.OcppFault("PropertyConstraintViolation", "seqNo must be >= 0", rpc.C_BAD_VALUES)
        connector = self._connector(payload, transaction_id)
        samples = samples_or_fault(payload.get("meterValue"), station.config.phases)
        token = payload.get("idToken")
        id_tag = token["idToken"] if isinstance(token, dict) else None
        reply: dict[str, Any] = {}
        if id_tag is not None:
            reply["idTokenInfo"] = id_token_info(station.authorize(id_tag))
        received = station.touch()
        if connector is None:
            return reply
        # Registers carried by this event, oldest first. A Started/Ended event without one has no
        # start/stop register: it is reported as None, never as 0 or as some earlier reading.
        energies = [
            s.energy_wh for s in sorted(samples, key=lambda s: s.timestamp_utc) if s.energy_wh is not None
        ]
        record = station.transactions.get(transaction_id)
        meter_stop = energies[-1] if energies else None
        if event_type == "Ended":
            meter_start = record.meter_start_wh if record is not None else None
            if meter_stop is not None and meter_start is not None and meter_stop < meter_start:
                raise rpc.OcppFault(
                    "PropertyConstraintViolation",
                    f"energy at end {meter_stop} is below energy at start {meter_start}",
                    rpc.C_BAD_VALUES,
                )
        if samples:
            await apply_samples(station, connector, samples, transaction_id)
        charging_state = info.get("chargingState")
        if charging_state in _CHARGING_STATE:
            connector.state = _CHARGING_STATE[charging_state]
        if event_type == "Started":
            await self._started(connector, transaction_id, id_tag, energies, moment, received)
        elif event_type == "Updated" and record is None:
            # A transaction that started before this process (a restart): track it, but don't invent
            # a start with today's register; the ledger has the real one.
            station.remember_transaction(transaction_id, TransactionRecord(connector.connector_id, None))
            connector.transaction_id = transaction_id
            connector.id_tag = id_tag if id_tag is not None else connector.id_tag
            log.info("ocpp.transaction_adopted", identity=station.identity, transaction_id=transaction_id)
        elif event_type == "Ended":
            await self._ended(connector, transaction_id, id_tag, meter_stop, info, moment, received)
        elif id_tag is not None and connector.id_tag is None:
            connector.id_tag = id_tag
        station.emit_status(connector)
        return reply

    async def _started(
        self,
        connector: Connector,
        transaction_id: str,
        id_tag: str | None,
        energies: list[float],
        moment: Any,
        received: Any,
    ) -> None:
        station = self.station
        replayed = transaction_id in station.transactions
        if replayed:
            station.services.counters.inc(C_REPLAYED_STARTS)
        meter_start = energies[0] if energies else None
        if meter_start is None and not replayed:
            log.warning(
                "ocpp.start_without_register", identity=station.identity, transaction_id=transaction_id
            )
        # Recorded before it is answered, a replay too (see the 1.6 StartTransaction).
        await station.services.emit_durably(
            TransactionStarted(
                charger_id=connector.charger_id,
                transaction_id=transaction_id,
                id_tag=id_tag,
                meter_start_wh=meter_start,
                started_utc=moment,
                received=received,
            )
        )
        if replayed:
            return
        station.remember_transaction(transaction_id, TransactionRecord(connector.connector_id, meter_start))
        connector.transaction_id = transaction_id
        connector.id_tag = id_tag
        connector.meter_start_wh = meter_start

    async def _ended(
        self,
        connector: Connector,
        transaction_id: str,
        id_tag: str | None,
        meter_stop: float | None,
        info: dict[str, Any],
        moment: Any,
        received: Any,
    ) -> None:
        station = self.station
        record = station.transactions.get(transaction_id)
        if record is not None and record.ended:
            # Recorded again all the same: the first one's recording may have failed.
            station.services.counters.inc(C_REPLAYED_STOPS)
        if record is None:
            record = TransactionRecord(connector.connector_id, None)
            station.remember_transaction(transaction_id, record)
        if meter_stop is None and not record.ended:
            log.warning(
                "ocpp.stop_without_register", identity=station.identity, transaction_id=transaction_id
            )
        await station.services.emit_durably(
            TransactionStopped(
                charger_id=connector.charger_id,
                transaction_id=transaction_id,
                id_tag=id_tag if id_tag is not None else connector.id_tag,
                meter_stop_wh=meter_stop,
                stopped_utc=moment,
                reason=str(info.get("stoppedReason", "Local")),
                received=received,
            )
        )
        record.ended = True
        if connector.transaction_id == transaction_id:
            connector.transaction_id = None
            connector.id_tag = None
            connector.meter_start_wh = None

    async def meter_values(self, payload: dict[str, Any]) -> dict[str, Any]:
        station = self.station
        connector = station.connector(payload["evseId"], allow_zero=True)
        samples = samples_or_fault(payload["meterValue"], station.config.phases)
        if connector is None:
            station.touch()
            return {}
        await apply_samples(station, connector, samples, connector.transaction_id)
        station.emit_status(connector)
        return {}
