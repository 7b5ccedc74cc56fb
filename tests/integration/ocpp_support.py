"""Test chargers built on the `ocpp` library's ChargePoint classes, and a CSMS fixture factory.

These are independent of drivers.ocpp's codec: the library frames, validates and routes on its own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import websockets
from ocpp.routing import after as _after
from ocpp.routing import on as _on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from drivers.clock import SystemClock
from drivers.contracts import ChargerEvent
from drivers.ocpp import CentralSystem, ChargePointConfig, CsmsConfig, InMemoryTransactionIds, LocalAuthList
from drivers.ocpp.passwords import hash_password

F = TypeVar("F", bound=Callable[..., Any])


def on(action: str) -> Callable[[F], F]:
    """The ocpp library's routing decorator, typed."""
    return cast(Callable[[F], F], _on(action))


def after(action: str) -> Callable[[F], F]:
    return cast(Callable[[F], F], _after(action))


async def eventually(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait until `predicate()` holds: for state changed by the server's own tasks."""
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - the state has no event to wait on
            await asyncio.sleep(0.01)


def raw_connect(url: str, identity: str, version: str = "1.6", **kwargs: Any) -> Any:
    """A plain websocket with the right credentials, for sending hand-made frames."""
    protocol = Subprotocol("ocpp1.6" if version == "1.6" else "ocpp2.0.1")
    return websockets.connect(
        f"{url}/{identity}",
        subprotocols=[protocol],
        additional_headers=basic_auth(identity, PASSWORD),
        **kwargs,
    )


PASSWORD = "correct-horse-battery-1"
# Cheap scrypt parameters: the tests exercise the protocol, not the key-stretching cost.
PASSWORD_HASH = hash_password(PASSWORD, log2_n=4, r=1, p=1)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def basic_auth(identity: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{identity}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def fast_config(**overrides: Any) -> CsmsConfig:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "handshake_timeout_s": 2.0,
        "call_timeout_s": 2.0,
        "boot_retry_interval_s": 1,
        "heartbeat_interval_s": 60,
        "meter_value_sample_interval_s": 1,
        "ping_interval_s": None,
        "auth_lockout_s": 30.0,
    }
    values.update(overrides)
    return CsmsConfig(**values)


def charge_point(identity: str, connectors: dict[int, str] | None = None, **kwargs: Any) -> ChargePointConfig:
    return ChargePointConfig(
        identity=identity,
        connectors=connectors or {1: f"{identity}-1"},
        password_hash=kwargs.pop("password_hash", PASSWORD_HASH),
        **kwargs,
    )


@dataclass
class Harness:
    csms: CentralSystem
    events: list[ChargerEvent]
    auth: LocalAuthList
    transaction_ids: InMemoryTransactionIds

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.csms.port}/ocpp"

    def of_type(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@contextlib.asynccontextmanager
async def running_csms(
    chargers: Iterable[ChargePointConfig], config: CsmsConfig | None = None, **kwargs: Any
) -> AsyncIterator[Harness]:
    events: list[ChargerEvent] = []
    auth = LocalAuthList()
    ids = InMemoryTransactionIds()
    csms = CentralSystem(
        config or fast_config(),
        chargers,
        clock=SystemClock(),
        sink=events.append,
        authorizer=auth,
        transaction_ids=ids,
        **kwargs,
    )
    async with csms:
        yield Harness(csms, events, auth, ids)


class _Recorder:
    """What a test charger received from the CSMS."""

    def __init__(self) -> None:
        self.profiles: list[tuple[int, dict[str, Any]]] = []
        self.configuration: dict[str, str] = {}
        self.triggers: list[str] = []
        self.accepted = asyncio.Event()
        self.profile_status = "Accepted"
        self.commands: list[tuple[str, dict[str, Any]]] = []
        # What a 2.0.1 station answers GetTransactionStatus (the ocpp library's field names).
        self.transaction_status: dict[str, Any] = {"ongoing_indicator": True, "messages_in_queue": False}


class Charger16(ChargePoint16):  # type: ignore[misc]
    def __init__(self, identity: str, connection: ClientConnection) -> None:
        super().__init__(identity, connection, response_timeout=5)
        self.rec = _Recorder()

    async def boot(self) -> str:
        result = await self.call(
            call16.BootNotification(charge_point_model="T16", charge_point_vendor="Test")
        )
        if result.status == "Accepted":
            self.rec.accepted.set()
        return str(result.status)

    async def boot_until_accepted(self, timeout_s: float = 10.0) -> None:
        if await self.boot() != "Accepted":
            async with asyncio.timeout(timeout_s):
                await self.rec.accepted.wait()

    @on("ChangeConfiguration")
    def on_change_configuration(self, key: str, value: str) -> Any:
        self.rec.configuration[key] = value
        return result16.ChangeConfiguration(status="Accepted")

    @on("GetConfiguration")
    def on_get_configuration(self, key: list[str] | None = None) -> Any:
        keys = key or list(self.rec.configuration)
        known = [
            {"key": k, "readonly": False, "value": self.rec.configuration[k]}
            for k in keys
            if k in self.rec.configuration
        ]
        unknown = [k for k in keys if k not in self.rec.configuration]
        return result16.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on("SetChargingProfile")
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict[str, Any]) -> Any:
        self.rec.profiles.append((connector_id, cs_charging_profiles))
        return result16.SetChargingProfile(status=self.rec.profile_status)

    @on("TriggerMessage")
    def on_trigger_message(self, requested_message: str, connector_id: int | None = None) -> Any:
        self.rec.triggers.append(requested_message)
        return result16.TriggerMessage(status="Accepted")

    @after("TriggerMessage")
    async def after_trigger_message(self, requested_message: str, connector_id: int | None = None) -> None:
        if requested_message == "BootNotification":
            await self.boot()

    @on("RemoteStartTransaction")
    def on_remote_start(self, id_tag: str, connector_id: int | None = None, **kw: Any) -> Any:
        self.rec.commands.append(("RemoteStartTransaction", {"id_tag": id_tag, "connector_id": connector_id}))
        return result16.RemoteStartTransaction(status="Accepted")

    @on("RemoteStopTransaction")
    def on_remote_stop(self, transaction_id: int) -> Any:
        self.rec.commands.append(("RemoteStopTransaction", {"transaction_id": transaction_id}))
        return result16.RemoteStopTransaction(status="Accepted")

    @on("Reset")
    def on_reset(self, type: str) -> Any:
        self.rec.commands.append(("Reset", {"type": type}))
        return result16.Reset(status="Accepted")

    @on("ChangeAvailability")
    def on_change_availability(self, connector_id: int, type: str) -> Any:
        self.rec.commands.append(("ChangeAvailability", {"connector_id": connector_id, "type": type}))
        return result16.ChangeAvailability(status="Accepted")


class Charger201(ChargePoint201):  # type: ignore[misc]
    def __init__(self, identity: str, connection: ClientConnection) -> None:
        super().__init__(identity, connection, response_timeout=5)
        self.rec = _Recorder()

    async def boot(self) -> str:
        result = await self.call(
            call201.BootNotification(
                charging_station={"model": "T201", "vendor_name": "Test"}, reason="PowerUp"
            )
        )
        if result.status == "Accepted":
            self.rec.accepted.set()
        return str(result.status)

    async def boot_until_accepted(self, timeout_s: float = 10.0) -> None:
        if await self.boot() != "Accepted":
            async with asyncio.timeout(timeout_s):
                await self.rec.accepted.wait()

    @on("SetVariables")
    def on_set_variables(self, set_variable_data: list[dict[str, Any]]) -> Any:
        results = []
        for item in set_variable_data:
            key = f"{item['component']['name']}.{item['variable']['name']}"
            self.rec.configuration[key] = item["attribute_value"]
            results.append(
                {"attribute_status": "Accepted", "component": item["component"], "variable": item["variable"]}
            )
        return result201.SetVariables(set_variable_result=results)

    @on("GetVariables")
    def on_get_variables(self, get_variable_data: list[dict[str, Any]]) -> Any:
        results = []
        for item in get_variable_data:
            key = f"{item['component']['name']}.{item['variable']['name']}"
            value = self.rec.configuration.get(key)
            entry = {
                "attribute_status": "Accepted" if value is not None else "UnknownVariable",
                "component": item["component"],
                "variable": item["variable"],
            }
            if value is not None:
                entry["attribute_value"] = value
            results.append(entry)
        return result201.GetVariables(get_variable_result=results)

    @on("SetChargingProfile")
    def on_set_charging_profile(self, evse_id: int, charging_profile: dict[str, Any]) -> Any:
        self.rec.profiles.append((evse_id, charging_profile))
        return result201.SetChargingProfile(status=self.rec.profile_status)

    @on("TriggerMessage")
    def on_trigger_message(self, requested_message: str, evse: dict[str, Any] | None = None) -> Any:
        self.rec.triggers.append(requested_message)
        return result201.TriggerMessage(status="Accepted")

    @after("TriggerMessage")
    async def after_trigger_message(self, requested_message: str, evse: dict[str, Any] | None = None) -> None:
        if requested_message == "BootNotification":
            await self.boot()

    @on("GetTransactionStatus")
    def on_get_transaction_status(self, transaction_id: str | None = None) -> Any:
        self.rec.commands.append(("GetTransactionStatus", {"transaction_id": transaction_id}))
        return result201.GetTransactionStatus(**self.rec.transaction_status)

    @on("RequestStartTransaction")
    def on_request_start(self, id_token: dict[str, Any], remote_start_id: int, **kw: Any) -> Any:
        self.rec.commands.append(("RequestStartTransaction", {"id_token": id_token, **kw}))
        return result201.RequestStartTransaction(status="Accepted")

    @on("RequestStopTransaction")
    def on_request_stop(self, transaction_id: str) -> Any:
        self.rec.commands.append(("RequestStopTransaction", {"transaction_id": transaction_id}))
        return result201.RequestStopTransaction(status="Accepted")

    @on("Reset")
    def on_reset(self, type: str, evse_id: int | None = None) -> Any:
        self.rec.commands.append(("Reset", {"type": type}))
        return result201.Reset(status="Accepted")

    @on("ChangeAvailability")
    def on_change_availability(self, operational_status: str, evse: dict[str, Any] | None = None) -> Any:
        self.rec.commands.append(
            ("ChangeAvailability", {"operational_status": operational_status, "evse": evse})
        )
        return result201.ChangeAvailability(status="Accepted")


@contextlib.asynccontextmanager
async def connected(
    url: str,
    identity: str,
    *,
    version: str = "1.6",
    password: str | None = PASSWORD,
    username: str | None = None,
    **connect_kwargs: Any,
) -> AsyncIterator[Any]:
    """A test charger connected and running its receive loop."""
    headers = basic_auth(username or identity, password) if password is not None else {}
    protocol = "ocpp1.6" if version == "1.6" else "ocpp2.0.1"
    options: dict[str, Any] = {"open_timeout": 5, "ping_interval": None, **connect_kwargs}
    async with websockets.connect(
        f"{url}/{identity}",
        subprotocols=[Subprotocol(protocol)],
        additional_headers=headers,
        **options,
    ) as connection:
        charger: Any = (Charger16 if version == "1.6" else Charger201)(identity, connection)
        task = asyncio.create_task(charger.start(), name=f"test-charger-{identity}")
        try:
            yield charger
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await task


def sample_values_16(
    energy_wh: int, currents: tuple[float, float, float], context: str = "Sample.Periodic"
) -> list[dict[str, Any]]:
    sampled = [
        {
            "value": str(energy_wh),
            "measurand": "Energy.Active.Import.Register",
            "unit": "Wh",
            "context": context,
        }
    ]
    for phase, amps in zip(("L1", "L2", "L3"), currents, strict=True):
        sampled.append(
            {
                "value": f"{amps:.1f}",
                "measurand": "Current.Import",
                "phase": phase,
                "unit": "A",
                "context": context,
            }
        )
    return [{"timestamp": now_iso(), "sampledValue": sampled}]


def sample_values_201(
    energy_wh: float,
    currents: tuple[float, float, float],
    context: str = "Sample.Periodic",
    timestamp: str | None = None,
) -> list[dict[str, Any]]:
    sampled: list[dict[str, Any]] = [
        {
            "value": energy_wh,
            "measurand": "Energy.Active.Import.Register",
            "unitOfMeasure": {"unit": "Wh"},
            "context": context,
        }
    ]
    for phase, amps in zip(("L1", "L2", "L3"), currents, strict=True):
        sampled.append(
            {
                "value": amps,
                "measurand": "Current.Import",
                "phase": phase,
                "unitOfMeasure": {"unit": "A"},
                "context": context,
            }
        )
    return [{"timestamp": timestamp or now_iso(), "sampledValue": sampled}]


__all__ = [
    "PASSWORD",
    "PASSWORD_HASH",
    "Charger16",
    "Charger201",
    "Harness",
    "call16",
    "call201",
    "charge_point",
    "connected",
    "fast_config",
    "field",
    "now_iso",
    "running_csms",
    "sample_values_16",
    "sample_values_201",
]
