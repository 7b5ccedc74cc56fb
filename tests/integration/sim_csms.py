"""A small CSMS built on the `ocpp` library: an implementation independent of the simulator's, used to
test the virtual chargers (and by bench/sim_speed.py as the minimal backend). The ocpp library
validates every message against the official JSON schemas, so a malformed message from a virtual
charger is answered with a CALLERROR and shows up in the charger's counters."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, TypeVar, cast

import websockets
from ocpp import routing
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call_result as result201
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

F = TypeVar("F", bound=Callable[..., Any])


def on(action: str) -> Callable[[F], F]:
    """The ocpp library's route decorator, typed."""
    return cast(Callable[[F], F], routing.on(action))


@dataclass
class Received:
    identity: str
    action: str
    payload: dict[str, Any]


@dataclass
class CsmsState:
    """What the CSMS saw, and how it answers."""

    passwords: dict[str, str] = field(default_factory=dict)
    pending_boots: int = 1
    boot_interval_s: int = 2
    heartbeat_s: int = 300
    rejected_tags: set[str] = field(default_factory=set)
    log: list[Received] = field(default_factory=list)
    points: dict[str, Any] = field(default_factory=dict)
    boots: dict[str, int] = field(default_factory=dict)
    tx_ids: Any = field(default_factory=lambda: itertools.count(100))
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, identity: str, action: str, payload: dict[str, Any]) -> None:
        self.log.append(Received(identity, action, payload))
        self.changed.set()

    def of(self, action: str, identity: str | None = None) -> list[dict[str, Any]]:
        return [r.payload for r in self.log if r.action == action and identity in (None, r.identity)]

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    def boot_status(self, identity: str) -> str:
        n = self.boots.get(identity, 0)
        self.boots[identity] = n + 1
        return "Pending" if n < self.pending_boots else "Accepted"


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class Csms16(Cp16):  # type: ignore[misc]
    def __init__(self, identity: str, connection: Any, state: CsmsState) -> None:
        super().__init__(identity, connection, response_timeout=10)
        self.state = state

    @on("BootNotification")
    def on_boot(self, **kw: Any) -> Any:
        self.state.record(self.id, "BootNotification", kw)
        status = self.state.boot_status(self.id)
        interval = self.state.boot_interval_s if status == "Pending" else self.state.heartbeat_s
        return result16.BootNotification(current_time=now_iso(), interval=interval, status=status)

    @on("Heartbeat")
    def on_heartbeat(self, **kw: Any) -> Any:
        self.state.record(self.id, "Heartbeat", kw)
        return result16.Heartbeat(current_time=now_iso())

    @on("StatusNotification")
    def on_status(self, **kw: Any) -> Any:
        self.state.record(self.id, "StatusNotification", kw)
        return result16.StatusNotification()

    @on("Authorize")
    def on_authorize(self, id_tag: str, **kw: Any) -> Any:
        self.state.record(self.id, "Authorize", {"id_tag": id_tag})
        status = "Invalid" if id_tag in self.state.rejected_tags else "Accepted"
        return result16.Authorize(id_tag_info={"status": status})

    @on("StartTransaction")
    def on_start(self, **kw: Any) -> Any:
        tx_id = next(self.state.tx_ids)
        self.state.record(self.id, "StartTransaction", {**kw, "assigned": tx_id})
        return result16.StartTransaction(transaction_id=tx_id, id_tag_info={"status": "Accepted"})

    @on("StopTransaction")
    def on_stop(self, **kw: Any) -> Any:
        self.state.record(self.id, "StopTransaction", kw)
        return result16.StopTransaction(id_tag_info={"status": "Accepted"})

    @on("MeterValues")
    def on_meter_values(self, **kw: Any) -> Any:
        self.state.record(self.id, "MeterValues", kw)
        return result16.MeterValues()


class Csms201(Cp201):  # type: ignore[misc]
    def __init__(self, identity: str, connection: Any, state: CsmsState) -> None:
        super().__init__(identity, connection, response_timeout=10)
        self.state = state

    @on("BootNotification")
    def on_boot(self, **kw: Any) -> Any:
        self.state.record(self.id, "BootNotification", kw)
        status = self.state.boot_status(self.id)
        interval = self.state.boot_interval_s if status == "Pending" else self.state.heartbeat_s
        return result201.BootNotification(current_time=now_iso(), interval=interval, status=status)

    @on("Heartbeat")
    def on_heartbeat(self, **kw: Any) -> Any:
        self.state.record(self.id, "Heartbeat", kw)
        return result201.Heartbeat(current_time=now_iso())

    @on("StatusNotification")
    def on_status(self, **kw: Any) -> Any:
        self.state.record(self.id, "StatusNotification", kw)
        return result201.StatusNotification()

    @on("Authorize")
    def on_authorize(self, id_token: dict[str, Any], **kw: Any) -> Any:
        self.state.record(self.id, "Authorize", {"id_token": id_token})
        status = "Invalid" if id_token.get("id_token") in self.state.rejected_tags else "Accepted"
        return result201.Authorize(id_token_info={"status": status})

    @on("TransactionEvent")
    def on_transaction_event(self, **kw: Any) -> Any:
        self.state.record(self.id, "TransactionEvent", kw)
        if kw.get("event_type") == "Started":
            return result201.TransactionEvent(id_token_info={"status": "Accepted"})
        return result201.TransactionEvent()

    @on("MeterValues")
    def on_meter_values(self, **kw: Any) -> Any:
        self.state.record(self.id, "MeterValues", kw)
        return result201.MeterValues()


def _check_auth(state: CsmsState) -> Callable[[ServerConnection, Request], Response | None]:
    def check(connection: ServerConnection, request: Request) -> Response | None:
        identity = request.path.rstrip("/").rsplit("/", 1)[-1]
        expected = state.passwords.get(identity)
        if expected is None:
            return None
        header = request.headers.get("Authorization", "")
        token = base64.b64encode(f"{identity}:{expected}".encode()).decode()
        if header != f"Basic {token}":
            return connection.respond(HTTPStatus.UNAUTHORIZED, "bad credentials\n")
        return None

    return check


@contextlib.asynccontextmanager
async def running_csms(
    state: CsmsState, *, port: int = 0, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, CsmsState]]:
    """Serve on 127.0.0.1; yields the base url (ws[s]://127.0.0.1:PORT/ocpp) and the state."""

    async def handler(connection: ServerConnection) -> None:
        assert connection.request is not None
        identity = connection.request.path.rstrip("/").rsplit("/", 1)[-1]
        if connection.subprotocol == "ocpp1.6":
            point: Any = Csms16(identity, connection, state)
        elif connection.subprotocol == "ocpp2.0.1":
            point = Csms201(identity, connection, state)
        else:
            await connection.close()
            return
        state.points[identity] = point
        with contextlib.suppress(websockets.exceptions.ConnectionClosed):
            await point.start()

    async with serve(
        handler,
        "127.0.0.1",
        port,
        subprotocols=["ocpp2.0.1", "ocpp1.6"],  # type: ignore[list-item]
        process_request=_check_auth(state),
        ssl=ssl_context,
        ping_interval=None,
    ) as server:
        bound = server.sockets[0].getsockname()[1]
        scheme = "wss" if ssl_context else "ws"
        yield f"{scheme}://127.0.0.1:{bound}/ocpp", state
