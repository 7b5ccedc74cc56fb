"""Async helpers for HanReader tests: running a reader, waiting for conditions, fake ports."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

from drivers.clock import SystemClock
from drivers.han.reader import HanReader

WAIT_S = 5.0


@contextlib.asynccontextmanager
async def running(reader: HanReader) -> AsyncIterator[asyncio.Task[None]]:
    """Run `reader` in a task; cancel it and wait for it on the way out."""
    task = asyncio.get_running_loop().create_task(reader.run(), name="han-reader-under-test")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class OffsetClock(SystemClock):
    """Real time, shifted: proves readings are stamped by the injected clock, not by the system's."""

    MONOTONIC_OFFSET_S = 1_000_000.0
    EPOCH = datetime(2031, 1, 1, tzinfo=UTC)

    def __init__(self) -> None:
        self._start = time.monotonic()

    def monotonic(self) -> float:
        return time.monotonic() + self.MONOTONIC_OFFSET_S

    def utc_now(self) -> datetime:
        return self.EPOCH + timedelta(seconds=time.monotonic() - self._start)


class SocketPort:
    """A serial port whose far end (`device`) the test holds: write to it, or close it to unplug."""

    def __init__(self, *, with_fileno: bool = True) -> None:
        self._sock, self.device = socket.socketpair()
        self._sock.setblocking(False)
        self.closed = False
        if not with_fileno:
            self._sock.settimeout(0.05)

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self, size: int = 1) -> bytes:
        try:
            data = self._sock.recv(size)
        except TimeoutError:
            return b""  # pyserial: a read timeout returns what it has
        if not data:
            raise OSError("device reports readiness to read but returned no data (device disconnected?)")
        return data

    def close(self) -> None:
        self.closed = True
        self._sock.close()

    def unplug(self) -> None:
        self.device.close()

    def send(self, data: bytes) -> None:
        self.device.sendall(data)


class ThreadOnlyPort(SocketPort):
    """A port without a file descriptor (like rfc2217://): the reader must use its thread."""

    def __init__(self) -> None:
        super().__init__(with_fileno=False)

    def fileno(self) -> int:
        raise OSError("no file descriptor")
