"""The cloud backend as the tests play it: receives session messages, de-duplicates, acknowledges.

It keeps every delivery (duplicates included) so a test can check order and completeness.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from controller.uplink.topics import Topics


class Backend:
    def __init__(self, port: int, topics: Topics, *, client_id: str = "backend") -> None:
        self._port = port
        self._topics = topics
        self._client_id = client_id
        self.deliveries: list[dict[str, Any]] = []
        self.first_seen: dict[str, int] = {}
        self.events: list[dict[str, Any]] = []
        self.acking = True
        self._to_ack: list[str] = []
        self._progress = asyncio.Event()
        self._subscribed = asyncio.Event()
        self.connects = 0

    @property
    def distinct(self) -> int:
        return len(self.first_seen)

    async def run(self) -> None:
        """Stay subscribed across broker restarts; a persistent session keeps what arrives meanwhile."""
        while True:
            try:
                props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
                props.SessionExpiryInterval = 3600
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self._port,
                    identifier=self._client_id,
                    protocol=aiomqtt.ProtocolVersion.V5,
                    clean_start=False,
                    properties=props,
                    keepalive=5,
                ) as client:
                    self.connects += 1
                    await client.subscribe([(self._topics.sessions, 1), (self._topics.events, 1)])
                    self._subscribed.set()
                    async with asyncio.TaskGroup() as tasks:
                        tasks.create_task(self._acker(client))
                        async for message in client.messages:
                            self._receive(message.topic.value, bytes(message.payload))
            except* aiomqtt.MqttError:
                pass
            await asyncio.sleep(0.1)

    def _receive(self, topic: str, payload: bytes) -> None:
        data = json.loads(payload)
        if topic == self._topics.events:
            self.events.append(data)
            if "msg_id" in data and data.get("kind") != "outbox_backlog":
                self._to_ack.append(data["msg_id"])
            return
        self.deliveries.append(data)
        self.first_seen.setdefault(data["msg_id"], len(self.deliveries) - 1)
        self._to_ack.append(data["msg_id"])
        self._progress.set()

    async def _acker(self, client: aiomqtt.Client) -> None:
        while True:
            await asyncio.sleep(0.02)
            if not self.acking or not self._to_ack:
                continue
            batch, self._to_ack = self._to_ack[:1000], self._to_ack[1000:]
            payload = json.dumps({"schema": "garage.ack/1", "msg_ids": batch})
            await client.publish(self._topics.ack, payload, qos=1)

    async def wait_for(self, distinct: int, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self.distinct < distinct:
                    self._progress.clear()
                    await self._progress.wait()
        assert self.distinct >= distinct, f"backend has {self.distinct} of {distinct} messages"

    async def wait_subscribed(self, timeout_s: float = 10.0) -> None:
        """Until the backend has subscribed (as a real backend is, before the box publishes)."""
        async with asyncio.timeout(timeout_s):
            await self._subscribed.wait()

    def check_exactly_once_per_session_in_order(self, expected_msg_ids: Sequence[str]) -> int:
        """What the uplink promises (controller/uplink/relay.py): every expected message arrived,
        nothing else did, one msg_id per session version, and each session's versions were first
        delivered in version order. Across sessions there is no order.

        Returns the number of duplicate deliveries (which de-duplication removes).
        """
        missing = [m for m in expected_msg_ids if m not in self.first_seen]
        assert not missing, f"{len(missing)} messages lost, e.g. {missing[:3]}"
        unexpected = set(self.first_seen) - set(expected_msg_ids)
        assert not unexpected, f"{len(unexpected)} messages the outbox never had"
        versions: dict[tuple[str, int], str] = {}
        last_seq: dict[str, int] = {}
        for index in sorted(self.first_seen.values()):
            data = self.deliveries[index]
            key = (data["session_id"], data["seq"])
            assert versions.setdefault(key, data["msg_id"]) == data["msg_id"], f"two messages for {key}"
            assert data["seq"] > last_seq.get(data["session_id"], 0), (
                f"session {key[0]}'s versions out of order"
            )
            last_seq[data["session_id"]] = data["seq"]
        return len(self.deliveries) - len(self.first_seen)


def main() -> None:
    """`python -m tests.support.mqtt_backend PORT SITE_ID`: a backend process that acknowledges."""
    import sys

    backend = Backend(int(sys.argv[1]), Topics("garage/v1", sys.argv[2]), client_id=f"backend-{sys.argv[2]}")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(backend.run())


if __name__ == "__main__":
    main()
