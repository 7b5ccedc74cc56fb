"""systemd service notifications (sd_notify(3)): READY=1, STATUS=, WATCHDOG=1, RELOADING=1, STOPPING=1.

The protocol is one datagram of newline-separated assignments to the AF_UNIX socket named by
$NOTIFY_SOCKET (a path, or `@name` for the abstract namespace). That is a few lines, so it is written
here rather than taken from a library: `sdnotify` on PyPI has had no release since 2017 and
`systemd-python` needs libsystemd headers and a C build on the box.

Outside systemd (no $NOTIFY_SOCKET) every call is a no-op that returns False. Sending never blocks
the event loop and never raises: a lost datagram is counted, and the watchdog retries by itself.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping
from types import TracebackType

import structlog

log = structlog.get_logger(__name__)


class SystemdNotifier:
    """Notifications to the service manager, configured from the environment systemd gives a service."""

    def __init__(self, env: Mapping[str, str] | None = None, *, pid: int | None = None) -> None:
        environ = os.environ if env is None else env
        self._address = _address(environ.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval_s = _watchdog_interval_s(environ, os.getpid() if pid is None else pid)
        self._socket: socket.socket | None = None
        self.sent = 0
        self.dropped = 0

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens for notifications."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=VALUE` assignments in one datagram; True when it was handed to the socket."""
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8")
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto(payload, self._address)
        except OSError as exc:
            self.dropped += 1
            log.warning("sd_notify_failed", error=str(exc), dropped=self.dropped)
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([_status(status)] if status is not None else []))

    def status(self, text: str) -> bool:
        return self.notify(_status(text))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([_status(status)] if status is not None else []))

    def reloading(self, status: str | None = None) -> bool:
        """RELOADING=1: the service re-reads its configuration; READY=1 follows when it is done."""
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        extra = [_status(status)] if status is not None else []
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}", *extra)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> SystemdNotifier:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


async def run_watchdog(notifier: SystemdNotifier, healthy: Callable[[], bool]) -> None:
    """Ping the watchdog at half its interval while `healthy()` holds; return at once without one.

    When `healthy()` turns false the pings stop, and systemd restarts the daemon after WatchdogSec:
    a wedged control loop is worse than a restart (chargers hold their safe current meanwhile).
    The interval is real time (systemd's), so this sleeps on the event loop, not on an injected
    Clock, which may run accelerated in simulations.
    """
    interval_s = notifier.watchdog_interval_s
    if interval_s is None or not notifier.enabled:
        return
    was_healthy = True
    while True:
        is_healthy = healthy()
        if is_healthy:
            notifier.watchdog()
        elif was_healthy:
            log.error("watchdog_withheld", reason="daemon unhealthy", restart_after_s=interval_s)
        was_healthy = is_healthy
        await asyncio.sleep(interval_s / 2)


def _address(value: str) -> str | None:
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # unset, or a transport this module does not speak (vsock:)


def _watchdog_interval_s(env: Mapping[str, str], pid: int) -> float | None:
    """sd_watchdog_enabled(3): WATCHDOG_USEC, if WATCHDOG_PID is unset or names this process."""
    usec = env.get("WATCHDOG_USEC", "")
    owner = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 1_000_000


def _status(text: str) -> str:
    # A newline would end the assignment and start a bogus one.
    return "STATUS=" + " ".join(text.splitlines())
