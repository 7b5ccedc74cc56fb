"""The uplink against a real mosquitto broker, with a test consumer playing the backend."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from controller.sessions.ledger import Ledger
from controller.uplink.service import Uplink
from controller.uplink.topics import Topics
from drivers.clock import SystemClock
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_backend import Backend
from tests.support.tcp_proxy import TcpProxy
from tests.support.uplink_harness import RecordingHandler, fast_config, fill, outbox_msg_ids
from tests.support.waiting import until

pytestmark = pytest.mark.integration

TOPICS = Topics("garage/v1", "test-site")


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    async with await Ledger.open(tmp_path / "ledger.sqlite") as opened:
        yield opened


@contextlib.asynccontextmanager
async def running(backend: Backend) -> AsyncIterator[Backend]:
    task = asyncio.create_task(backend.run(), name="test-backend")
    try:
        yield backend
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _drained(ledger: Ledger, timeout_s: float = 30.0) -> None:
    async def empty() -> bool:
        return await ledger.backlog() == 0

    await until(empty, timeout_s, "an empty outbox")


async def test_ten_thousand_queued_sessions_drain_in_order_exactly_once(
    broker: Mosquitto, ledger: Ledger
) -> None:
    await fill(ledger, 10_000, stop=False)  # 10 000 sessions, one message each
    expected = await outbox_msg_ids(ledger)
    assert len(expected) == 10_000
    async with running(Backend(broker.port, TOPICS)) as backend:
        await backend.wait_subscribed()  # the backend subscribes first, as a real one would be
        async with Uplink(fast_config(broker.url), ledger, SystemClock(), command_handler=RecordingHandler()):
            await backend.wait_for(10_000, timeout_s=60)
            await _drained(ledger)
    backend.check_exactly_once_per_session_in_order(expected)
    assert await ledger.pending() == []


async def test_status_is_retained_online_and_the_will_says_offline(broker: Mosquitto, ledger: Ledger) -> None:
    async def retained_status() -> dict[str, object]:
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe(TOPICS.status, qos=1)
            async with asyncio.timeout(5):
                async for message in client.messages:
                    return dict(json.loads(bytes(message.payload)))
        raise AssertionError("no status")

    async with TcpProxy(broker.port) as proxy:
        config = fast_config(f"mqtt://127.0.0.1:{proxy.port}", connect_timeout_s=1.0)
        async with Uplink(config, ledger, SystemClock(), command_handler=RecordingHandler()) as uplink:
            await asyncio.wait_for(uplink.wait_connected(), 5)
            status = await retained_status()
            assert status["online"] is True
            assert status["schema"] == "garage.status/1"
            assert status["protocol"] == "5"
            # The link dies without a DISCONNECT: the broker publishes the retained last will.
            proxy.block()

            async def online_is(value: bool) -> bool:
                return (await retained_status())["online"] is value

            await until(lambda: online_is(False), 10, "the last will")
            proxy.unblock()
            proxy.cut()
            await until(lambda: online_is(True), 10, "online again after reconnecting")
        # A deliberate stop says offline itself.
        assert (await retained_status())["online"] is False
        assert uplink.connects >= 2


async def test_broker_restarts_lose_and_duplicate_nothing(broker: Mosquitto, ledger: Ledger) -> None:
    await fill(ledger, 1500)
    async with running(Backend(broker.port, TOPICS)) as backend:
        await backend.wait_subscribed()
        async with Uplink(fast_config(broker.url), ledger, SystemClock(), command_handler=RecordingHandler()):
            for target in (400, 1500, 2400):
                await backend.wait_for(target, timeout_s=30)
                broker.restart()  # mid-drain: messages in flight on both sides
                await fill(ledger, 200, first=10_000 + target)
            expected = await outbox_msg_ids(ledger)
            await backend.wait_for(len(expected), timeout_s=30)
            await _drained(ledger)
    duplicates = backend.check_exactly_once_per_session_in_order(expected)
    assert backend.connects >= 4
    assert duplicates >= 0


async def test_a_blocked_network_loses_and_duplicates_nothing(broker: Mosquitto, ledger: Ledger) -> None:
    await fill(ledger, 1000)
    async with running(Backend(broker.port, TOPICS)) as backend, TcpProxy(broker.port) as proxy:
        await backend.wait_subscribed()
        config = fast_config(f"mqtt://127.0.0.1:{proxy.port}", connect_timeout_s=1.0)
        async with Uplink(config, ledger, SystemClock(), command_handler=RecordingHandler()) as uplink:
            await backend.wait_for(300, timeout_s=30)
            proxy.block()  # packets vanish: keepalive has to notice
            await fill(ledger, 300, first=20_000)
            # Keepalive 1 s: the client gives up after about 2 s.
            await until(lambda: uplink.connection_failures >= 1, 15, "the uplink noticing the black hole")
            proxy.unblock()
            await backend.wait_for(1200, timeout_s=30)
            proxy.cut()  # and a reset connection
            expected = await outbox_msg_ids(ledger)
            await backend.wait_for(len(expected), timeout_s=30)
            await _drained(ledger)
    backend.check_exactly_once_per_session_in_order(expected)
    assert uplink.connects >= 2
    assert uplink.connection_failures >= 1


async def test_an_unacknowledging_backend_gets_resends_and_the_backlog_alarm(
    broker: Mosquitto, ledger: Ledger
) -> None:
    await fill(ledger, 100)
    backend = Backend(broker.port, TOPICS)
    backend.acking = False
    async with running(backend):
        await backend.wait_subscribed()
        config = fast_config(broker.url, backlog_alarm_rows=150, window_rows=50, ack_timeout_s=0.5)
        async with Uplink(config, ledger, SystemClock(), command_handler=RecordingHandler()) as uplink:
            # The window of 50 rows holds 25 sessions: each one's start published, its stop held
            # behind it until the start is acknowledged (the per-session order).
            await backend.wait_for(25, timeout_s=10)
            await until(
                lambda: any(e.get("kind") == "outbox_backlog" for e in backend.events),
                10,
                "the backlog alarm",
            )
            alarm = next(e for e in backend.events if e.get("kind") == "outbox_backlog")
            assert alarm["state"] == "raised"
            assert alarm["backlog_rows"] == 200
            # Without acks the window is resent, never advanced past it, and nothing is deleted.
            await until(lambda: uplink.relay.resent >= 25, 10, "resends of the unacknowledged window")
            assert backend.distinct == 25
            assert await ledger.backlog() == 200
            backend.acking = True
            expected = await outbox_msg_ids(ledger)
            await backend.wait_for(200, timeout_s=20)
            await _drained(ledger)
            await until(lambda: not uplink.relay.backlog_alarm, 10, "the backlog alarm to clear")
    assert backend.check_exactly_once_per_session_in_order(expected) >= 25
