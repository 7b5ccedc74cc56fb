"""The local CSMS: one websocket listener for OCPP 1.6J and 2.0.1 chargers.

Every connection is admitted during the HTTP upgrade (`process_request`), before any OCPP message:
path `/ocpp/<identity>`, subprotocol, rate limits, then credentials (basic auth, or the client
certificate's CN under profile 3). Unknown identities are refused, or with adoption on held as
pending for the electrician. A second connection with a configured identity replaces the first only
once it has passed all of that.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self
from urllib.parse import unquote, urlsplit

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from drivers.contracts import ChargerEventRecorder, ChargerEventSink, Clock, CommandResult
from drivers.ocpp import counters as c
from drivers.ocpp import rpc
from drivers.ocpp.authorization import Authorizer
from drivers.ocpp.config import SUBPROTOCOL_201, ChargePointConfig, CsmsConfig, SecurityProfile
from drivers.ocpp.counters import Counters
from drivers.ocpp.handle import ChargerHandle
from drivers.ocpp.handlers16 import V16Handlers
from drivers.ocpp.handlers201 import V201Handlers
from drivers.ocpp.logins import LoginBusy, LoginVerifier
from drivers.ocpp.onboarding import OnboardingGate, Slot
from drivers.ocpp.pending import CLOSE_REPLACED, PendingCharger, PendingChargers
from drivers.ocpp.security import LoginLimiter, basic_auth_password, peer_common_name, server_ssl_context
from drivers.ocpp.session import RpcSession
from drivers.ocpp.station import Services, Station, cancel_and_wait
from drivers.ocpp.transactions import TransactionIds

log = structlog.get_logger("drivers.ocpp.server")

CLOSE_ADOPTED = 1012  # "service restart": reconnect, now as a configured charger


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    kind: str  # duplicate_identity | unknown_identity | login_lockout | pending_charger
    identity: str
    address: str
    utc: datetime
    detail: str = ""


SecuritySink = Callable[[SecurityEvent], None]


@dataclass(frozen=True, slots=True)
class _Admission:
    identity: str
    pending: bool
    slot: Slot | None = None  # the charger's onboarding turn (known chargers only)


class _WsTransport:
    """RpcSession's view of a websocket: a closed connection is an OSError (ConnectionError)."""

    def __init__(self, connection: ServerConnection) -> None:
        self._connection = connection

    async def send(self, message: str) -> None:
        try:
            await self._connection.send(message)
        except ConnectionClosed as exc:
            raise ConnectionError(f"connection closed: {exc}") from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._connection.close(code, reason)


class CentralSystem:
    """The local CSMS. Use as `async with CentralSystem(...) as csms:`.

    Events go to `sink` (ChargerStatus, TransactionStarted, EnergySample, TransactionStopped); the sink
    is called synchronously and must not block. With a `record`er, transaction starts and stops go
    to it instead and are answered only once it has stored them. Commands go through
    `charger(charger_id)` handles.
    """

    def __init__(
        self,
        config: CsmsConfig,
        charge_points: Iterable[ChargePointConfig],
        *,
        clock: Clock,
        sink: ChargerEventSink,
        authorizer: Authorizer,
        transaction_ids: TransactionIds,
        security_sink: SecuritySink | None = None,
        record: ChargerEventRecorder | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._counters = Counters()
        self._services = Services(config, clock, sink, authorizer, transaction_ids, self._counters, record)
        self._security_sink = security_sink
        self._stations: dict[str, Station] = {}
        self._handles: dict[str, ChargerHandle] = {}
        for charge_point in charge_points:
            self._add_station(charge_point)
        self._limiter = LoginLimiter(
            window_s=config.auth_window_s,
            per_address=config.auth_failures_per_address,
            per_identity_address=config.auth_failures_per_identity_address,
            lockout_s=config.auth_lockout_s,
        )
        self._admissions: weakref.WeakKeyDictionary[ServerConnection, _Admission] = (
            weakref.WeakKeyDictionary()
        )
        self._pending = PendingChargers(
            clock,
            self._counters,
            config.max_pending,
            first_seen=lambda identity, address: self._security(
                "pending_charger", identity, address, "waiting for adoption"
            ),
            spawn_detached=self._spawn_detached,
        )
        login = config.login
        self._logins = LoginVerifier(
            replace(login, max_wait_s=min(login.max_wait_s, config.handshake_timeout_s / 2))
        )
        onboarding = config.onboarding
        self._onboarding = OnboardingGate(
            replace(onboarding, max_wait_s=min(onboarding.max_wait_s, config.handshake_timeout_s / 4)),
            clock,
        )
        self._server: Server | None = None
        self._live = 0

    # --------------------------------------------------------------------------------- public API

    @property
    def counters(self) -> Mapping[str, int]:
        return self._counters

    @property
    def logins(self) -> LoginVerifier:
        """Password checks at login (figures: full checks, cache hits, busy refusals)."""
        return self._logins

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the CSMS is not running")
        return int(self._server.sockets[0].getsockname()[1])

    def charger(self, charger_id: str) -> ChargerHandle:
        return self._handles[charger_id]

    def charger_ids(self) -> tuple[str, ...]:
        return tuple(self._handles)

    def connected_identities(self) -> tuple[str, ...]:
        return tuple(i for i, s in self._stations.items() if s.session is not None)

    def resume_transaction(
        self, charger_id: str, transaction_id: str, id_tag: str | None, meter_start_wh: float | None
    ) -> None:
        """A transaction open in the ledger from before this process: the charging point knows it
        again (its readings, a remote stop, the questions asked after the charger reconnects)."""
        handle = self._handles[charger_id]
        self._stations[handle.identity].resume(handle.connector_id, transaction_id, id_tag, meter_start_wh)

    def pending(self) -> tuple[PendingCharger, ...]:
        return self._pending.records()

    def adopt(self, charge_point: ChargePointConfig) -> None:
        """Configure a pending (or any new) identity; its pending connection is closed so that it
        reconnects and authenticates as a configured charger."""
        self._add_station(charge_point)
        session = self._pending.adopted(charge_point.identity)
        log.info("ocpp.adopted", identity=charge_point.identity, connectors=dict(charge_point.connectors))
        if session is not None:
            self._spawn_detached(
                session.close(CLOSE_ADOPTED, "adopted"), f"ocpp-adopt-close-{charge_point.identity}"
            )

    async def reset(self, charger_id: str, *, hard: bool = False, timeout_s: float = 10.0) -> CommandResult:
        return await self.charger(charger_id).reset(hard=hard, timeout_s=timeout_s)

    async def trigger(self, charger_id: str, message: str, *, timeout_s: float = 10.0) -> CommandResult:
        return await self.charger(charger_id).trigger(message, timeout_s=timeout_s)

    # ---------------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        config = self.config
        self._detached: set[asyncio.Task[None]] = set()
        await self._logins.__aenter__()
        self._server = await serve(
            self._serve_connection,
            config.host,
            config.port,
            ssl=server_ssl_context(config),
            process_request=self._process_request,
            select_subprotocol=self._select_subprotocol,
            subprotocols=[Subprotocol(p) for p in config.subprotocols],
            max_size=config.max_message_bytes,
            max_queue=4,
            open_timeout=config.handshake_timeout_s,
            ping_interval=config.ping_interval_s,
            ping_timeout=config.ping_interval_s,
            close_timeout=2.0,
            compression=None,  # deflate state costs ~100 KiB per connection; OCPP messages are small
            server_header=None,
        )
        log.info(
            "ocpp.listening",
            host=config.host,
            port=self.port,
            security_profile=int(config.security_profile),
            chargers=len(self._stations),
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close(close_connections=True)
            await server.wait_closed()
        await cancel_and_wait(self._detached)
        await self._logins.__aexit__(exc_type, exc, tb)

    # --------------------------------------------------------------------------------- internals

    def _add_station(self, charge_point: ChargePointConfig) -> None:
        if charge_point.identity in self._stations:
            raise ValueError(f"OCPP identity {charge_point.identity!r} is configured twice")
        taken = [cid for cid in charge_point.connectors.values() if cid in self._handles]
        if taken:
            raise ValueError(f"charger ids {taken} are used by another OCPP identity")
        if self.config.security_profile is not SecurityProfile.MUTUAL_TLS and not charge_point.password_hash:
            raise ValueError(
                f"charger {charge_point.identity} needs a password_hash under security profile 1/2"
            )
        station = Station(charge_point, self._services)
        self._stations[charge_point.identity] = station
        for connector_id, charger_id in charge_point.connectors.items():
            self._handles[charger_id] = ChargerHandle(
                charger_id, station, connector_id, self.config.call_timeout_s
            )

    def _spawn_detached(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._detached.add(task)
        task.add_done_callback(self._detached.discard)

    def _security(self, kind: str, identity: str, address: str, detail: str = "") -> None:
        event = SecurityEvent(kind, identity, address, self._clock.utc_now(), detail)
        log.warning("ocpp.security_event", kind=kind, identity=identity, address=address, detail=detail)
        if self._security_sink is not None:
            try:
                self._security_sink(event)
            except Exception:
                self._counters.inc(c.C_SINK_ERRORS)
                log.exception("ocpp.security_sink_failed")

    def _select_subprotocol(self, connection: ServerConnection, offered: Any) -> Subprotocol | None:
        for protocol in self.config.subprotocols:
            if protocol in offered:
                return Subprotocol(protocol)
        return None

    def _refuse(
        self, connection: ServerConnection, status: HTTPStatus, counter: str | None, why: str, **context: Any
    ) -> Response:
        if counter is not None:
            self._counters.inc(counter)
        log.warning("ocpp.connection_refused", status=int(status), why=why, **context)
        response = connection.respond(status, f"{status.phrase}\n")
        if status is HTTPStatus.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = 'Basic realm="ocpp", charset="UTF-8"'
        return response

    def _auth_failed(self, connection: ServerConnection, address: str, identity: str, why: str) -> Response:
        if self._limiter.failure(address, identity, self._clock.monotonic()):
            self._security("login_lockout", identity, address, why)
        return self._refuse(
            connection, HTTPStatus.UNAUTHORIZED, c.C_AUTH_FAILURES, why, identity=identity, address=address
        )

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        address = str(connection.remote_address[0]) if connection.remote_address else "?"
        parts = urlsplit(request.path).path.split("/")
        identity = unquote(parts[2]) if len(parts) == 3 and parts[1] == "ocpp" else ""
        if not identity or len(identity) > 48 or not identity.isprintable() or "/" in identity:
            return self._refuse(connection, HTTPStatus.NOT_FOUND, c.C_BAD_PATH, "bad path", address=address)
        if self._live >= self.config.max_connections:
            return self._refuse(
                connection, HTTPStatus.SERVICE_UNAVAILABLE, c.C_TOO_MANY_CONNECTIONS, "too many connections"
            )
        offered = [
            p.strip()
            for p in ",".join(request.headers.get_all("Sec-WebSocket-Protocol")).split(",")
            if p.strip()
        ]
        if (offered and not any(p in self.config.subprotocols for p in offered)) or (
            not offered and self.config.default_subprotocol is None
        ):
            return self._refuse(
                connection,
                HTTPStatus.BAD_REQUEST,
                c.C_BAD_SUBPROTOCOL,
                "no common subprotocol",
                offered=offered[:4],
            )
        if self._limiter.blocked(address, identity, self._clock.monotonic()):
            return self._refuse(
                connection,
                HTTPStatus.TOO_MANY_REQUESTS,
                c.C_RATE_LIMITED,
                "rate limited",
                identity=identity,
                address=address,
            )
        station = self._stations.get(identity)
        profile = self.config.security_profile
        if profile is SecurityProfile.MUTUAL_TLS:
            ssl_object = connection.transport.get_extra_info("ssl_object")
            common_name = peer_common_name(ssl_object.getpeercert() if ssl_object is not None else None)
            if common_name != identity:
                return self._auth_failed(connection, address, identity, "certificate CN is not the identity")
        if station is None:
            if not self.config.adoption:
                self._counters.inc(c.C_UNKNOWN_IDENTITY)
                self._security("unknown_identity", identity, address)
                return self._auth_failed(connection, address, identity, "unknown identity")
            if self._pending.full_for(identity):
                return self._refuse(
                    connection, HTTPStatus.SERVICE_UNAVAILABLE, c.C_PENDING_REFUSED, "too many pending"
                )
            self._admissions[connection] = _Admission(identity, pending=True)
            return None
        if profile is not SecurityProfile.MUTUAL_TLS:
            password = basic_auth_password(request.headers.get("Authorization"), identity)
            if password is None:
                return self._auth_failed(connection, address, identity, "no basic auth for this identity")
            stored = station.config.password_hash
            try:
                ok = stored is not None and await self._logins.verify(identity, password, stored)
            except LoginBusy as busy:
                response = self._refuse(
                    connection,
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    c.C_LOGINS_BUSY,
                    "password checks busy",
                    identity=identity,
                    address=address,
                    waiting=busy.waiting,
                )
                response.headers["Retry-After"] = str(busy.retry_after_s)
                return response
            if not ok:
                return self._auth_failed(connection, address, identity, "wrong password")
        slot = await self._onboarding.acquire()
        if slot is None:
            response = self._refuse(
                connection,
                HTTPStatus.SERVICE_UNAVAILABLE,
                c.C_ONBOARDING_BUSY,
                "too many chargers coming up",
                identity=identity,
                address=address,
            )
            response.headers["Retry-After"] = str(self._onboarding.retry_after_s())
            return response
        self._admissions[connection] = _Admission(identity, pending=False, slot=slot)
        return None

    async def _serve_connection(self, connection: ServerConnection) -> None:
        admission = self._admissions.pop(connection, None)
        if admission is None:  # cannot happen: process_request admits every connection it lets through
            await connection.close(1008, "not admitted")
            return
        # A charger that offered no subprotocol speaks the listener's default (checked at admission).
        protocol = connection.subprotocol or self.config.default_subprotocol
        version: rpc.Version = "2.0.1" if protocol == SUBPROTOCOL_201 else "1.6"
        self._counters.inc(c.C_CONNECTIONS)
        self._live += 1
        try:
            if admission.pending:
                address = str(connection.remote_address[0]) if connection.remote_address else "?"
                await self._pending.serve(
                    _WsTransport(connection),
                    admission.identity,
                    version,
                    address,
                    connection.subprotocol or version,
                    lambda session: self._receive(connection, session),
                )
            else:
                assert admission.slot is not None
                await self._serve_station(
                    connection, self._stations[admission.identity], version, admission.slot
                )
        finally:
            self._live -= 1

    async def _receive(self, connection: ServerConnection, session: RpcSession) -> None:
        try:
            async for message in connection:
                await session.on_message(message)
        except ConnectionClosed as closed:
            if closed.sent is not None and closed.sent.code == 1009:
                self._counters.inc(rpc.C_OVERSIZE)
                log.warning(
                    "ocpp.oversize_message", identity=session.identity, limit=self.config.max_message_bytes
                )
        except ConnectionError:
            pass  # our reply could not be sent: the connection is gone

    async def _serve_station(
        self, connection: ServerConnection, station: Station, version: rpc.Version, slot: Slot
    ) -> None:
        address = str(connection.remote_address[0]) if connection.remote_address else "?"
        handlers = (V16Handlers(station) if version == "1.6" else V201Handlers(station)).routes()
        session = RpcSession(
            station.identity,
            version,
            _WsTransport(connection),
            handlers,
            self._counters,
            self._clock,
            relaxed_actions=station.config.quirks.relaxed_actions,
            remote_address=address,
        )
        tasks: set[asyncio.Task[None]] = set()

        def spawn(coro: Coroutine[Any, Any, None], name: str) -> None:
            task = asyncio.create_task(coro, name=name)
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        previous = station.session
        if previous is not None:
            self._counters.inc(c.C_DUPLICATE_REPLACED)
            self._security(
                "duplicate_identity",
                station.identity,
                address,
                f"replaces the connection from {previous.remote_address}",
            )
            previous.mark_closed()
            self._spawn_detached(
                previous.close(CLOSE_REPLACED, "replaced by a newer connection"), "ocpp-close-old"
            )
        station.attach(session, spawn)
        spawn(_release_when_ready(station, slot), f"ocpp-onboarding-{station.identity}")
        log.info("ocpp.connected", identity=station.identity, version=version, address=address)
        try:
            await self._receive(connection, session)
        finally:
            slot.release()
            session.mark_closed()
            station.detach(session)
            await cancel_and_wait(tasks)
            log.info("ocpp.disconnected", identity=station.identity, code=connection.protocol.close_code)


async def _release_when_ready(station: Station, slot: Slot) -> None:
    await station.ready.wait()
    slot.release()
