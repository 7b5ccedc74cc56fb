"""SIGKILL of the daemon mid-publish: nothing lost, every duplicate removable by msg_id."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from controller.sessions.ledger import Ledger
from controller.uplink.topics import Topics
from tests.support import subprocess_env
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_backend import Backend
from tests.support.uplink_harness import fill, outbox_msg_ids
from tests.support.waiting import until

pytestmark = pytest.mark.integration

TOPICS = Topics("garage/v1", "test-site")


async def _start_runner(ledger: Path, url: str, run: int, *, write_per_s: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.uplink_runner", str(ledger), url,
        "--write", str(write_per_s), "--first", str(100_000 * (run + 1)),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=subprocess_env(),
    )  # fmt: skip
    assert proc.stdout is not None
    async with asyncio.timeout(20):
        assert (await proc.stdout.readline()).strip() == b"connected"
    return proc


async def test_sigkill_mid_publish_loses_nothing(broker: Mosquitto, tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    async with await Ledger.open(path) as ledger:
        await fill(ledger, 1500)
    backend = Backend(broker.port, TOPICS)
    backend_task = asyncio.create_task(backend.run(), name="test-backend")
    try:
        await backend.wait_subscribed()
        kills = 0
        for run in range(5):
            proc = await _start_runner(path, broker.url, run, write_per_s=200)
            # Kill it while it is publishing (and writing new sessions): at a few hundred deliveries.
            target = backend.distinct + 250
            await backend.wait_for(target, timeout_s=30)
            proc.send_signal(signal.SIGKILL)
            assert await proc.wait() == -signal.SIGKILL
            kills += 1
        # A last run, not killed and not writing, drains everything that was committed.
        proc = await _start_runner(path, broker.url, 99, write_per_s=0)
        try:
            async with await Ledger.open(path) as ledger:
                expected = await outbox_msg_ids(ledger)
                await backend.wait_for(len(expected), timeout_s=60)

                async def empty() -> bool:
                    return await ledger.backlog() == 0

                await until(empty, 30, "an empty outbox")
        finally:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    finally:
        backend_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await backend_task
    assert kills == 5
    assert len(expected) > 3000  # the killed runs wrote sessions of their own while publishing
    backend.check_exactly_once_per_session_in_order(expected)
