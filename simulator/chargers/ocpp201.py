"""OCPP 2.0.1 dialect of the virtual charger: one connector per EVSE, transactions that start when
the driver is authorized (TxStartPoint "Authorized") and end when the cable is unplugged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simulator.chargers.base import Connector, Outgoing, Status, StopReason, Transaction, VirtualCharger, iso
from simulator.chargers.ocpp16 import _bool, _measurands, _non_negative_int
from simulator.chargers.rpc import OcppError, Payload, Version, require
from simulator.chargers.smart import PURPOSE_NAMES, parse_profile
from simulator.chargers.spec import Settings

KNOWN_UNSUPPORTED = frozenset(
    {
        "CancelReservation",
        "CertificateSigned",
        "ClearCache",
        "ClearDisplayMessage",
        "ClearVariableMonitoring",
        "CostUpdated",
        "CustomerInformation",
        "DeleteCertificate",
        "GetBaseReport",
        "GetChargingProfiles",
        "GetCompositeSchedule",
        "GetDisplayMessages",
        "GetInstalledCertificateIds",
        "GetLocalListVersion",
        "GetLog",
        "GetMonitoringReport",
        "GetReport",
        "InstallCertificate",
        "PublishFirmware",
        "ReserveNow",
        "SendLocalList",
        "SetDisplayMessage",
        "SetMonitoringBase",
        "SetMonitoringLevel",
        "SetNetworkProfile",
        "SetVariableMonitoring",
        "UnlockConnector",
        "UnpublishFirmware",
        "UpdateFirmware",
    }
)

CHARGING_STATE: dict[str, str] = {
    "Charging": "Charging",
    "SuspendedEV": "SuspendedEV",
    "SuspendedEVSE": "SuspendedEVSE",
    "Preparing": "EVConnected",
    "Finishing": "EVConnected",
}
STOPPED_REASON: dict[str, tuple[str, str]] = {
    # neutral reason -> (triggerReason, stoppedReason)
    "EVDisconnected": ("EVCommunicationLost", "EVDisconnected"),
    "Remote": ("RemoteStop", "Remote"),
    "HardReset": ("ResetCommand", "ImmediateReset"),
    "SoftReset": ("ResetCommand", "ImmediateReset"),
    "PowerLoss": ("AbnormalCondition", "PowerLoss"),
    "DeAuthorized": ("Deauthorized", "DeAuthorized"),
    "Local": ("StopAuthorized", "Local"),
}


@dataclass(frozen=True, slots=True)
class Variable:
    read: Callable[[Settings], str]
    write: Callable[[Settings, str], None] | None = None


def _set(attr: str, parse: Callable[[str], Any]) -> Callable[[Settings, str], None]:
    def write(settings: Settings, value: str) -> None:
        setattr(settings, attr, parse(value))

    return write


# (component, variable, instance) -> accessor
VARIABLES: dict[tuple[str, str, str | None], Variable] = {
    ("OCPPCommCtrlr", "HeartbeatInterval", None): Variable(
        lambda s: str(int(s.heartbeat_interval_s)), _set("heartbeat_interval_s", _non_negative_int)
    ),
    ("OCPPCommCtrlr", "MessageAttempts", "TransactionEvent"): Variable(
        lambda s: str(s.message_attempts), _set("message_attempts", _non_negative_int)
    ),
    ("OCPPCommCtrlr", "MessageAttemptInterval", "TransactionEvent"): Variable(
        lambda s: str(int(s.message_retry_interval_s)), _set("message_retry_interval_s", _non_negative_int)
    ),
    ("SampledDataCtrlr", "Enabled", None): Variable(lambda s: "true"),
    ("SampledDataCtrlr", "TxUpdatedInterval", None): Variable(
        lambda s: str(int(s.sample_interval_s)), _set("sample_interval_s", _non_negative_int)
    ),
    ("SampledDataCtrlr", "TxUpdatedMeasurands", None): Variable(
        lambda s: ",".join(s.sampled_measurands), _set("sampled_measurands", _measurands)
    ),
    ("SampledDataCtrlr", "TxStartedMeasurands", None): Variable(
        lambda s: ",".join(s.started_measurands), _set("started_measurands", _measurands)
    ),
    ("SampledDataCtrlr", "TxEndedMeasurands", None): Variable(
        lambda s: ",".join(s.ended_measurands), _set("ended_measurands", _measurands)
    ),
    ("AlignedDataCtrlr", "Enabled", None): Variable(lambda s: "true"),
    ("AlignedDataCtrlr", "Interval", None): Variable(
        lambda s: str(int(s.aligned_interval_s)), _set("aligned_interval_s", _non_negative_int)
    ),
    ("AlignedDataCtrlr", "Measurands", None): Variable(
        lambda s: ",".join(s.aligned_measurands), _set("aligned_measurands", _measurands)
    ),
    ("TxCtrlr", "EVConnectionTimeOut", None): Variable(
        lambda s: str(int(s.connection_timeout_s)), _set("connection_timeout_s", _non_negative_int)
    ),
    ("TxCtrlr", "TxStartPoint", None): Variable(lambda s: "Authorized"),
    ("TxCtrlr", "TxStopPoint", None): Variable(lambda s: "EVConnected"),
    ("AuthCtrlr", "LocalAuthorizeOffline", None): Variable(
        lambda s: str(s.local_authorize_offline).lower(), _set("local_authorize_offline", _bool)
    ),
    ("AuthCtrlr", "AuthorizeRemoteStart", None): Variable(
        lambda s: str(s.authorize_remote_start).lower(), _set("authorize_remote_start", _bool)
    ),
    ("SmartChargingCtrlr", "Enabled", None): Variable(lambda s: "true"),
    ("SmartChargingCtrlr", "RateUnit", None): Variable(lambda s: "A,W"),
    ("SmartChargingCtrlr", "PeriodsPerSchedule", None): Variable(lambda s: "24"),
}
COMPONENTS = frozenset(c for c, _, _ in VARIABLES) | {"ChargingStation", "SmartChargingCtrlr"}


def _constant(body: Payload) -> Callable[[], Payload]:
    return lambda: body


def _require(payload: Payload, name: str, kind: type | tuple[type, ...]) -> Any:
    return require(payload, name, kind, "2.0.1")


class Charger201(VirtualCharger):
    version: Version = "2.0.1"

    # ----------------------------------------------------------------- outgoing
    def boot_payload(self, reason: str) -> Payload:
        station: Payload = {
            "model": self.spec.model[:20],
            "vendorName": self.spec.vendor[:50],
            "firmwareVersion": "sim-1.0",
        }
        if self.spec.serial_number:
            station["serialNumber"] = self.spec.serial_number[:25]
        return {"reason": reason, "chargingStation": station}

    def authorize_payload(self, id_tag: str) -> Payload:
        return {"idToken": {"idToken": id_tag[:36], "type": "ISO14443"}}

    def authorize_accepted(self, reply: Payload) -> bool:
        info = reply.get("idTokenInfo")
        return isinstance(info, dict) and info.get("status") == "Accepted"

    @staticmethod
    def _connector_status(status: Status) -> str:
        if status in ("Available", "Unavailable"):
            return status
        return "Occupied"

    def _status_item(self, conn: Connector) -> Outgoing:
        body = {
            "timestamp": iso(self.now_utc),
            "connectorStatus": self._connector_status(conn.status),
            "evseId": conn.id,
            "connectorId": 1,
        }
        return Outgoing("StatusNotification", lambda: body)

    def status_refresh(self) -> list[Outgoing]:
        return [self._status_item(c) for c in self.connectors]

    def _status_changed(self, conn: Connector, old: Status) -> None:
        if self._connector_status(old) != self._connector_status(conn.status):
            self.enqueue(self._status_item(conn))
        tx = conn.tx
        state = CHARGING_STATE.get(conn.status, "Idle")
        if tx is not None and tx.charging_state is not None and state != tx.charging_state:
            tx.charging_state = state
            self._event(conn, tx, "Updated", "ChargingStateChanged", charging_state=state)

    def _meter_value(self, conn: Connector, context: str, measurands: list[str]) -> list[Payload]:
        sampled = []
        for measurand in measurands:
            for value, phase, unit in self.sampled_value(conn, measurand):
                item: Payload = {
                    "value": value,
                    "context": context,
                    "measurand": measurand,
                    "unitOfMeasure": {"unit": unit},
                }
                if phase is not None:
                    item["phase"] = phase
                sampled.append(item)
        return [{"timestamp": iso(self.now_utc), "sampledValue": sampled}] if sampled else []

    def _event(
        self,
        conn: Connector,
        tx: Transaction,
        event_type: str,
        trigger: str,
        *,
        charging_state: str | None = None,
        meter_value: list[Payload] | None = None,
        stopped_reason: str | None = None,
        with_token: bool = False,
        on_result: Callable[[Payload], None] | None = None,
    ) -> None:
        info: Payload = {"transactionId": tx.local_id}
        if charging_state is not None:
            info["chargingState"] = charging_state
        if stopped_reason is not None:
            info["stoppedReason"] = stopped_reason
        if tx.remote_start_id is not None and event_type == "Started":
            info["remoteStartId"] = tx.remote_start_id
        body: Payload = {
            "eventType": event_type,
            "timestamp": iso(self.now_utc),
            "triggerReason": trigger,
            "seqNo": tx.next_seq(),
            "transactionInfo": info,
            "evse": {"id": conn.id, "connectorId": 1},
        }
        if with_token:
            body["idToken"] = {"idToken": tx.id_tag[:36], "type": "ISO14443"}
        if meter_value:
            body["meterValue"] = meter_value
        item = Outgoing("TransactionEvent", lambda: body, transactional=True, on_result=on_result)
        self.enqueue(item)
        if item.offline:
            body["offline"] = True

    def _tx_started(self, conn: Connector, tx: Transaction) -> None:
        self._offer_limits()
        tx.charging_state = CHARGING_STATE.get(self._derive_status(conn), "Idle")

        def started(reply: Payload) -> None:
            info = reply.get("idTokenInfo")
            if isinstance(info, dict) and info.get("status") not in (None, "Accepted") and not tx.ended:
                self._stop_transaction(conn, "DeAuthorized")
                self._update_status(conn)

        self._event(
            conn,
            tx,
            "Started",
            "RemoteStart" if tx.remote_start_id is not None else "Authorized",
            charging_state=tx.charging_state,
            meter_value=self._meter_value(conn, "Transaction.Begin", self.settings.started_measurands),
            with_token=True,
            on_result=started,
        )

    def _tx_ended(self, conn: Connector, tx: Transaction, reason: StopReason) -> None:
        trigger, stopped = STOPPED_REASON[reason]
        self._event(
            conn,
            tx,
            "Ended",
            trigger,
            charging_state="EVConnected" if conn.car is not None else "Idle",
            stopped_reason=stopped,
            meter_value=self._meter_value(conn, "Transaction.End", self.settings.ended_measurands),
        )

    def _meter_values(
        self, conn: Connector, tx: Transaction | None, context: str, measurands: list[str]
    ) -> None:
        values = self._meter_value(conn, context, measurands)
        if not values:
            return
        if tx is None:
            body = {"evseId": conn.id, "meterValue": values}
            self.enqueue(Outgoing("MeterValues", lambda: body))
            return
        trigger = {"Sample.Periodic": "MeterValuePeriodic", "Sample.Clock": "MeterValueClock"}.get(
            context, "Trigger"
        )
        self._event(conn, tx, "Updated", trigger, meter_value=values)

    # ----------------------------------------------------------------- incoming
    def handle_call(self, action: str, payload: Payload) -> Payload:
        handlers: dict[str, Callable[[Payload], Payload]] = {
            "RequestStartTransaction": self._request_start,
            "RequestStopTransaction": self._request_stop,
            "Reset": self._reset,
            "TriggerMessage": self._trigger,
            "GetVariables": self._get_variables,
            "SetVariables": self._set_variables,
            "SetChargingProfile": self._set_charging_profile,
            "ClearChargingProfile": self._clear_charging_profile,
            "ChangeAvailability": self._change_availability,
            "GetTransactionStatus": self._transaction_status,
            "DataTransfer": lambda p: {"status": "UnknownVendorId"},
        }
        handler = handlers.get(action)
        if handler is None:
            if action in KNOWN_UNSUPPORTED:
                raise OcppError("NotSupported", f"{action} is not supported by this charging station")
            raise OcppError("NotImplemented", f"unknown action {action!r}")
        return handler(payload)

    def _evse(self, evse_id: Any, allow_zero: bool = False) -> int:
        if isinstance(evse_id, bool) or not isinstance(evse_id, int):
            raise OcppError("TypeConstraintViolation", "evseId must be an integer")
        if not (0 if allow_zero else 1) <= evse_id <= len(self.connectors):
            raise OcppError("PropertyConstraintViolation", f"evseId {evse_id} out of range")
        return evse_id

    def _request_start(self, payload: Payload) -> Payload:
        remote_id = _require(payload, "remoteStartId", int)
        token = _require(payload, "idToken", dict)
        id_tag = token.get("idToken")
        if not isinstance(id_tag, str):
            raise OcppError("TypeConstraintViolation", "idToken.idToken must be a string")
        if "evseId" in payload:
            conn = self.connector(self._evse(payload["evseId"]))
            if conn.tx is not None or not conn.operative:
                return {"status": "Rejected"}
        else:
            plugged = [c for c in self.connectors if c.car is not None and c.tx is None and c.operative]
            candidate = plugged[0] if plugged else self.free_connector()
            if candidate is None:
                return {"status": "Rejected"}
            conn = candidate
        profile_raw = payload.get("chargingProfile")
        if profile_raw is not None:
            parsed = parse_profile(
                profile_raw, conn.id, self.version, self.now_utc, self.profiles.max_stack_level
            )
            if parsed.purpose != "tx":
                return {"status": "Rejected"}

        def start() -> None:
            self.remote_start(conn, id_tag, remote_id)
            if profile_raw is not None and conn.tx is not None:
                parsed = parse_profile(
                    profile_raw, conn.id, self.version, self.now_utc, self.profiles.max_stack_level
                )
                self.set_profile(lambda: self.profiles.install(parsed))

        self.then("RequestStartTransaction", start)
        return {"status": "Accepted"}

    def _request_stop(self, payload: Payload) -> Payload:
        tx_id = _require(payload, "transactionId", str)
        for conn in self.connectors:
            if conn.tx is not None and conn.tx.local_id == tx_id:
                self.then("RequestStopTransaction", self._stopper(conn))
                return {"status": "Accepted"}
        return {"status": "Rejected"}

    def _reset(self, payload: Payload) -> Payload:
        kind = _require(payload, "type", str)
        if kind not in ("Immediate", "OnIdle"):
            raise OcppError("PropertyConstraintViolation", f"unknown reset type {kind!r}")
        if "evseId" in payload:
            return {"status": "Rejected"}
        busy = any(c.tx is not None for c in self.connectors)
        if kind == "OnIdle" and busy:
            return {"status": "Scheduled"}
        self.then("Reset", lambda: self.request_reset("HardReset"))
        return {"status": "Accepted"}

    def _trigger(self, payload: Payload) -> Payload:
        what = _require(payload, "requestedMessage", str)
        evse = payload.get("evse")
        evse_id = evse.get("id") if isinstance(evse, dict) else None
        if evse_id is not None and not (isinstance(evse_id, int) and 0 <= evse_id <= len(self.connectors)):
            return {"status": "Rejected"}
        targets = [c for c in self.connectors if evse_id in (None, 0, c.id)]
        work: Callable[[], None]
        if what == "BootNotification":
            work = self.trigger_boot

        elif what == "Heartbeat":

            def work() -> None:
                self.enqueue(Outgoing("Heartbeat", dict))

        elif what == "StatusNotification":

            def work() -> None:
                for c in targets:
                    self.enqueue(self._status_item(c))

        elif what == "MeterValues":

            def work() -> None:
                for c in targets:
                    values = self._meter_value(c, "Trigger", self.settings.sampled_measurands)
                    if values:
                        self.enqueue(
                            Outgoing("MeterValues", _constant({"evseId": c.id, "meterValue": values}))
                        )

        elif what == "TransactionEvent":
            active = [c for c in targets if c.tx is not None]
            if not active:
                return {"status": "Rejected"}

            def work() -> None:
                for c in active:
                    if c.tx is not None:
                        values = self._meter_value(c, "Trigger", self.settings.sampled_measurands)
                        self._event(
                            c,
                            c.tx,
                            "Updated",
                            "Trigger",
                            meter_value=values,
                            charging_state=c.tx.charging_state,
                        )

        else:
            return {"status": "NotImplemented"}
        self.then("TriggerMessage", work)
        return {"status": "Accepted"}

    def _variable_key(self, item: Any) -> tuple[tuple[str, str, str | None], Payload, Payload]:
        if not isinstance(item, dict):
            raise OcppError("FormatViolation", "variable data must be objects")
        component = item.get("component")
        variable = item.get("variable")
        if not isinstance(component, dict) or not isinstance(variable, dict):
            raise OcppError("FormatViolation", "component and variable are required")
        name, var = component.get("name"), variable.get("name")
        if not isinstance(name, str) or not isinstance(var, str):
            raise OcppError("FormatViolation", "component.name and variable.name must be strings")
        instance = variable.get("instance")
        return (name, var, instance if isinstance(instance, str) else None), component, variable

    def _lookup(self, key: tuple[str, str, str | None]) -> tuple[str, Variable | None, str | None]:
        """(status, accessor, read-only value) for a variable address."""
        component = key[0]
        if component not in COMPONENTS:
            return "UnknownComponent", None, None
        if key[:2] == ("SmartChargingCtrlr", "ProfileStackLevel"):
            return "Accepted", None, str(self.profiles.max_stack_level)
        if key == ("SmartChargingCtrlr", "Entries", "ChargingProfiles"):
            return "Accepted", None, str(len(self.profiles.profiles))
        if key[:2] == ("ChargingStation", "AvailabilityState"):
            return (
                "Accepted",
                None,
                "Available" if all(c.operative for c in self.connectors) else "Unavailable",
            )
        variable = VARIABLES.get(key)
        if variable is None:
            return "UnknownVariable", None, None
        return "Accepted", variable, None

    def _get_variables(self, payload: Payload) -> Payload:
        requests = _require(payload, "getVariableData", list)
        results = []
        for item in requests:
            key, component, variable = self._variable_key(item)
            result: Payload = {"component": component, "variable": variable}
            attribute = item.get("attributeType", "Actual")
            status, accessor, fixed = self._lookup(key)
            if status == "Accepted" and attribute != "Actual":
                status = "NotSupportedAttributeType"
            result["attributeStatus"] = status
            if status == "Accepted":
                result["attributeValue"] = fixed if accessor is None else accessor.read(self.settings)
            if attribute != "Actual":
                result["attributeType"] = attribute
            results.append(result)
        return {"getVariableResult": results}

    def _set_variables(self, payload: Payload) -> Payload:
        requests = _require(payload, "setVariableData", list)
        results = []
        for item in requests:
            key, component, variable = self._variable_key(item)
            value = item.get("attributeValue")
            if not isinstance(value, str):
                raise OcppError("FormatViolation", "attributeValue must be a string")
            status, accessor, _ = self._lookup(key)
            if status == "Accepted":
                if (
                    accessor is None
                    or accessor.write is None
                    or item.get("attributeType", "Actual") != "Actual"
                ):
                    status = "Rejected"
                else:
                    try:
                        accessor.write(self.settings, value)
                        self._settings_changed(key)
                    except ValueError:
                        status = "Rejected"
            results.append({"attributeStatus": status, "component": component, "variable": variable})
        return {"setVariableResult": results}

    def _settings_changed(self, key: tuple[str, str, str | None]) -> None:
        if key[:2] == ("OCPPCommCtrlr", "HeartbeatInterval") and self.online:
            self._next_heartbeat_s = self.now_s + self.settings.heartbeat_interval_s
        elif key[:2] == ("AlignedDataCtrlr", "Interval") and self.online:
            self._schedule_aligned()
        elif key[:2] == ("SampledDataCtrlr", "TxUpdatedInterval"):
            interval = self.settings.sample_interval_s
            for conn in self.connectors:
                if conn.tx is not None:
                    conn.next_sample_s = self.now_s + interval if interval > 0 else float("inf")

    def _set_charging_profile(self, payload: Payload) -> Payload:
        evse_id = self._evse(_require(payload, "evseId", int), allow_zero=True)
        raw = _require(payload, "chargingProfile", dict)
        profile = parse_profile(raw, evse_id, self.version, self.now_utc, self.profiles.max_stack_level)
        if profile.purpose == "max" and evse_id != 0:
            return {"status": "Rejected"}
        if profile.purpose == "tx":
            conn = self.connector(evse_id) if evse_id else None
            if conn is None or conn.tx is None or profile.transaction_id != conn.tx.local_id:
                return {"status": "Rejected"}
            tx = conn.tx

            def install() -> None:
                if conn.tx is tx:
                    self.profiles.install(profile)

            self.set_profile(install)
        else:
            self.set_profile(lambda: self.profiles.install(profile))
        return {"status": "Accepted"}

    def _clear_charging_profile(self, payload: Payload) -> Payload:
        profile_id = payload.get("chargingProfileId")
        criteria_raw = payload.get("chargingProfileCriteria") or {}
        if not isinstance(criteria_raw, dict):
            raise OcppError("FormatViolation", "chargingProfileCriteria must be an object")
        purpose = None
        purpose_name = criteria_raw.get("chargingProfilePurpose")
        if purpose_name is not None:
            purpose = PURPOSE_NAMES[self.version].get(purpose_name) if isinstance(purpose_name, str) else None
            if purpose is None:
                return {"status": "Unknown"}
        criteria: dict[str, Any] = {
            "profile_id": profile_id,
            "connector": criteria_raw.get("evseId"),
            "purpose": purpose,
            "stack_level": criteria_raw.get("stackLevel"),
        }
        if self.profiles.count(**criteria) == 0:
            return {"status": "Unknown"}
        self.set_profile(lambda: self.profiles.discard(**criteria))
        return {"status": "Accepted"}

    def _change_availability(self, payload: Payload) -> Payload:
        kind = _require(payload, "operationalStatus", str)
        if kind not in ("Operative", "Inoperative"):
            raise OcppError("PropertyConstraintViolation", f"unknown operationalStatus {kind!r}")
        evse = payload.get("evse")
        evse_id = self._evse(evse.get("id"), allow_zero=True) if isinstance(evse, dict) else 0
        targets = self.connectors if evse_id == 0 else [self.connector(evse_id)]
        busy = any(c.tx is not None for c in targets)
        for conn in targets:
            self.set_operative(conn, kind == "Operative")
        return {"status": "Scheduled" if busy and kind == "Inoperative" else "Accepted"}

    def _transaction_status(self, payload: Payload) -> Payload:
        tx_id = payload.get("transactionId")
        queued = [item for item in self._outbox if item.transactional]
        result: Payload = {"messagesInQueue": bool(queued)}
        if isinstance(tx_id, str):
            result["ongoingIndicator"] = any(
                c.tx is not None and c.tx.local_id == tx_id for c in self.connectors
            )
        return result
