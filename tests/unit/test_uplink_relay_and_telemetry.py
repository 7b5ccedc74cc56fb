"""The outbox relay's window, acks and resends (with a recording publisher); the telemetry schedule."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt
import pytest

from controller.sessions.ledger import Ledger
from controller.uplink.relay import OutboxRelay
from controller.uplink.telemetry import ChargerTelemetry, SiteTelemetry, TelemetrySchedule
from controller.uplink.topics import Topics
from drivers.clock import SystemClock
from tests.support.uplink_harness import fast_config, fill
from tests.support.waiting import until

TOPICS = Topics("garage/v1", "test-site")


class RecordingPublisher:
    mqtt5 = True

    def __init__(self, fail_after: int | None = None) -> None:
        self.sent: list[tuple[str, dict[str, object]]] = []
        self.fail_after = fail_after

    async def publish(
        self, topic: str, payload: bytes, *, qos: int, retain: bool = False, expiry_s: int | None = None
    ) -> None:
        assert qos == 1
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            raise aiomqtt.MqttError("link down")
        self.sent.append((topic, json.loads(payload)))

    def msg_ids(self) -> list[str]:
        return [str(p["msg_id"]) for _, p in self.sent]


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    async with await Ledger.open(tmp_path / "l.sqlite") as opened:
        await fill(opened, 25, stop=False)
        yield opened


@contextlib.asynccontextmanager
async def relaying(relay: OutboxRelay, pub: RecordingPublisher) -> AsyncIterator[None]:
    tasks = [
        asyncio.create_task(relay.run(pub), name="test-relay"),
        asyncio.create_task(relay.run_ack_writer(), name="test-acks"),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def ack(*msg_ids: str) -> bytes:
    return json.dumps({"schema": "garage.ack/1", "msg_ids": list(msg_ids)}).encode()


async def test_window_bounds_unacknowledged_rows_and_acks_advance_it(ledger: Ledger) -> None:
    relay = OutboxRelay(
        ledger, TOPICS, SystemClock(), fast_config("mqtt://h", window_rows=10, ack_timeout_s=60)
    )
    pub = RecordingPublisher()
    order = [r.msg_id for r in await ledger.pending(limit=100)]
    async with relaying(relay, pub):
        await until(lambda: len(pub.sent) == 10, 5, "a full window")
        await asyncio.sleep(0.3)
        assert len(pub.sent) == 10  # no more without acks
        relay.on_ack_payload(ack(*order[:5]))
        await until(lambda: len(pub.sent) == 15, 5, "five more after five acks")
        relay.on_ack_payload(ack(*order[5:15]))
        await until(lambda: len(pub.sent) == 25, 5, "the rest")
        relay.on_ack_payload(ack(*order[15:]))
        await until(lambda: relay.acked == 25, 5, "acks written to the ledger")
    assert pub.msg_ids() == order
    assert {topic for topic, _ in pub.sent} == {TOPICS.sessions}
    assert await ledger.backlog() == 0


async def test_without_acks_the_window_is_resent_from_the_oldest(ledger: Ledger) -> None:
    relay = OutboxRelay(
        ledger, TOPICS, SystemClock(), fast_config("mqtt://h", window_rows=4, ack_timeout_s=0.2)
    )
    pub = RecordingPublisher()
    order = [r.msg_id for r in await ledger.pending(limit=100)]
    async with relaying(relay, pub):
        await until(lambda: len(pub.sent) >= 8, 5, "a resend")
        relay.on_ack_payload(ack(order[0], order[2]))
        await until(lambda: relay.resent >= 6, 5, "a resend of the rest")
    assert pub.msg_ids()[:8] == order[:4] * 2
    assert await ledger.backlog() == 23  # nothing deleted, only acknowledged rows are done


async def test_bad_acks_are_counted_and_ignored(ledger: Ledger) -> None:
    relay = OutboxRelay(ledger, TOPICS, SystemClock(), fast_config("mqtt://h"))
    for payload in (b"{", b"[]", b'{"schema": "other/1", "msg_ids": []}', b'{"schema": "garage.ack/1"}'):
        relay.on_ack_payload(payload)
    assert relay.bad_acks == 4


async def test_a_failing_link_ends_the_relay_with_the_mqtt_error(ledger: Ledger) -> None:
    relay = OutboxRelay(ledger, TOPICS, SystemClock(), fast_config("mqtt://h"))
    with pytest.raises(ExceptionGroup) as raised:
        await asyncio.wait_for(relay.run(RecordingPublisher(fail_after=3)), 5)
    assert raised.group_contains(aiomqtt.MqttError)
    assert await ledger.backlog() == 25


# ------------------------------------------------------------------------------------ telemetry

T = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)
SITE = SiteTelemetry(
    T, "normal", (80.0, None, 70.0), (123.0, 123.0, 123.0), (43.0, None, 53.0), (16.0, 16.0, 0.0)
)
CP = ChargerTelemetry("CP-01", True, "charging", (16.0, 16.0, None), 16.0, 1000.0, 10)


def test_site_every_interval_full_charger_list_every_minute() -> None:
    schedule = TelemetrySchedule(
        fast_config("mqtt://h", site_telemetry_every_s=10, charger_telemetry_every_s=60)
    )
    schedule.update_site(SITE)
    schedule.update_charger(CP)
    schedule.restart(0.0)
    sent_site, sent_full = [], []
    for second in range(121):
        send_site, batch, full = schedule.due(float(second))
        if send_site:
            sent_site.append(second)
        if batch:
            assert full
            sent_full.append(second)
    assert sent_site == list(range(0, 121, 10))
    assert sent_full == [0, 60, 120]


def test_charger_changes_go_out_early_but_rate_limited_and_coalesced() -> None:
    schedule = TelemetrySchedule(fast_config("mqtt://h", charger_telemetry_min_gap_s=2.0))
    schedule.update_charger(CP)
    schedule.restart(0.0)
    assert schedule.due(0.0)[1] == [CP]
    # Measured current and energy are not changes worth a message of their own.
    assert not schedule.update_charger(replace(CP, current_a=(15.0, 15.2, None), energy_register_wh=1200.0))
    assert schedule.due(1.0)[1] is None
    # State changes are, but not more often than the minimum gap, and they coalesce.
    assert schedule.update_charger(replace(CP, state="suspended_ev"))
    other = replace(CP, charger_id="CP-02", state="preparing", setpoint_a=None)
    schedule.update_charger(other)
    assert schedule.due(1.5)[1] is None
    assert schedule.next_wake_s(1.5) == pytest.approx(0.5)
    _, batch, full = schedule.due(2.0)
    assert not full
    assert [c.charger_id for c in batch or []] == ["CP-01", "CP-02"]
    assert batch is not None
    assert batch[0].state == "suspended_ev"
    # A change that is undone before it was sent is not sent.
    schedule.update_charger(replace(CP, state="suspended_ev", setpoint_a=6.0))
    schedule.update_charger(replace(CP, state="suspended_ev"))
    assert schedule.due(10.0)[1] is None


def test_nothing_to_send_means_no_busy_waiting() -> None:
    schedule = TelemetrySchedule(fast_config("mqtt://h", site_telemetry_every_s=10))
    schedule.restart(0.0)
    assert schedule.due(0.0) == (False, None, False)
    assert schedule.next_wake_s(0.0) == 10
    schedule.update_site(SITE)
    assert schedule.due(0.0)[0]
    assert schedule.next_wake_s(0.0) == 10


async def test_a_sessions_next_version_waits_for_the_previous_ones_ack(tmp_path: Path) -> None:
    # Three sessions of three versions each (start, sample, stop), written session by session: the
    # relay publishes each session's first version, holds the rest behind it, and releases the next
    # version of a session only when its previous one is acknowledged.
    async with await Ledger.open(tmp_path / "s.sqlite") as ledger:
        await fill(ledger, 3, stop=True)
        rows = await ledger.pending(limit=100)
        by_session: dict[str, list[str]] = {}
        for row in rows:
            by_session.setdefault(json.loads(row.payload)["session_id"], []).append(row.msg_id)
        assert len(by_session) == 3 and all(len(v) >= 2 for v in by_session.values())
        relay = OutboxRelay(ledger, TOPICS, SystemClock(), fast_config("mqtt://h", window_rows=50))
        pub = RecordingPublisher()
        async with relaying(relay, pub):
            firsts = {versions[0] for versions in by_session.values()}
            await until(lambda: set(pub.msg_ids()) == firsts, 5, "every session's first version")
            versions = next(iter(by_session.values()))
            relay.on_ack_payload(ack(versions[0]))
            await until(lambda: versions[1] in pub.msg_ids(), 5, "the acknowledged session's next version")
            assert set(pub.msg_ids()) == firsts | {versions[1]}  # the other sessions still wait
            # Acknowledgements of held versions too (a backend that had them from before).
            for v in by_session.values():
                relay.on_ack_payload(ack(*reversed(v)))
            await until(lambda: relay.acked == len(rows), 5, "every row acknowledged")
        published = pub.msg_ids()
        for versions in by_session.values():
            sent = [m for m in published if m in versions]
            assert sent == versions[: len(sent)]  # a prefix, in version order
