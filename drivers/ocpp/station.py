"""One configured charger (OCPP identity): its connectors' state, its provisioning, its commands.

A Station outlives connections: the charger reconnects, the state stays. While a connection is up the
station has a session; provisioning (meter value intervals, the safe profile) runs on every new
connection before the charger is answered `Accepted` and before dynamic limits are taken.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from drivers.contracts import (
    ChargerEvent,
    ChargerStatus,
    Clock,
    CommandOutcome,
    CommandResult,
    ConnectorState,
    PerTerminal,
    ReceiveTime,
)
from drivers.ocpp import profiles, rpc
from drivers.ocpp.authorization import AuthDecision, Authorizer
from drivers.ocpp.config import ChargePointConfig, CsmsConfig
from drivers.ocpp.counters import C_PROVISIONING_FAILURES, C_SINK_ERRORS, C_UNKNOWN_CONNECTOR, Counters
from drivers.ocpp.meter import BadMeterValue, parse_timestamp
from drivers.ocpp.session import CallFailed, RpcSession
from drivers.ocpp.transactions import TransactionIds

log = structlog.get_logger("drivers.ocpp.station")

Spawn = Callable[[Coroutine[Any, Any, None], str], None]
_RECENT = 256  # transactions remembered per charger for replay detection
METER_MEASURANDS = "Energy.Active.Import.Register,Current.Import,Power.Active.Import"
ALIGNED_MEASURANDS = "Energy.Active.Import.Register"
_CONNECTED_STATES = frozenset(
    {
        ConnectorState.PREPARING,
        ConnectorState.CHARGING,
        ConnectorState.SUSPENDED_EV,
        ConnectorState.SUSPENDED_EVSE,
        ConnectorState.FINISHING,
    }
)


@dataclass(frozen=True, slots=True)
class Services:
    """What every station shares: configuration and the injected collaborators."""

    config: CsmsConfig
    clock: Clock
    sink: Callable[[ChargerEvent], None]
    authorizer: Authorizer
    transaction_ids: TransactionIds
    counters: Counters

    def received(self) -> ReceiveTime:
        return ReceiveTime(self.clock.monotonic(), self.clock.utc_now())

    def emit(self, event: ChargerEvent) -> None:
        # The sink is synchronous and must not block; a faulty sink must not take a charger down.
        try:
            self.sink(event)
        except Exception:
            self.counters.inc(C_SINK_ERRORS)
            log.exception("ocpp.sink_failed", event=type(event).__name__)


@dataclass(slots=True)
class Connector:
    charger_id: str
    connector_id: int
    state: ConnectorState = ConnectorState.UNAVAILABLE
    currents_a: PerTerminal = (None, None, None)
    energy_wh: float | None = None
    power_w: float | None = None
    id_tag: str | None = None
    transaction_id: str | None = None
    meter_start_wh: float | None = None
    applied_limit_a: float | None = None
    last_seen: ReceiveTime | None = None
    error_code: str | None = None


@dataclass(slots=True)
class TransactionRecord:
    connector_id: int
    meter_start_wh: float | None
    ended: bool = False


@dataclass(slots=True)
class Station:
    config: ChargePointConfig
    services: Services
    connectors: dict[int, Connector] = field(init=False)
    session: RpcSession | None = None
    provisioned: bool = False
    boot_pending: bool = False
    boot_info: dict[str, Any] = field(default_factory=dict)
    transactions: OrderedDict[str, TransactionRecord] = field(default_factory=OrderedDict)
    _spawn: Spawn | None = None
    _provisioning: bool = False

    def __post_init__(self) -> None:
        self.connectors = {
            cid: Connector(charger_id, cid) for cid, charger_id in self.config.connectors.items()
        }

    @property
    def identity(self) -> str:
        return self.config.identity

    # ------------------------------------------------------------------------------ connection life

    def attach(self, session: RpcSession, spawn: Spawn) -> None:
        self.session = session
        self._spawn = spawn
        self.provisioned = False
        self.boot_pending = False
        self._provisioning = False
        now = self.services.received()
        for connector in self.connectors.values():
            connector.last_seen = now
            connector.applied_limit_a = None  # unknown until we set one on this connection
            self.emit_status(connector)
        spawn(self._provision_unless_booted(), f"ocpp-boot-wait-{self.identity}")

    def detach(self, session: RpcSession) -> None:
        if self.session is not session:
            return  # replaced by a newer connection: that one owns the station now
        self.session = None
        self._spawn = None
        self.provisioned = False
        for connector in self.connectors.values():
            self.emit_status(connector)

    def status(self, connector: Connector) -> ChargerStatus:
        return ChargerStatus(
            charger_id=connector.charger_id,
            online=self.session is not None,
            state=connector.state,
            vehicle_connected=connector.state in _CONNECTED_STATES,
            measured_current_a=connector.currents_a,
            energy_register_wh=connector.energy_wh,
            power_w=connector.power_w,
            id_tag=connector.id_tag,
            transaction_id=connector.transaction_id,
            applied_limit_a=connector.applied_limit_a,
            last_seen=connector.last_seen,
        )

    def emit_status(self, connector: Connector) -> None:
        self.services.emit(self.status(connector))

    def touch(self) -> ReceiveTime:
        now = self.services.received()
        for connector in self.connectors.values():
            connector.last_seen = now
        return now

    # ----------------------------------------------------------------------------- inbound helpers

    @staticmethod
    def check_id(value: Any) -> int:
        """Connector/EVSE ids from the charger are integers >= 0 (the 1.6 schemas don't say so)."""
        if type(value) is not int or value < 0:
            raise rpc.OcppFault(
                "PropertyConstraintViolation", f"invalid connector id {value!r}", rpc.C_BAD_VALUES
            )
        return value

    def connector(self, connector_id: Any, *, allow_zero: bool = False) -> Connector | None:
        """The connector for an id from the charger. Negative ids are refused; unknown ones are None."""
        self.check_id(connector_id)
        if connector_id == 0 and allow_zero:
            return None
        found = self.connectors.get(connector_id)
        if found is None:
            self.services.counters.inc(C_UNKNOWN_CONNECTOR)
            log.warning("ocpp.unknown_connector", identity=self.identity, connector_id=connector_id)
        return found

    def authorize(self, id_tag: str) -> AuthDecision:
        return self.services.authorizer.authorize(id_tag, self.services.clock.utc_now())

    def remember_transaction(self, transaction_id: str, record: TransactionRecord) -> None:
        self.transactions[transaction_id] = record
        self.transactions.move_to_end(transaction_id)
        while len(self.transactions) > _RECENT:
            self.transactions.popitem(last=False)

    def connector_for_transaction(self, transaction_id: str) -> Connector | None:
        record = self.transactions.get(transaction_id)
        if record is not None:
            return self.connectors.get(record.connector_id)
        for connector in self.connectors.values():
            if connector.transaction_id == transaction_id:
                return connector
        if len(self.connectors) == 1:  # after a restart: a single-connector charger can't be wrong
            return next(iter(self.connectors.values()))
        return None

    def after_boot(self, accepted: bool) -> None:
        """Called by the Boot handler: start provisioning once the Pending reply is out."""
        self.boot_pending = not accepted
        if not accepted and self.session is not None:
            self.session.after_reply(self._start_provisioning)

    # -------------------------------------------------------------------------------- provisioning

    async def _provision_unless_booted(self) -> None:
        # A 1.6 charger that only lost its connection does not boot again; provision it anyway.
        await self.services.clock.sleep(self.services.config.boot_retry_interval_s)
        self._start_provisioning()

    def _start_provisioning(self) -> None:
        if self._provisioning or self.provisioned or self._spawn is None:
            return
        self._provisioning = True
        self._spawn(self._provision(), f"ocpp-provision-{self.identity}")

    async def _provision(self) -> None:
        config = self.services.config
        session = self.session
        if session is None:
            return
        try:
            while not session.closed:
                if await self._provision_once(session):
                    break
                self.services.counters.inc(C_PROVISIONING_FAILURES)
                await self.services.clock.sleep(config.boot_retry_interval_s)
        finally:
            self._provisioning = False
        if self.session is not session or session.closed:
            return  # the connection is gone; a newer one provisions itself
        self.provisioned = True
        log.info("ocpp.provisioned", identity=self.identity, safe_current_a=self.config.safe_current_a)
        for connector in self.connectors.values():
            self.emit_status(connector)
        if self.boot_pending:
            # Ask for the boot again now instead of waiting out the Pending interval.
            await self._tolerant(session, "TriggerMessage", {"requestedMessage": "BootNotification"})
        elif session.version == "1.6":
            await self._tolerant(session, "TriggerMessage", {"requestedMessage": "StatusNotification"})

    async def _tolerant(
        self, session: RpcSession, action: str, payload: dict[str, Any]
    ) -> dict[str, Any] | None:
        """A call whose refusal we can live with; None if it failed."""
        try:
            return await session.call(action, payload, timeout_s=self.services.config.call_timeout_s)
        except CallFailed as failed:
            log.info("ocpp.optional_call_failed", identity=self.identity, action=action, detail=failed.detail)
            return None

    async def _provision_once(self, session: RpcSession) -> bool:
        config = self.services.config
        if session.version == "1.6":
            settings = (
                ("MeterValueSampleInterval", str(config.meter_value_sample_interval_s)),
                ("ClockAlignedDataInterval", str(config.clock_aligned_data_interval_s)),
                ("MeterValuesSampledData", METER_MEASURANDS),
                ("MeterValuesAlignedData", ALIGNED_MEASURANDS),
            )
            for key, value in settings:
                answer = await self._tolerant(session, "ChangeConfiguration", {"key": key, "value": value})
                log.info(
                    "ocpp.configured", identity=self.identity, key=key, status=answer and answer.get("status")
                )
        else:
            variables = [
                ("SampledDataCtrlr", "TxUpdatedInterval", str(config.meter_value_sample_interval_s)),
                ("SampledDataCtrlr", "TxUpdatedMeasurands", METER_MEASURANDS),
                ("AlignedDataCtrlr", "Interval", str(config.clock_aligned_data_interval_s)),
                ("AlignedDataCtrlr", "Measurands", ALIGNED_MEASURANDS),
            ]
            answer = await self._tolerant(
                session,
                "SetVariables",
                {
                    "setVariableData": [
                        {"component": {"name": c}, "variable": {"name": v}, "attributeValue": value}
                        for c, v, value in variables
                    ]
                },
            )
            log.info("ocpp.configured", identity=self.identity, answer=answer)
            await self._tolerant(
                session,
                "SetChargingProfile",
                profiles.station_max_profile_request(
                    self.config.max_current_a,
                    self.config.phases,
                    self.config.quirks,
                    self.services.clock.utc_now(),
                ),
            )
        result = await self.install_safe_limit(
            self.config.safe_current_a, timeout_s=config.call_timeout_s, session=session
        )
        if not result.ok:
            log.warning("ocpp.safe_profile_failed", identity=self.identity, detail=result.detail)
        return result.ok

    # ------------------------------------------------------------------------------------ commands

    async def call(
        self, action: str, payload: dict[str, Any], *, timeout_s: float, session: RpcSession | None = None
    ) -> dict[str, Any]:
        session = session or self.session
        if session is None:
            raise CallFailed(CommandOutcome.OFFLINE, "charger is not connected")
        return await session.call(action, payload, timeout_s=timeout_s)

    async def command(
        self,
        action: str,
        payload: dict[str, Any],
        *,
        timeout_s: float,
        ok: tuple[str, ...] = ("Accepted",),
        session: RpcSession | None = None,
    ) -> CommandResult:
        """A call whose answer carries a `status`; ACCEPTED when it is one of `ok`."""
        try:
            answer = await self.call(action, payload, timeout_s=timeout_s, session=session)
        except CallFailed as failed:
            return CommandResult(failed.outcome, failed.detail)
        status = str(answer.get("status", ""))
        if status in ok:
            return CommandResult(CommandOutcome.ACCEPTED, status)
        if status == "NotSupported":
            return CommandResult(CommandOutcome.NOT_SUPPORTED, status)
        return CommandResult(CommandOutcome.REJECTED, status)

    def version(self) -> rpc.Version | None:
        return self.session.version if self.session is not None else None

    async def install_safe_limit(
        self, safe_current_a: float, *, timeout_s: float, session: RpcSession | None = None
    ) -> CommandResult:
        session = session or self.session
        if session is None:
            return CommandResult(CommandOutcome.OFFLINE, "charger is not connected")
        if safe_current_a != safe_current_a or safe_current_a < 0:
            return CommandResult(CommandOutcome.REJECTED, f"invalid current {safe_current_a}")
        current_a = min(safe_current_a, self.config.max_current_a)
        payload = profiles.safe_profile_request(
            session.version, current_a, self.config.phases, self.config.quirks
        )
        return await self.command("SetChargingProfile", payload, timeout_s=timeout_s, session=session)

    async def set_current(
        self, connector_id: int, current_a: float, *, lease_s: float, phases: int | None, timeout_s: float
    ) -> CommandResult:
        version = self.version()
        if version is None:
            return CommandResult(CommandOutcome.OFFLINE, "charger is not connected")
        if not self.provisioned:
            # The safe profile must be on the charger before it takes dynamic limits.
            return CommandResult(
                CommandOutcome.REJECTED, "charger not provisioned yet (safe profile pending)"
            )
        if current_a != current_a or current_a < 0:
            return CommandResult(CommandOutcome.REJECTED, f"invalid current {current_a}")
        connector = self.connectors[connector_id]
        use_phases = phases if phases is not None else self.config.phases
        if use_phases not in (1, 2, 3):
            return CommandResult(CommandOutcome.REJECTED, f"invalid phases {phases}")
        quirks = self.config.quirks
        limit = profiles.to_limit(min(current_a, self.config.max_current_a), use_phases, quirks)
        payload = profiles.lease_profile_request(
            version,
            connector_id,
            min(current_a, self.config.max_current_a),
            lease_s=lease_s,
            phases=use_phases,
            quirks=quirks,
            now_utc=self.services.clock.utc_now(),
            transaction_id=connector.transaction_id,
        )
        result = await self.command("SetChargingProfile", payload, timeout_s=timeout_s)
        if result.ok:
            connector.applied_limit_a = profiles.limit_as_amps(limit, quirks)
            self.emit_status(connector)
        return result

    async def remote_start(self, connector_id: int, id_tag: str, *, timeout_s: float) -> CommandResult:
        if self.version() == "1.6":
            payload: dict[str, Any] = {"connectorId": connector_id, "idTag": id_tag}
            return await self.command("RemoteStartTransaction", payload, timeout_s=timeout_s)
        payload = {
            "evseId": connector_id,
            "remoteStartId": int(self.services.clock.monotonic() * 1000) % 2_000_000_000,
            "idToken": {"idToken": id_tag, "type": "ISO14443"},
        }
        return await self.command("RequestStartTransaction", payload, timeout_s=timeout_s)

    async def remote_stop(self, connector_id: int, *, timeout_s: float) -> CommandResult:
        transaction_id = self.connectors[connector_id].transaction_id
        if transaction_id is None:
            return CommandResult(CommandOutcome.REJECTED, "no transaction on this connector")
        if self.version() == "1.6":
            return await self.command(
                "RemoteStopTransaction", {"transactionId": int(transaction_id)}, timeout_s=timeout_s
            )
        return await self.command(
            "RequestStopTransaction", {"transactionId": transaction_id}, timeout_s=timeout_s
        )

    async def set_available(self, connector_id: int, available: bool, *, timeout_s: float) -> CommandResult:
        if self.version() == "1.6":
            payload: dict[str, Any] = {
                "connectorId": connector_id,
                "type": "Operative" if available else "Inoperative",
            }
        else:
            payload = {
                "operationalStatus": "Operative" if available else "Inoperative",
                "evse": {"id": connector_id},
            }
        return await self.command(
            "ChangeAvailability", payload, timeout_s=timeout_s, ok=("Accepted", "Scheduled")
        )

    async def reset(self, *, hard: bool, timeout_s: float) -> CommandResult:
        if self.version() == "1.6":
            payload = {"type": "Hard" if hard else "Soft"}
        else:
            payload = {"type": "Immediate" if hard else "OnIdle"}
        return await self.command("Reset", payload, timeout_s=timeout_s, ok=("Accepted", "Scheduled"))

    async def trigger(self, message: str, connector_id: int | None, *, timeout_s: float) -> CommandResult:
        payload: dict[str, Any] = {"requestedMessage": message}
        if connector_id is not None:
            if self.version() == "1.6":
                payload["connectorId"] = connector_id
            else:
                payload["evse"] = {"id": connector_id}
        return await self.command("TriggerMessage", payload, timeout_s=timeout_s)

    async def configure(self, key: str, value: str, *, timeout_s: float) -> CommandResult:
        """1.6 ChangeConfiguration key; 2.0.1 SetVariables with key `Component.Variable`."""
        if self.version() == "1.6":
            return await self.command(
                "ChangeConfiguration",
                {"key": key, "value": value},
                timeout_s=timeout_s,
                ok=("Accepted", "RebootRequired"),
            )
        component, _, variable = key.partition(".")
        if not variable:
            return CommandResult(CommandOutcome.REJECTED, "2.0.1 keys are Component.Variable")
        try:
            answer = await self.call(
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
        outcome = (
            CommandOutcome.ACCEPTED if status in ("Accepted", "RebootRequired") else CommandOutcome.REJECTED
        )
        return CommandResult(outcome, status)

    async def read_configuration(
        self, keys: tuple[str, ...], *, timeout_s: float
    ) -> Mapping[str, str | None]:
        """1.6 GetConfiguration; 2.0.1 GetVariables (`Component.Variable`). Unknown keys map to None.
        Raises CallFailed."""
        if self.version() == "1.6":
            answer = await self.call(
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
        answer = await self.call("GetVariables", {"getVariableData": requests}, timeout_s=timeout_s)
        values: dict[str, str | None] = {}
        for item in answer.get("getVariableResult", []):
            key = f"{item['component']['name']}.{item['variable']['name']}"
            values[key] = item.get("attributeValue") if item.get("attributeStatus") == "Accepted" else None
        return values


def parse_time_or_fault(text: Any) -> datetime:
    try:
        return parse_timestamp(text)
    except BadMeterValue as exc:
        raise rpc.OcppFault("FormatViolation", str(exc), rpc.C_BAD_VALUES) from None


async def cancel_and_wait(tasks: set[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
