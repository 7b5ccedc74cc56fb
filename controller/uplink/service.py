"""The uplink as one async context manager: a TaskGroup of named tasks around one MQTT connection.

    async with Uplink(config, ledger, clock, command_handler=handler) as uplink:
        uplink.telemetry.update_site(...)
        ...

Tasks for the uplink's whole life: `uplink-connection` (connect, reconnect with jittered
exponential backoff), `uplink-acks` (acknowledgements → ledger), `uplink-commands` (one command at
a time), `uplink-backlog` (backlog alarm), `uplink-prune` (old acknowledged rows). Per connection,
in a TaskGroup that ends with the connection: `uplink-receive`, `uplink-relay`, `uplink-telemetry`,
`uplink-events`, `uplink-cmd-results`.
"""

from __future__ import annotations

import asyncio
import random
from types import TracebackType
from typing import Self

import aiomqtt
import structlog

from controller.sessions.ledger import Ledger
from drivers.contracts import Clock

from .backoff import Backoff
from .commands import CommandHandler, CommandProcessor
from .config import UplinkConfig
from .connection import Connection, Connector
from .events import EventPublisher
from .relay import OutboxRelay
from .telemetry import TelemetryPublisher
from .topics import Topics

log = structlog.get_logger(__name__)


class Uplink:
    def __init__(
        self,
        config: UplinkConfig,
        ledger: Ledger,
        clock: Clock,
        *,
        command_handler: CommandHandler,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        config.tls_context()  # unreadable certificate files are a configuration error, raised here
        self.topics = Topics(config.prefix, config.site_id)
        self._clock = clock
        self._connector = Connector(config, self.topics, clock)
        self._backoff = Backoff(config.backoff_initial_s, config.backoff_max_s, rng or random.Random())
        self.events = EventPublisher(self.topics, clock)
        self.relay = OutboxRelay(ledger, self.topics, clock, config, on_backlog_alarm=self._backlog_alarm)
        self.telemetry = TelemetryPublisher(self.topics, clock, config)
        self.commands = CommandProcessor(command_handler, ledger, self.topics, clock, config)
        self._group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._connection: Connection | None = None
        self._connected = asyncio.Event()
        self.connects = 0
        self.connection_failures = 0
        self.bad_messages = 0

    @property
    def mqtt5(self) -> bool:
        """The protocol of the current (or next) connection: False after a fallback to 3.1.1."""
        return self._connector.mqtt5

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def __aenter__(self) -> Self:
        group = asyncio.TaskGroup()
        await group.__aenter__()
        self._group = group
        for name, coro in (
            ("uplink-connection", self._connection_loop()),
            ("uplink-acks", self.relay.run_ack_writer()),
            ("uplink-commands", self.commands.run_worker()),
            ("uplink-backlog", self.relay.run_backlog_monitor()),
            ("uplink-prune", self.relay.run_pruner()),
        ):
            self._tasks.append(group.create_task(coro, name=name))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        connection = self._connection
        if connection is not None and exc is None:
            try:
                async with asyncio.timeout(2.0):
                    await self._connector.say_offline(connection)
            except (aiomqtt.MqttError, TimeoutError) as error:
                log.info("uplink_offline_status_not_sent", error=str(error))
        for task in self._tasks:
            task.cancel()
        assert self._group is not None
        await self._group.__aexit__(exc_type, exc, tb)
        self._tasks.clear()
        self._group = None

    def _backlog_alarm(self, state: str, backlog_rows: int) -> None:
        self.events.emit(
            "outbox_backlog",
            "warning" if state == "raised" else "info",
            state=state,
            backlog_rows=backlog_rows,
            bound_rows=self.config.backlog_alarm_rows,
        )

    async def _connection_loop(self) -> None:
        broker = self.config.broker()
        while True:
            try:
                async with self._connector.connect() as connection:
                    self.connects += 1
                    self._backoff.reset()
                    self._connection = connection
                    self._connected.set()
                    log.info(
                        "uplink_connected",
                        host=broker.host,
                        port=broker.port,
                        tls=broker.tls,
                        mqtt5=connection.mqtt5,
                    )
                    async with asyncio.TaskGroup() as tasks:
                        tasks.create_task(self._receive(connection), name="uplink-receive")
                        tasks.create_task(self.relay.run(connection), name="uplink-relay")
                        tasks.create_task(self.telemetry.run(connection), name="uplink-telemetry")
                        tasks.create_task(self.events.run(connection), name="uplink-events")
                        tasks.create_task(self.commands.run_replies(connection), name="uplink-cmd-results")
            except* aiomqtt.MqttError as group:
                self.connection_failures += 1
                log.warning(
                    "uplink_disconnected",
                    error="; ".join(str(e) for e in group.exceptions),
                    failures=self.connection_failures,
                )
            finally:
                self._connection = None
                self._connected.clear()
            delay_s = self._backoff.next_delay_s()
            log.info("uplink_reconnect_wait", delay_s=round(delay_s, 2))
            await self._clock.sleep(delay_s)

    async def _receive(self, connection: Connection) -> None:
        async for topic, payload in connection.messages():
            if topic == self.topics.ack:
                self.relay.on_ack_payload(payload)
                continue
            name = self.topics.command_name(topic)
            if name is not None:
                self.commands.submit(name, payload)
                continue
            self.bad_messages += 1
            log.warning("uplink_unexpected_message", topic=topic[:200], bad_messages=self.bad_messages)
