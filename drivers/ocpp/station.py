"""One configured charger (OCPP identity): its connectors' state, its provisioning, its commands.

A Station outlives connections: the charger reconnects, the state stays. While a connection is up the
station has a session; provisioning (meter value intervals, the safe profile) runs on every new
connection before the charger is answered `Accepted` and before dynamic limits are taken.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from drivers.contracts import (
    ChargerEvent,
    ChargerEventRecorder,
    ChargerStatus,
    Clock,
    CommandOutcome,
    CommandResult,
    ConnectorState,
    PerTerminal,
    ReceiveTime,
)
from drivers.ocpp import profiles, provisioning, rpc
from drivers.ocpp.authorization import AuthDecision, Authorizer
from drivers.ocpp.config import ChargePointConfig, CsmsConfig
from drivers.ocpp.counters import (
    C_RECORD_FAILURES,
    C_SINK_ERRORS,
    C_TRANSACTIONS_GONE,
    C_UNKNOWN_CONNECTOR,
    Counters,
)
from drivers.ocpp.meter import BadMeterValue, parse_timestamp
from drivers.ocpp.session import CallFailed, RpcSession
from drivers.ocpp.transactions import TransactionIds

log = structlog.get_logger("drivers.ocpp.station")

Spawn = Callable[[Coroutine[Any, Any, None], str], None]
_RECENT = 256  # transactions remembered per charger for replay detection
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
    record: ChargerEventRecorder | None = None

    def received(self) -> ReceiveTime:
        return ReceiveTime(self.clock.monotonic(), self.clock.utc_now())

    def emit(self, event: ChargerEvent) -> None:
        # The sink is synchronous and must not block; a faulty sink must not take a charger down.
        try:
            self.sink(event)
        except Exception:
            self.counters.inc(C_SINK_ERRORS)
            log.exception("ocpp.sink_failed", event=type(event).__name__)

    async def emit_durably(self, *events: ChargerEvent) -> None:
        """Transaction messages: returns once the recorder has committed them. When it cannot (a
        failing or slow ledger) the charger gets an InternalError and sends the message again, as
        OCPP has it do for transaction messages; the recorder takes the repeat as a duplicate."""
        if self.record is None:
            for event in events:
                self.emit(event)
            return
        try:
            async with asyncio.timeout(self.clock.loop_seconds(self.config.record_timeout_s)):
                await asyncio.gather(*(self.record(event) for event in events))
        except Exception as exc:
            self.counters.inc(C_RECORD_FAILURES)
            # A slow ledger, not lost data: the charger sends the message again (a failing ledger
            # logs its own errors).
            log.warning(
                "ocpp.record_failed",
                message_type=type(events[0]).__name__,
                charger_id=events[0].charger_id,
                error=repr(exc),
            )
            raise rpc.OcppFault(
                "InternalError", "the transaction could not be stored; send it again", C_RECORD_FAILURES
            ) from None


@dataclass(slots=True)
class Connector:
    charger_id: str
    connector_id: int
    state: ConnectorState = ConnectorState.UNKNOWN
    currents_a: PerTerminal = (None, None, None)
    currents_received: ReceiveTime | None = None
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
    boot_pending: bool = False
    boot_info: dict[str, Any] = field(default_factory=dict)
    transactions: OrderedDict[str, TransactionRecord] = field(default_factory=OrderedDict)
    provisioning: bool = False  # a provisioning run is under way on this connection
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # set once provisioned on this connection
    _spawn: Spawn | None = None

    def __post_init__(self) -> None:
        self.connectors = {
            cid: Connector(charger_id, cid) for cid, charger_id in self.config.connectors.items()
        }

    @property
    def identity(self) -> str:
        return self.config.identity

    @property
    def provisioned(self) -> bool:
        """The safe profile is in place on this connection: the charger may be commanded."""
        return self.ready.is_set()

    # ------------------------------------------------------------------------------ connection life

    def attach(self, session: RpcSession, spawn: Spawn) -> None:
        self.session = session
        self._spawn = spawn
        self.ready.clear()
        self.boot_pending = False
        self.provisioning = False
        now = self.services.received()
        for connector in self.connectors.values():
            connector.last_seen = now
            connector.applied_limit_a = None  # unknown until we set one on this connection
            # What the car drew before the link went (a reboot, a long outage) is not what it draws
            # now: unknown until the charger reports on this connection. A stale reading would be
            # subtracted from the meter as a car's current, and the base load read that much low.
            connector.currents_a = (None, None, None)
            connector.currents_received = None
            connector.power_w = None
            self.emit_status(connector)
        spawn(provisioning.provision_unless_booted(self), f"ocpp-boot-wait-{self.identity}")

    def detach(self, session: RpcSession) -> None:
        if self.session is not session:
            return  # replaced by a newer connection: that one owns the station now
        self.session = None
        self._spawn = None
        self.ready.clear()
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
            currents_received=connector.currents_received,
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

    @property
    def connected(self) -> bool:
        return self._spawn is not None

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run `coro` for this connection (it ends with it); closed at once when there is none."""
        if self._spawn is None:
            coro.close()
            return
        self._spawn(coro, name)

    def after_boot(self, accepted: bool) -> None:
        """Called by the Boot handler: start provisioning once the Pending reply is out."""
        self.boot_pending = not accepted
        if not accepted and self.session is not None:
            self.session.after_reply(lambda: provisioning.start_provisioning(self))

    def transaction_gone(self, connector: Connector, evidence: str) -> None:
        """The charger says the connector's transaction is not running any more."""
        log.info(
            "ocpp.transaction_gone",
            identity=self.identity,
            connector_id=connector.connector_id,
            transaction_id=connector.transaction_id,
            evidence=evidence,
        )
        self.services.counters.inc(C_TRANSACTIONS_GONE)
        connector.transaction_id = None
        connector.id_tag = None
        connector.meter_start_wh = None

    def resume(
        self, connector_id: int, transaction_id: str, id_tag: str | None, meter_start_wh: float | None
    ) -> None:
        """A transaction the ledger has open on this connector from before this process started:
        known again, so that its readings, a remote stop and the charger's questions about it
        find it. Only the charger can end it."""
        connector = self.connectors[connector_id]
        connector.transaction_id = transaction_id
        connector.id_tag = id_tag
        connector.meter_start_wh = meter_start_wh
        self.remember_transaction(transaction_id, TransactionRecord(connector_id, meter_start_wh))

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
