"""OCPP 1.6J dialect of the virtual charger (Core, SmartCharging and RemoteTrigger profiles)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from simulator.chargers.base import Connector, Outgoing, Status, StopReason, Transaction, VirtualCharger, iso
from simulator.chargers.rpc import OcppError, Payload, Version, require
from simulator.chargers.smart import PURPOSE_NAMES, parse_profile
from simulator.chargers.spec import SUPPORTED_MEASURANDS, Settings

# Actions of OCPP 1.6 this charger knows but does not implement: answered NotSupported, while an
# action that is not in 1.6 at all is answered NotImplemented.
KNOWN_UNSUPPORTED = frozenset(
    {
        "CancelReservation",
        "ClearCache",
        "GetCompositeSchedule",
        "GetDiagnostics",
        "GetLocalListVersion",
        "ReserveNow",
        "SendLocalList",
        "UnlockConnector",
        "UpdateFirmware",
    }
)


@dataclass(frozen=True, slots=True)
class ConfigKey:
    read: Callable[[Settings], str]
    write: Callable[[Settings, str], None] | None = None


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("negative")
    return number


def _bool(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ValueError("not a boolean")
    return value.lower() == "true"


def _measurands(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if any(item not in SUPPORTED_MEASURANDS for item in items):
        raise ValueError("unsupported measurand")
    return items


def _set(attr: str, parse: Callable[[str], Any]) -> Callable[[Settings, str], None]:
    def write(settings: Settings, value: str) -> None:
        setattr(settings, attr, parse(value))

    return write


CONFIG: dict[str, ConfigKey] = {
    "HeartbeatInterval": ConfigKey(
        lambda s: str(int(s.heartbeat_interval_s)), _set("heartbeat_interval_s", _non_negative_int)
    ),
    "MeterValueSampleInterval": ConfigKey(
        lambda s: str(int(s.sample_interval_s)), _set("sample_interval_s", _non_negative_int)
    ),
    "ClockAlignedDataInterval": ConfigKey(
        lambda s: str(int(s.aligned_interval_s)), _set("aligned_interval_s", _non_negative_int)
    ),
    "MeterValuesSampledData": ConfigKey(
        lambda s: ",".join(s.sampled_measurands), _set("sampled_measurands", _measurands)
    ),
    "MeterValuesAlignedData": ConfigKey(
        lambda s: ",".join(s.aligned_measurands), _set("aligned_measurands", _measurands)
    ),
    "ConnectionTimeOut": ConfigKey(
        lambda s: str(int(s.connection_timeout_s)), _set("connection_timeout_s", _non_negative_int)
    ),
    "LocalAuthorizeOffline": ConfigKey(
        lambda s: str(s.local_authorize_offline).lower(), _set("local_authorize_offline", _bool)
    ),
    "AuthorizeRemoteTxRequests": ConfigKey(
        lambda s: str(s.authorize_remote_start).lower(), _set("authorize_remote_start", _bool)
    ),
    "TransactionMessageAttempts": ConfigKey(
        lambda s: str(s.message_attempts), _set("message_attempts", _non_negative_int)
    ),
    "TransactionMessageRetryInterval": ConfigKey(
        lambda s: str(int(s.message_retry_interval_s)), _set("message_retry_interval_s", _non_negative_int)
    ),
    "ChargingScheduleAllowedChargingRateUnit": ConfigKey(lambda s: "Current,Power"),
    "ChargingScheduleMaxPeriods": ConfigKey(lambda s: "24"),
    "SupportedFeatureProfiles": ConfigKey(lambda s: "Core,SmartCharging,RemoteTrigger"),
}


def decimal_text(value: float) -> str:
    """A sampled value as 1.6 sends it: a plain decimal string with every digit the reading has.

    Readings are rounded to 0.1 or 0.01 before this; `:g` would keep only six significant digits and
    turn a register of 1 234 567.8 Wh into "1.23457e+06", 2.2 Wh off and in exponent notation.
    """
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _require(payload: Payload, name: str, kind: type | tuple[type, ...]) -> Any:
    return require(payload, name, kind, "1.6")


class Charger16(VirtualCharger):
    version: Version = "1.6"

    # ----------------------------------------------------------------- outgoing
    def boot_payload(self, reason: str) -> Payload:
        payload: Payload = {
            "chargePointVendor": self.spec.vendor[:20],
            "chargePointModel": self.spec.model[:20],
            "firmwareVersion": "sim-1.0",
        }
        if self.spec.serial_number:
            payload["chargePointSerialNumber"] = self.spec.serial_number[:25]
        return payload

    def authorize_payload(self, id_tag: str) -> Payload:
        return {"idTag": id_tag[:20]}

    def authorize_accepted(self, reply: Payload) -> bool:
        info = reply.get("idTagInfo")
        return isinstance(info, dict) and info.get("status") == "Accepted"

    def _status_item(self, connector_id: int, status: str) -> Outgoing:
        timestamp = iso(self.now_utc)
        return Outgoing(
            "StatusNotification",
            lambda: {
                "connectorId": connector_id,
                "errorCode": "NoError",
                "status": status,
                "timestamp": timestamp,
            },
        )

    def status_refresh(self) -> list[Outgoing]:
        items = [self._status_item(0, "Available")]
        items += [self._status_item(c.id, c.status) for c in self.connectors]
        return items

    def _status_changed(self, conn: Connector, old: Status) -> None:
        self.enqueue(self._status_item(conn.id, conn.status))

    def _tx_started(self, conn: Connector, tx: Transaction) -> None:
        payload = {
            "connectorId": conn.id,
            "idTag": tx.id_tag[:20],
            "meterStart": round(tx.meter_start_wh),
            "timestamp": iso(tx.start_utc),
        }

        def started(reply: Payload) -> None:
            tx_id = reply.get("transactionId")
            if isinstance(tx_id, int) and not isinstance(tx_id, bool):
                tx.server_id = tx_id
            info = reply.get("idTagInfo")
            if not (isinstance(info, dict) and info.get("status") == "Accepted") and not tx.ended:
                self._stop_transaction(conn, "DeAuthorized")
                self._update_status(conn)

        self.enqueue(Outgoing("StartTransaction", lambda: payload, transactional=True, on_result=started))

    def _tx_ended(self, conn: Connector, tx: Transaction, reason: StopReason) -> None:
        stop = {
            "meterStop": round(conn.register_wh),
            "timestamp": iso(self.now_utc),
            "reason": reason,
            "idTag": tx.id_tag[:20],
        }
        # The transaction id is known only once StartTransaction has been answered, which may be
        # during a replay after this stop was queued: bind it when the message is sent.
        self.enqueue(
            Outgoing(
                "StopTransaction",
                lambda: {**stop, "transactionId": tx.server_id if tx.server_id is not None else -1},
                transactional=True,
            )
        )

    def _meter_values(
        self, conn: Connector, tx: Transaction | None, context: str, measurands: list[str]
    ) -> None:
        sampled = []
        for measurand in measurands:
            for value, phase, unit in self.sampled_value(conn, measurand):
                item = {
                    "value": decimal_text(value),
                    "context": context,
                    "measurand": measurand,
                    "unit": unit,
                }
                if phase is not None:
                    item["phase"] = phase
                if measurand != "SoC":
                    item["location"] = "Outlet"
                sampled.append(item)
        if not sampled:
            return
        body: Payload = {
            "connectorId": conn.id,
            "meterValue": [{"timestamp": iso(self.now_utc), "sampledValue": sampled}],
        }
        if tx is None:
            self.enqueue(Outgoing("MeterValues", lambda: body))
            return
        self.enqueue(
            Outgoing(
                "MeterValues",
                lambda: {**body, "transactionId": tx.server_id if tx.server_id is not None else -1},
                transactional=True,
            )
        )

    # ----------------------------------------------------------------- incoming
    def handle_call(self, action: str, payload: Payload) -> Payload:
        handlers: dict[str, Callable[[Payload], Payload]] = {
            "RemoteStartTransaction": self._remote_start,
            "RemoteStopTransaction": self._remote_stop,
            "Reset": self._reset,
            "TriggerMessage": self._trigger,
            "GetConfiguration": self._get_configuration,
            "ChangeConfiguration": self._change_configuration,
            "SetChargingProfile": self._set_charging_profile,
            "ClearChargingProfile": self._clear_charging_profile,
            "ChangeAvailability": self._change_availability,
            "DataTransfer": lambda p: {"status": "UnknownVendorId"},
        }
        handler = handlers.get(action)
        if handler is None:
            if action in KNOWN_UNSUPPORTED:
                raise OcppError("NotSupported", f"{action} is not supported by this charger")
            raise OcppError("NotImplemented", f"unknown action {action!r}")
        return handler(payload)

    def _connector_arg(self, payload: Payload, name: str = "connectorId", allow_zero: bool = False) -> int:
        value = _require(payload, name, int)
        if not (0 if allow_zero else 1) <= value <= len(self.connectors):
            raise OcppError("PropertyConstraintViolation", f"{name} {value} out of range")
        return int(value)

    def _remote_start(self, payload: Payload) -> Payload:
        id_tag = _require(payload, "idTag", str)
        if "connectorId" in payload:
            conn = self.connector(self._connector_arg(payload))
            if conn.tx is not None or not conn.operative:
                return {"status": "Rejected"}
        else:
            plugged = [c for c in self.connectors if c.car is not None and c.tx is None and c.operative]
            conn_or_none = plugged[0] if plugged else self.free_connector()
            if conn_or_none is None:
                return {"status": "Rejected"}
            conn = conn_or_none
        profile = payload.get("chargingProfile")
        if profile is not None:
            parsed = parse_profile(
                profile, conn.id, self.version, self.now_utc, self.profiles.max_stack_level
            )
            if parsed.purpose != "tx":
                return {"status": "Rejected"}
        self.then("RemoteStartTransaction", lambda: self._do_remote_start(conn, id_tag, profile))
        return {"status": "Accepted"}

    def _do_remote_start(self, conn: Connector, id_tag: str, profile: Payload | None) -> None:
        self.remote_start(conn, id_tag, None)
        if profile is not None and conn.tx is not None:
            parsed = parse_profile(
                profile, conn.id, self.version, self.now_utc, self.profiles.max_stack_level
            )
            self.set_profile(lambda: self.profiles.install(parsed))

    def _remote_stop(self, payload: Payload) -> Payload:
        tx_id = _require(payload, "transactionId", int)
        for conn in self.connectors:
            if conn.tx is not None and conn.tx.server_id == tx_id:
                self.then("RemoteStopTransaction", self._stopper(conn))
                return {"status": "Accepted"}
        return {"status": "Rejected"}

    def _reset(self, payload: Payload) -> Payload:
        kind = _require(payload, "type", str)
        if kind not in ("Hard", "Soft"):
            raise OcppError("PropertyConstraintViolation", f"unknown reset type {kind!r}")
        reason: StopReason = "HardReset" if kind == "Hard" else "SoftReset"
        self.then("Reset", lambda: self.request_reset(reason))
        return {"status": "Accepted"}

    def _trigger(self, payload: Payload) -> Payload:
        what = _require(payload, "requestedMessage", str)
        connector_id = payload.get("connectorId")
        if connector_id is not None and not (
            isinstance(connector_id, int) and 0 <= connector_id <= len(self.connectors)
        ):
            return {"status": "Rejected"}
        targets = [c for c in self.connectors if connector_id in (None, 0, c.id)]
        work: Callable[[], None]
        if what == "BootNotification":
            work = self.trigger_boot

        elif what == "Heartbeat":

            def work() -> None:
                self.enqueue(Outgoing("Heartbeat", dict))

        elif what == "StatusNotification":

            def work() -> None:
                if connector_id in (None, 0):
                    self.enqueue(self._status_item(0, "Available"))
                for c in targets:
                    self.enqueue(self._status_item(c.id, c.status))

        elif what == "MeterValues":

            def work() -> None:
                for c in targets:
                    self._meter_values(c, c.tx, "Trigger", self.settings.sampled_measurands)

        elif what in ("DiagnosticsStatusNotification", "FirmwareStatusNotification"):
            return {"status": "NotImplemented"}
        else:
            raise OcppError("PropertyConstraintViolation", f"unknown requestedMessage {what!r}")
        self.then("TriggerMessage", work)
        return {"status": "Accepted"}

    def _config(self) -> dict[str, tuple[str, bool]]:
        values = {key: (entry.read(self.settings), entry.write is None) for key, entry in CONFIG.items()}
        values["NumberOfConnectors"] = (str(len(self.connectors)), True)
        values["ChargeProfileMaxStackLevel"] = (str(self.profiles.max_stack_level), True)
        values["MaxChargingProfilesInstalled"] = (str(self.profiles.max_profiles), True)
        return values

    def _get_configuration(self, payload: Payload) -> Payload:
        keys = payload.get("key")
        config = self._config()
        if keys is None:
            keys = list(config)
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise OcppError("TypeConstraintViolation", "key must be an array of strings")
        known = [{"key": k, "readonly": config[k][1], "value": config[k][0]} for k in keys if k in config]
        result: Payload = {"configurationKey": known}
        unknown = [k for k in keys if k not in config]
        if unknown:
            result["unknownKey"] = unknown
        return result

    def _change_configuration(self, payload: Payload) -> Payload:
        key = _require(payload, "key", str)
        value = _require(payload, "value", str)
        if key in ("NumberOfConnectors", "ChargeProfileMaxStackLevel", "MaxChargingProfilesInstalled"):
            return {"status": "Rejected"}
        entry = CONFIG.get(key)
        if entry is None:
            return {"status": "NotSupported"}
        if entry.write is None:
            return {"status": "Rejected"}
        try:
            entry.write(self.settings, value)
        except ValueError:
            return {"status": "Rejected"}
        self._settings_changed(key)
        return {"status": "Accepted"}

    def _settings_changed(self, key: str) -> None:
        if key == "HeartbeatInterval" and self.online:
            self._next_heartbeat_s = self.now_s + self.settings.heartbeat_interval_s
        elif key == "ClockAlignedDataInterval" and self.online:
            self._schedule_aligned()
        elif key == "MeterValueSampleInterval":
            interval = self.settings.sample_interval_s
            for conn in self.connectors:
                if conn.tx is not None:
                    conn.next_sample_s = self.now_s + interval if interval > 0 else float("inf")

    def _set_charging_profile(self, payload: Payload) -> Payload:
        connector_id = self._connector_arg(payload, allow_zero=True)
        raw = _require(payload, "csChargingProfiles", dict)
        profile = parse_profile(raw, connector_id, self.version, self.now_utc, self.profiles.max_stack_level)
        if profile.purpose == "max" and connector_id != 0:
            return {"status": "Rejected"}
        if profile.purpose == "tx":
            conn = self.connector(connector_id) if connector_id else None
            if conn is None or conn.tx is None:
                return {"status": "Rejected"}
            if profile.transaction_id is not None and profile.transaction_id != str(conn.tx.server_id):
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
        profile_id = payload.get("id")
        connector_id = payload.get("connectorId")
        purpose_name = payload.get("chargingProfilePurpose")
        stack_level = payload.get("stackLevel")
        purpose = None
        if purpose_name is not None:
            purpose = PURPOSE_NAMES[self.version].get(purpose_name) if isinstance(purpose_name, str) else None
            if purpose is None:
                raise OcppError("PropertyConstraintViolation", f"unknown purpose {purpose_name!r}")
        criteria: dict[str, Any] = {
            "profile_id": profile_id,
            "connector": connector_id,
            "purpose": purpose,
            "stack_level": stack_level,
        }
        if self.profiles.count(**criteria) == 0:
            return {"status": "Unknown"}
        self.set_profile(lambda: self.profiles.discard(**criteria))
        return {"status": "Accepted"}

    def _change_availability(self, payload: Payload) -> Payload:
        connector_id = self._connector_arg(payload, allow_zero=True)
        kind = _require(payload, "type", str)
        if kind not in ("Operative", "Inoperative"):
            raise OcppError("PropertyConstraintViolation", f"unknown availability {kind!r}")
        targets = self.connectors if connector_id == 0 else [self.connector(connector_id)]
        busy = any(c.tx is not None for c in targets)
        for conn in targets:
            self.set_operative(conn, kind == "Operative")
        return {"status": "Scheduled" if busy and kind == "Inoperative" else "Accepted"}
