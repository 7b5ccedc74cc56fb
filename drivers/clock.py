"""Clock implementations behind `drivers.contracts.Clock`."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta


class SystemClock:
    """Real time: the box in production."""

    def monotonic(self) -> float:
        return time.monotonic()

    def utc_now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def loop_seconds(self, seconds: float) -> float:
        return seconds


class ScaledClock:
    """Accelerated time for runs against the simulator: `speed` simulated seconds per real second.

    Two processes that construct a ScaledClock with the same `epoch_utc` and `speed` at about the same
    moment agree on the simulated wall clock, which is what lets the daemon and the simulator share
    15-minute billing periods and meter timestamps while running faster than real time.
    """

    def __init__(self, speed: float, epoch_utc: datetime, *, real_start_s: float | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"clock speed must be positive, got {speed}")
        if epoch_utc.tzinfo is None:
            raise ValueError("epoch_utc must be timezone-aware")
        self.speed = speed
        self._epoch_utc = epoch_utc.astimezone(UTC)
        self.real_start_s = time.monotonic() if real_start_s is None else real_start_s

    def monotonic(self) -> float:
        return (time.monotonic() - self.real_start_s) * self.speed

    def utc_now(self) -> datetime:
        return self._epoch_utc + timedelta(seconds=self.monotonic())

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    def loop_seconds(self, seconds: float) -> float:
        return seconds / self.speed
