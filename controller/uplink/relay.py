"""The outbox relay: ledger outbox rows → `sessions`/`events` topics at QoS 1, done on backend ack.

Per connection it keeps a window of at most `window_rows` rows published (or held, below) but not
yet acknowledged by the backend, publishing them in outbox order and pipelined (paho writes them to
the socket in call order; the broker's PUBACKs are awaited concurrently). A row is done only when
its `msg_id` comes back on the `ack` topic; acknowledgements are written to the ledger in batches.
After a reconnect the relay starts again from the oldest unacknowledged row, and if no
acknowledgement arrives for `ack_timeout_s` it goes back and resends the window. Duplicates are
expected: the backend de-duplicates by `msg_id` (and by `session_id` + `seq`).

The order it promises is per session: a session's versions reach the backend for the first time in
version order, because a version is published only once the one before it is acknowledged (it is
held meanwhile; other sessions' rows go past it). Across sessions there is no order: a message the
broker dropped (a restart, a subscriber not back yet) is resent after later ones arrived.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
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


class _Window:
    """The rows of one connection that are published and not acknowledged (`outstanding`), and
    the rows held back behind an earlier version of their session that is (`held`)."""

    def __init__(self) -> None:
        self.outstanding: dict[str, tuple[OutboxRow, str | None]] = {}  # by msg_id, with its session
        self._in_flight: dict[str, str] = {}  # session id -> msg_id of its outstanding version
        self._held: dict[str, deque[OutboxRow]] = {}
        self._held_rows = 0

    def __len__(self) -> int:
        return len(self.outstanding) + self._held_rows

    def add(self, row: OutboxRow) -> bool:
        """Take a row; True when it is to be published now, False when it waits for its session."""
        session = _session_of(row)
        if session is not None and session in self._in_flight:
            self._held.setdefault(session, deque()).append(row)
            self._held_rows += 1
            return False
        self._publish(row, session)
        return True

    def ack(self, msg_id: str) -> tuple[bool, OutboxRow | None]:
        """(whether it was in this window, the row of its session to publish next)."""
        entry = self.outstanding.pop(msg_id, None)
        if entry is None:
            return self._drop_held(msg_id), None
        session = entry[1]
        if session is None or self._in_flight.get(session) != msg_id:
            return True, None
        del self._in_flight[session]
        queue = self._held.get(session)
        if not queue:
            return True, None
        following = queue.popleft()
        self._held_rows -= 1
        if not queue:
            del self._held[session]
        self._publish(following, session)
        return True, following

    def _drop_held(self, msg_id: str) -> bool:
        """An acknowledgement of a held row (the backend had it from an earlier connection)."""
        for session, queue in self._held.items():
            for row in queue:
                if row.msg_id == msg_id:
                    queue.remove(row)
                    self._held_rows -= 1
                    if not queue:
                        del self._held[session]
                    return True
        return False

    def first_id(self) -> int:
        ids = [r.id for r, _ in self.outstanding.values()]
        ids += [r.id for queue in self._held.values() for r in queue]
        return min(ids)

    def _publish(self, row: OutboxRow, session: str | None) -> None:
        self.outstanding[row.msg_id] = (row, session)
        if session is not None:
            self._in_flight[session] = row.msg_id


_SESSION_ID = re.compile(r'"session_id":"([^"\\]{1,64})"')


def _session_of(row: OutboxRow) -> str | None:
    """The session a row announces a version of (the ledger writes compact JSON; a payload it
    cannot read has no session and so no order to keep)."""
    if row.kind is not OutboxKind.SESSION:
        return None
    found = _SESSION_ID.search(row.payload)
    return None if found is None else found.group(1)


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
        window = _Window()
        cursor = 0
        last_progress = self._clock.monotonic()
        self._ack_inbox.clear()

        def send(row: OutboxRow) -> None:
            publishes.create_task(self._send(pub, row), name=f"uplink-publish-{row.id}")
            if row.id > self._highest_sent_id:
                self._highest_sent_id = row.id
                self.published += 1
            else:
                self.resent += 1

        while True:
            self._wake.clear()
            room = cfg.window_rows - len(window)
            rows: list[OutboxRow] = []
            if room > 0:
                rows = await self._ledger.pending(after_id=cursor, limit=room)
                for row in rows:
                    cursor = row.id
                    if row.msg_id in self._acked_unflushed:
                        continue
                    if not window.outstanding:
                        last_progress = self._clock.monotonic()
                    if window.add(row):
                        send(row)
            for msg_id in self._ack_inbox:
                acked, released = window.ack(msg_id)
                if acked:
                    last_progress = self._clock.monotonic()
                if released is not None:
                    send(released)
            self._ack_inbox.clear()
            if window.outstanding and self._clock.monotonic() - last_progress >= cfg.ack_timeout_s:
                first = window.first_id()
                log.warning("uplink_ack_timeout_resending", outstanding=len(window), from_id=first)
                cursor = first - 1
                window = _Window()
                continue
            # A full page means there may be more rows waiting: fetch again without sleeping.
            if self._wake.is_set() or (rows and len(rows) == room and len(window) < cfg.window_rows):
                continue
            wait_s = cfg.outbox_poll_s
            if window.outstanding:
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
