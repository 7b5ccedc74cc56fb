"""The onboarding gate: at most `max_concurrent` chargers between admission and provisioned."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from drivers.clock import ScaledClock
from drivers.ocpp.config import OnboardingConfig
from drivers.ocpp.onboarding import OnboardingGate

# 100 simulated seconds per real second: a 4 s wait is 40 ms here.
CLOCK = ScaledClock(100.0, datetime(2026, 11, 22, 17, 0, tzinfo=UTC))


def gate(max_concurrent: int = 2, max_wait_s: float = 4.0, hold_s: float = 1000.0) -> OnboardingGate:
    return OnboardingGate(OnboardingConfig(max_concurrent, max_wait_s, hold_s), CLOCK)


async def test_slots_up_to_the_bound_then_the_next_freed_one_goes_to_a_waiter() -> None:
    g = gate(max_concurrent=2, max_wait_s=1000.0)
    first, second = await g.acquire(), await g.acquire()
    assert first is not None and second is not None
    assert g.in_use == 2
    waiter = asyncio.create_task(g.acquire())
    await asyncio.sleep(0.05)
    assert not waiter.done()  # held in its upgrade, not refused
    first.release()
    third = await asyncio.wait_for(waiter, 5.0)
    assert third is not None
    assert g.in_use == 2
    for slot in (second, third):
        slot.release()
    assert g.in_use == 0


async def test_a_waiter_is_refused_after_max_wait() -> None:
    g = gate(max_concurrent=1, max_wait_s=4.0)
    held = await g.acquire()
    assert held is not None
    started = CLOCK.monotonic()
    assert await g.acquire() is None
    assert CLOCK.monotonic() - started >= 4.0 - 0.5
    assert g.in_use == 1  # the refused waiter took nothing
    held.release()
    assert await g.acquire() is not None


async def test_a_slot_frees_itself_after_hold_s_and_release_is_idempotent() -> None:
    g = gate(max_concurrent=1, hold_s=2.0)
    slot = await g.acquire()
    assert slot is not None
    # Never released by its owner (a handshake that failed after admission): it expires.
    again = await g.acquire()
    assert again is not None
    assert slot.released
    slot.release()
    slot.release()
    assert g.in_use == 1
    again.release()
    again.release()
    assert g.in_use == 0
    for retry_after_s in (g.retry_after_s() for _ in range(50)):
        assert 2 <= retry_after_s <= 6


def test_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        OnboardingConfig(max_concurrent=0)
    with pytest.raises(ValueError, match="positive"):
        OnboardingConfig(hold_s=0.0)
