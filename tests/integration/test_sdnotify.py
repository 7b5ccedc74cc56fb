"""sd_notify over a real AF_UNIX datagram socket, as systemd listens for it."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.sdnotify import SystemdNotifier, run_watchdog

pytestmark = pytest.mark.integration


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()


@pytest.fixture
def abstract_listener() -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"sitectl-test-{os.getpid()}-{os.urandom(4).hex()}"
    sock.bind("\0" + name)
    sock.settimeout(5)
    yield sock, "@" + name
    sock.close()


def test_ready_status_watchdog_stopping(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    with SystemdNotifier({"NOTIFY_SOCKET": path}) as notifier:
        assert notifier.enabled
        assert notifier.ready("meter ok, 12 chargers")
        assert notifier.status("charging 7 cars\nline two")
        assert notifier.watchdog()
        assert notifier.stopping()
        assert notifier.sent == 4
    received = [sock.recv(4096).decode() for _ in range(4)]
    assert received == [
        "READY=1\nSTATUS=meter ok, 12 chargers",
        "STATUS=charging 7 cars line two",
        "WATCHDOG=1",
        "STOPPING=1",
    ]


def test_abstract_namespace(abstract_listener: tuple[socket.socket, str]) -> None:
    sock, address = abstract_listener
    with SystemdNotifier({"NOTIFY_SOCKET": address}) as notifier:
        assert notifier.ready()
    assert sock.recv(4096) == b"READY=1"


def test_not_under_systemd_is_a_no_op() -> None:
    with SystemdNotifier({}) as notifier:
        assert not notifier.enabled
        assert notifier.watchdog_interval_s is None
        assert not notifier.ready()
        assert (notifier.sent, notifier.dropped) == (0, 0)


def test_unsupported_transport_is_a_no_op() -> None:
    assert not SystemdNotifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled


def test_listener_gone_is_counted_not_raised(tmp_path: Path) -> None:
    with SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "nobody")}) as notifier:
        assert not notifier.ready()
        assert not notifier.watchdog()
        assert notifier.dropped == 2


@pytest.mark.parametrize(
    ("env", "interval_s"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "4242"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # another process's watchdog
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], interval_s: float | None) -> None:
    assert SystemdNotifier({"NOTIFY_SOCKET": "/run/x", **env}, pid=4242).watchdog_interval_s == interval_s


async def test_watchdog_pings_only_while_healthy(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    sock.setblocking(False)
    health = iter([True, True, True, False])
    calls = 0
    unhealthy_rounds = asyncio.Event()

    def healthy() -> bool:
        nonlocal calls
        calls += 1
        if calls >= 6:
            unhealthy_rounds.set()
        return next(health, False)

    with SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"}) as notifier:
        task = asyncio.create_task(run_watchdog(notifier, healthy))
        loop = asyncio.get_running_loop()
        pings = [await asyncio.wait_for(loop.sock_recv(sock, 64), 5) for _ in range(3)]
        await asyncio.wait_for(unhealthy_rounds.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert pings == [b"WATCHDOG=1"] * 3
    with pytest.raises(BlockingIOError):
        sock.recv(64)
    assert notifier.sent == 3


async def test_watchdog_without_interval_returns() -> None:
    await asyncio.wait_for(run_watchdog(SystemdNotifier({}), lambda: True), 5)
