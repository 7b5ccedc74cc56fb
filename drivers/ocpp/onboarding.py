"""How many chargers are brought up at once: a reconnect storm is admitted in batches.

A charger that connects costs the event loop a handshake, its BootNotification and status messages
and the provisioning calls: a few milliseconds in all. After a switch reboot 300 chargers reconnect
within a second; served all at once, their callbacks queue in front of the meter reader and the
control loop, and a meter list waits behind them (bench.login_storm's re-storm). So at most
`max_concurrent` chargers are between admission and provisioned; the next waits in its HTTP upgrade
(a waiting socket costs no CPU) and is refused with 503 + Retry-After when no slot frees within
`max_wait_s`. A slot is released when its charger is provisioned, when its connection ends, or
`hold_s` after admission, whichever comes first: a charger that does not boot, or a handshake that
fails after admission, cannot keep one, and admissions never fall below `max_concurrent` per
`hold_s`.

Invariant: `in_use` is the number of slots handed out and not yet released; each slot is released
exactly once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.contracts import Clock
from drivers.ocpp.config import OnboardingConfig


@dataclass(eq=False, slots=True)
class Slot:
    """One charger's turn; `release` is idempotent."""

    on_release: Callable[[], None] = field(repr=False)
    released: bool = False
    expiry: asyncio.TimerHandle | None = field(default=None, repr=False)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        if self.expiry is not None:
            self.expiry.cancel()
        self.on_release()


class OnboardingGate:
    def __init__(self, config: OnboardingConfig, clock: Clock) -> None:
        self.config = config
        self.in_use = 0
        self._clock = clock
        self._slots = asyncio.Semaphore(config.max_concurrent)

    async def acquire(self) -> Slot | None:
        """A slot, or None when none freed within `max_wait_s` (the caller refuses as busy)."""
        try:
            async with asyncio.timeout(self._clock.loop_seconds(self.config.max_wait_s)):
                await self._slots.acquire()
        except TimeoutError:
            return None
        self.in_use += 1
        slot = Slot(self._free)
        hold_s = self._clock.loop_seconds(self.config.hold_s)
        slot.expiry = asyncio.get_running_loop().call_later(hold_s, slot.release)
        return slot

    def retry_after_s(self) -> int:
        """A jittered retry delay, so refused chargers do not all come back in the same second."""
        return random.randint(2, 2 + max(1, round(self.config.max_wait_s)))

    def _free(self) -> None:
        self.in_use -= 1
        self._slots.release()
