"""Alarms and state changes on `<prefix>/<site>/events` (QoS 1).

Events raised while offline wait in a bounded in-memory queue and go out after the next connect;
when the queue is full the oldest are dropped and counted. An event that must survive a restart
belongs in the ledger's outbox instead (`Ledger.add_event`), which the relay delivers like sessions.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any
from uuid import uuid4

import structlog

from drivers.contracts import Clock

from .connection import Publisher, dumps
from .topics import EVENT_SCHEMA, Topics

log = structlog.get_logger(__name__)


class EventPublisher:
    def __init__(self, topics: Topics, clock: Clock, *, max_queued: int = 200) -> None:
        self._topics = topics
        self._clock = clock
        self._queue: deque[dict[str, Any]] = deque()
        self._max_queued = max_queued
        self._wake = asyncio.Event()
        self.dropped = 0
        self.published = 0

    def emit(self, kind: str, severity: str, **fields: Any) -> dict[str, Any]:
        """Queue an event; returns the payload (with its `msg_id`) that will be sent."""
        payload: dict[str, Any] = {
            "schema": EVENT_SCHEMA,
            "msg_id": str(uuid4()),
            "site_id": self._topics.site_id,
            "kind": kind,
            "severity": severity,
            "created_utc": self._clock.utc_now().isoformat().replace("+00:00", "Z"),
            **fields,
        }
        if len(self._queue) >= self._max_queued:
            self._queue.popleft()
            self.dropped += 1
            log.warning("uplink_event_dropped", queued=len(self._queue), dropped=self.dropped)
        self._queue.append(payload)
        self._wake.set()
        return payload

    async def run(self, pub: Publisher) -> None:
        """Per connection: send queued events in order; an event leaves the queue once PUBACKed."""
        while True:
            self._wake.clear()
            while self._queue:
                await pub.publish(self._topics.events, dumps(self._queue[0]), qos=1)
                self._queue.popleft()
                self.published += 1
            await self._wake.wait()
