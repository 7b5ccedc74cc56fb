"""The one module that owns the MQTT client (aiomqtt over paho-mqtt).

A `Connector` opens one connection at a time: MQTT 5 with a persistent session (no clean start, a
session expiry), falling back to MQTT 3.1.1 (clean_session=False) when the broker refuses version 5;
TLS with server verification and an optional client certificate; a retained last will on the status
topic. The relay, telemetry and command parts only see the small `Publisher` protocol.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import aiomqtt
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from drivers.contracts import Clock

from .config import UplinkConfig
from .topics import STATUS_SCHEMA, Topics

log = structlog.get_logger(__name__)

_UNSUPPORTED_PROTOCOL_V5 = 132  # CONNACK reason code 0x84
_UNSUPPORTED_PROTOCOL_V311 = 1  # CONNACK return code 1


class Publisher(Protocol):
    """What the uplink's parts may do with a live connection."""

    @property
    def mqtt5(self) -> bool: ...

    async def publish(
        self, topic: str, payload: bytes, *, qos: int, retain: bool = False, expiry_s: int | None = None
    ) -> None: ...


def dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def is_protocol_refusal(exc: BaseException) -> bool:
    """A CONNACK saying the broker does not speak the MQTT version we asked for."""
    if not isinstance(exc, aiomqtt.MqttCodeError):
        return False
    rc = exc.rc
    if isinstance(rc, ReasonCode):
        return rc.value == _UNSUPPORTED_PROTOCOL_V5
    return rc in (_UNSUPPORTED_PROTOCOL_V5, _UNSUPPORTED_PROTOCOL_V311)


class Connection:
    """One live connection. Dies with the network: any error surfaces as aiomqtt.MqttError."""

    def __init__(self, client: aiomqtt.Client, *, mqtt5: bool, publish_timeout_s: float) -> None:
        self._client = client
        self._mqtt5 = mqtt5
        self._publish_timeout_s = publish_timeout_s

    @property
    def mqtt5(self) -> bool:
        return self._mqtt5

    async def publish(
        self, topic: str, payload: bytes, *, qos: int, retain: bool = False, expiry_s: int | None = None
    ) -> None:
        properties = None
        if self._mqtt5 and expiry_s is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.MessageExpiryInterval = expiry_s
        await self._client.publish(
            topic, payload, qos=qos, retain=retain, properties=properties, timeout=self._publish_timeout_s
        )

    async def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        async for message in self._client.messages:
            yield message.topic.value, bytes(message.payload)


class Connector:
    """Opens connections to the configured broker; remembers a fallback to MQTT 3.1.1."""

    def __init__(self, config: UplinkConfig, topics: Topics, clock: Clock) -> None:
        self._config = config
        self._topics = topics
        self._clock = clock
        self._mqtt5 = config.protocol != "3.1.1"

    @property
    def mqtt5(self) -> bool:
        return self._mqtt5

    def _client(self) -> aiomqtt.Client:
        cfg = self._config
        broker = cfg.broker()
        will = aiomqtt.Will(
            self._topics.status,
            dumps({"schema": STATUS_SCHEMA, "site_id": cfg.site_id, "online": False}),
            qos=1,
            retain=True,
        )
        common: dict[str, Any] = {
            "hostname": broker.host,
            "port": broker.port,
            "identifier": cfg.client_id,
            "username": cfg.username,
            "password": cfg.password,
            "keepalive": cfg.keepalive_s,
            "timeout": self._clock.loop_seconds(cfg.connect_timeout_s),
            "will": will,
            "tls_context": cfg.tls_context(),
            "max_inflight_messages": cfg.window_rows,
        }
        if self._mqtt5:
            connect_properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            connect_properties.SessionExpiryInterval = cfg.session_expiry_s
            client = aiomqtt.Client(
                protocol=aiomqtt.ProtocolVersion.V5,
                clean_start=False,
                properties=connect_properties,
                **common,
            )
        else:
            client = aiomqtt.Client(protocol=aiomqtt.ProtocolVersion.V311, clean_session=False, **common)
        # aiomqtt warns above this many unconfirmed calls; a full relay window is normal here.
        client.pending_calls_threshold = cfg.window_rows + 100
        return client

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Connection]:
        """Connect, announce `online` (retained), subscribe to acks and commands."""
        client = self._client()
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            if self._config.protocol == "auto" and self._mqtt5 and is_protocol_refusal(exc):
                log.warning("mqtt_falling_back_to_3_1_1", reason=str(exc))
                self._mqtt5 = False
                client = self._client()
                await client.__aenter__()
            else:
                raise
        try:
            connection = Connection(
                client,
                mqtt5=self._mqtt5,
                publish_timeout_s=self._clock.loop_seconds(self._config.publish_timeout_s),
            )
            status = {
                "schema": STATUS_SCHEMA,
                "site_id": self._config.site_id,
                "online": True,
                "since_utc": self._clock.utc_now().isoformat().replace("+00:00", "Z"),
                "protocol": "5" if self._mqtt5 else "3.1.1",
            }
            await connection.publish(self._topics.status, dumps(status), qos=1, retain=True)
            await client.subscribe([(self._topics.ack, 1), (self._topics.commands, 1)])
            yield connection
        except BaseException as exc:
            await client.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        else:
            await client.__aexit__(None, None, None)

    async def say_offline(self, connection: Connection) -> None:
        """Before a deliberate disconnect: the broker sends the will only when the link dies."""
        payload = dumps({"schema": STATUS_SCHEMA, "site_id": self._config.site_id, "online": False})
        await connection.publish(self._topics.status, payload, qos=1, retain=True)
