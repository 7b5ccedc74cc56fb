"""The outbox relay: ledger outbox rows → `sessions`/`events` topics at QoS 1, done on backend ack.

Per connection it keeps a window of at most `window_rows` rows published but not yet acknowledged
by the backend, publishing them in outbox order and pipelined (paho writes them to the socket in
call order; the broker's PUBACKs are awaited concurrently). A row is done only when its `msg_id`
comes back on the `ack` topic; acknowledgements are written to the ledger in batches. After a
reconnect the relay starts again from the oldest unacknowledged row, and if no acknowledgement
arrives for `ack_timeout_s` it goes back and resends the window. Duplicates are expected: the
backend de-duplicates by `msg_id` (and by `session_id` + `seq`).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

import structlog
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from controller.sessions.ledger import Ledger, OutboxKind, OutboxRow
from drivers.contracts import Clock

from .config import UplinkConfig
from .connection import Publisher
from .topics import ACK_SCHEMA, Topics

log = structlog.get_logger(__name__)

MsgId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class AckMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_: str = Field(alias="schema", pattern=f"^{re.escape(ACK_SCHEMA)}$")
    msg_ids: list[MsgId] = Field(max_length=10_000)


AlarmCallback = Callable[[str, int], None]
"""(state, backlog_rows): state is "raised" or "cleared"."""


class OutboxRelay:
    def __init__(
        self,
        ledger: Ledger,
        topics: Topics,
        clock: Clock,
        config: UplinkConfig,
        *,
        on_backlog_alarm: AlarmCallback | None = None,
    ) -> None:
        self._ledger = ledger
        self._topics = topics
        self._clock = clock
        self._config = config
        self._on_backlog_alarm = on_backlog_alarm
        self._wake = asyncio.Event()
        self._ack_inbox: list[str] = []  # for the relay's window
        self._ack_buffer: list[str] = []  # for the ledger writer
        self._acked_unflushed: set[str] = set()
        self._flush = asyncio.Event()
        self._highest_sent_id = 0
        self.published = 0
        self.resent = 0
        self.acked = 0
        self.bad_acks = 0
        self.backlog_rows: int | None = None
        self.backlog_alarm = False

    def _topic(self, row: OutboxRow) -> str:
        return self._topics.sessions if row.kind is OutboxKind.SESSION else self._topics.events

    # ------------------------------------------------------------------------------ acknowledgements

    def on_ack_payload(self, payload: bytes) -> None:
        """An `ack` message from the backend (called by the receive loop; never raises)."""
        try:
            ack = AckMessage.model_validate_json(payload)
        except ValidationError as exc:
            self.bad_acks += 1
            log.warning("uplink_bad_ack", errors=exc.error_count(), bad_acks=self.bad_acks)
            return
        fresh = [m for m in ack.msg_ids if m not in self._acked_unflushed]
        self._acked_unflushed.update(fresh)
        self._ack_buffer.extend(fresh)
        self._ack_inbox.extend(fresh)
        self._flush.set()
        self._wake.set()

    async def run_ack_writer(self) -> None:
        """Writes acknowledgements to the ledger in batches (one fsync per batch, not per message)."""
        while True:
            await self._flush.wait()
            await self._clock.sleep(self._config.ack_flush_s)
            self._flush.clear()
            batch, self._ack_buffer = self._ack_buffer, []
            if not batch:
                continue
            done = await self._ledger.ack(batch, self._clock.utc_now())
            self.acked += done
            self._acked_unflushed.difference_update(batch)

    # ---------------------------------------------------------------------------------- publishing

    async def run(self, pub: Publisher) -> None:
        """Relay over one connection until it fails (aiomqtt.MqttError propagates)."""
        unsubscribe = self._ledger.on_outbox_rows(self._wake.set)
        try:
            async with asyncio.TaskGroup() as publishes:
                await self._relay(pub, publishes)
        finally:
            unsubscribe()

    async def _relay(self, pub: Publisher, publishes: asyncio.TaskGroup) -> None:
        cfg = self._config
        outstanding: dict[int, str] = {}  # outbox id → msg_id, in outbox order
        by_msg_id: dict[str, int] = {}
        cursor = 0
        last_progress = self._clock.monotonic()
        self._ack_inbox.clear()
        while True:
            self._wake.clear()
            room = cfg.window_rows - len(outstanding)
            rows: list[OutboxRow] = []
            if room > 0:
                rows = await self._ledger.pending(after_id=cursor, limit=room)
                for row in rows:
                    cursor = row.id
                    if row.msg_id in self._acked_unflushed:
                        continue
                    if not outstanding:
                        last_progress = self._clock.monotonic()
                    outstanding[row.id] = row.msg_id
                    by_msg_id[row.msg_id] = row.id
                    publishes.create_task(self._send(pub, row), name=f"uplink-publish-{row.id}")
                    if row.id > self._highest_sent_id:
                        self._highest_sent_id = row.id
                        self.published += 1
                    else:
                        self.resent += 1
            for msg_id in self._ack_inbox:
                row_id = by_msg_id.pop(msg_id, None)
                if row_id is not None:
                    del outstanding[row_id]
                    last_progress = self._clock.monotonic()
            self._ack_inbox.clear()
            if outstanding and self._clock.monotonic() - last_progress >= cfg.ack_timeout_s:
                log.warning(
                    "uplink_ack_timeout_resending", outstanding=len(outstanding), from_id=min(outstanding)
                )
                cursor = min(outstanding) - 1
                outstanding.clear()
                by_msg_id.clear()
                continue
            # A full page means there may be more rows waiting: fetch again without sleeping.
            if self._wake.is_set() or (rows and len(rows) == room and len(outstanding) < cfg.window_rows):
                continue
            wait_s = cfg.outbox_poll_s
            if outstanding:
                wait_s = min(wait_s, max(0.0, last_progress + cfg.ack_timeout_s - self._clock.monotonic()))
            try:
                async with asyncio.timeout(self._clock.loop_seconds(wait_s)):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _send(self, pub: Publisher, row: OutboxRow) -> None:
        await pub.publish(self._topic(row), row.payload.encode(), qos=1)

    # ----------------------------------------------------------------------------- housekeeping

    async def run_backlog_monitor(self) -> None:
        """Raise an alarm when the unacknowledged backlog passes the bound; clear it below 80 %."""
        bound = self._config.backlog_alarm_rows
        while True:
            rows = await self._ledger.backlog()
            self.backlog_rows = rows
            if not self.backlog_alarm and rows > bound:
                self.backlog_alarm = True
                log.warning("uplink_backlog_alarm", backlog_rows=rows, bound_rows=bound)
                if self._on_backlog_alarm is not None:
                    self._on_backlog_alarm("raised", rows)
            elif self.backlog_alarm and rows <= bound * 0.8:
                self.backlog_alarm = False
                log.info("uplink_backlog_cleared", backlog_rows=rows, bound_rows=bound)
                if self._on_backlog_alarm is not None:
                    self._on_backlog_alarm("cleared", rows)
            await self._clock.sleep(self._config.backlog_check_s)

    async def run_pruner(self) -> None:
        """Delete acknowledged rows older than `prune_acked_after_s` (never unacknowledged ones)."""
        while True:
            cutoff = self._clock.utc_now() - timedelta(seconds=self._config.prune_acked_after_s)
            pruned = await self._ledger.prune_acked(cutoff)
            if pruned:
                log.info("uplink_outbox_pruned", rows=pruned)
            await self._clock.sleep(self._config.prune_every_s)
