"""The daemon in the test's own event loop, on real time, for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from controller.app import Daemon, Tuning
from controller.settings import load_settings
from controller.site_checks import site_checks
from drivers.clock import SystemClock


@contextlib.asynccontextmanager
async def daemon_running(site_file: Path) -> AsyncIterator[Daemon]:
    """The daemon on `site_file` (checked as `sitectl run` checks it), ready; stopped on the way out."""
    settings = load_settings(site_file, {}, failsafe_budget_check=site_checks)
    daemon = Daemon(settings, SystemClock(), tuning=Tuning(tick_s=0.5, command_timeout_s=3.0))
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop), name="daemon-under-test")
    try:
        async with asyncio.timeout(15):
            await daemon.ready.wait()
        yield daemon
    finally:
        stop.set()
        async with asyncio.timeout(20):
            await task
