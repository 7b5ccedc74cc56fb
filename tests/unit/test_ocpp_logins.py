"""The login verifier: remembered passwords, bounded full checks, busy refusals, low-priority workers."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from drivers.ocpp import logins, passwords
from drivers.ocpp.config import MIB, LoginConfig
from drivers.ocpp.logins import LoginBusy, LoginVerifier, pool_size, scrypt_bytes
from drivers.ocpp.passwords import hash_password

PASSWORD = "right-password-0123456"
WRONG = "wrong-password-0123456"
# Real scrypt of 128 KiB, above the inline bound: the pool's bookkeeping is under test, not the cost.
STORED = hash_password(PASSWORD, log2_n=10, r=1, p=1)


def test_the_pool_is_bounded_by_the_cpus_and_by_the_memory_budget() -> None:
    assert scrypt_bytes(14, 8, 1) == 16 * MIB
    assert pool_size(cpus=2, memory_budget_bytes=64 * MIB, check_bytes=16 * MIB) == 2
    assert pool_size(cpus=16, memory_budget_bytes=64 * MIB, check_bytes=16 * MIB) == 4
    assert pool_size(cpus=4, memory_budget_bytes=8 * MIB, check_bytes=16 * MIB) == 1


async def test_a_proven_password_is_remembered_and_a_wrong_one_always_pays_the_full_check() -> None:
    async with LoginVerifier(LoginConfig(workers=1)) as verifier:
        assert await verifier.verify("CP1", PASSWORD, STORED)
        assert await verifier.verify("CP1", PASSWORD, STORED)
        assert (verifier.full_checks, verifier.cached_hits) == (1, 1)
        for _ in range(3):
            assert not await verifier.verify("CP1", WRONG, STORED)
        assert (verifier.full_checks, verifier.cached_hits) == (4, 1)
        # The remembered pair belongs to CP1 only.
        assert await verifier.verify("CP2", PASSWORD, STORED)
        assert verifier.full_checks == 5


async def test_a_changed_hash_drops_what_was_remembered() -> None:
    async with LoginVerifier(LoginConfig(workers=1)) as verifier:
        assert await verifier.verify("CP1", PASSWORD, STORED)
        new_stored = hash_password("a-new-password-0123456", log2_n=10, r=1, p=1)
        assert not await verifier.verify("CP1", PASSWORD, new_stored)
        assert verifier.full_checks == 2
        assert await verifier.verify("CP1", "a-new-password-0123456", new_stored)


async def test_the_cache_holds_at_most_its_bound() -> None:
    async with LoginVerifier(LoginConfig(workers=2, cache_entries=3)) as verifier:
        for i in range(8):
            assert await verifier.verify(f"CP{i}", PASSWORD, STORED)
        assert verifier.cache_size == 3
        assert await verifier.verify("CP7", PASSWORD, STORED)  # the newest stayed
        assert verifier.cached_hits == 1


@pytest.fixture
def counted_checks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Full checks that take 50 ms and record how many ran at once (peak in [0])."""
    peak = [0]
    running = [0]
    lock = threading.Lock()
    real = passwords.verify_password

    def slow(password: str, stored: str) -> bool:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            time.sleep(0.05)
            return real(password, stored)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(logins, "verify_password", slow)
    return peak


async def test_full_checks_run_no_more_than_the_pool_at_once_and_excess_logins_are_told_to_retry(
    counted_checks: list[int],
) -> None:
    config = LoginConfig(workers=2, max_waiting=6, max_wait_s=60.0)
    async with LoginVerifier(config) as verifier:
        results = await asyncio.gather(
            *(verifier.verify(f"CP{i}", PASSWORD, STORED) for i in range(20)), return_exceptions=True
        )
    assert counted_checks[0] == 2
    busy = [r for r in results if isinstance(r, LoginBusy)]
    assert results.count(True) == 6
    assert len(busy) == 14
    assert all(b.retry_after_s >= 1 and b.waiting == 6 for b in busy)
    assert verifier.busy_refusals == 14
    assert verifier.waiting == 0


async def test_a_login_that_would_wait_too_long_is_refused_before_the_queue_is_full(
    counted_checks: list[int],
) -> None:
    config = LoginConfig(workers=1, max_waiting=1000, max_wait_s=0.2)
    async with LoginVerifier(config) as verifier:
        for i in range(3):  # teach it that a check takes about 50 ms
            assert await verifier.verify(f"warm{i}", PASSWORD, STORED)
        results = await asyncio.gather(
            *(verifier.verify(f"CP{i}", PASSWORD, STORED) for i in range(30)), return_exceptions=True
        )
    admitted = results.count(True)
    # 0.2 s of waiting at one worker and ~50 ms (a moving average that starts at 100 ms) per check:
    # three; fewer on a machine so loaded that a 50 ms sleep takes much longer.
    assert 1 <= admitted <= 8, results
    assert all(isinstance(r, LoginBusy) for r in results if r is not True)


async def test_the_checks_run_on_threads_of_the_lowest_priority() -> None:
    async with LoginVerifier(LoginConfig(workers=1)) as verifier:
        assert await verifier.verify("CP1", PASSWORD, STORED)
        workers = [t for t in threading.enumerate() if t.name.startswith("ocpp-login")]
        assert len(workers) == 1
        assert workers[0].native_id is not None
        assert os.sched_getscheduler(workers[0].native_id) == os.SCHED_IDLE
        assert os.sched_getscheduler(0) != os.SCHED_IDLE  # the event loop's thread is untouched


async def test_a_hash_cheaper_than_a_thread_hop_is_checked_inline() -> None:
    cheap = hash_password(PASSWORD, log2_n=4, r=1, p=1)  # what simulated garages use
    async with LoginVerifier(LoginConfig(workers=1)) as verifier:
        assert await verifier.verify("CP1", PASSWORD, cheap)
        assert not await verifier.verify("CP2", WRONG, cheap)
        assert not await verifier.verify("CP3", PASSWORD, "not-a-hash")
        assert verifier.full_checks == 3
        assert not [t for t in threading.enumerate() if t.name.startswith("ocpp-login")]
