"""Test-wide fixtures: leak detection (tasks and threads) and hypothesis profiles.

A test that leaves an asyncio task or a thread running fails: leaked tasks and threads are how a
daemon slowly dies on a box that runs for years, and they make later tests flaky.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "thorough", deadline=None, max_examples=2000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

THREAD_GRACE_S = 2.0


@pytest.fixture(autouse=True)
def _task_guard(request: pytest.FixtureRequest) -> None:
    # Only asynchronous tests have an event loop to inspect; the guard must run inside that loop.
    if request.node.get_closest_marker("asyncio") is not None:
        request.getfixturevalue("_no_leaked_tasks")


@pytest.fixture
async def _no_leaked_tasks() -> AsyncIterator[None]:
    yield
    current = asyncio.current_task()
    # Let tasks that were cancelled at teardown run their finally blocks before judging.
    for _ in range(20):
        leaked = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        if not leaked:
            return
        await asyncio.sleep(0.01)
    names = ", ".join(sorted(f"{t.get_name()} ({t.get_coro()!r})" for t in leaked))
    for task in leaked:
        task.cancel()
    pytest.fail(f"test leaked {len(leaked)} asyncio task(s): {names}")


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + THREAD_GRACE_S
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    if leaked:
        pytest.fail(f"test leaked {len(leaked)} thread(s): {', '.join(t.name for t in leaked)}")


@pytest.fixture
def no_site_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SITECTL_<SECTION>__<KEY> overrides from the developer's shell reach the site file tested."""
    for name in list(os.environ):
        if name.upper().startswith("SITECTL_") and "__" in name:
            monkeypatch.delenv(name)
