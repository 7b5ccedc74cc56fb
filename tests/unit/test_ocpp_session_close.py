"""An outbound OCPP call on a connection that closes under it: one clear failure, nothing left over."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from drivers.clock import SystemClock
from drivers.contracts import CommandOutcome
from drivers.ocpp.counters import Counters
from drivers.ocpp.session import CallFailed, RpcSession


class ClosingTransport:
    """The connection drops while a frame is being sent: the receive side marks the session closed
    (failing the call in flight), and the send itself fails."""

    def __init__(self) -> None:
        self.session: RpcSession | None = None

    async def send(self, message: str) -> None:
        assert self.session is not None
        self.session.mark_closed()
        await asyncio.sleep(0)
        raise OSError("connection closed: received 1001 (going away)")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass


async def test_a_call_whose_send_fails_as_the_connection_closes_leaves_no_unretrieved_error() -> None:
    # Seen at the end of every run against the simulated garage (tests/hil): the chargers went away
    # while SetChargingProfile calls were being sent, and asyncio logged "Future exception was never
    # retrieved" at error level for each, in a log operators read with `journalctl -p err`.
    reported: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        transport = ClosingTransport()
        session = RpcSession("CP-1", "1.6", transport, {}, Counters(), SystemClock())
        transport.session = session
        with pytest.raises(CallFailed) as failed:
            await session.call("ClearCache", {}, timeout_s=5.0)
        assert failed.value.outcome is CommandOutcome.OFFLINE
        del failed
        gc.collect()
    finally:
        loop.set_exception_handler(previous)
    assert [c.get("message") for c in reported] == []
