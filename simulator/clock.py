"""The simulator's clock: simulated seconds that may run faster than real time.

Written apart from drivers.clock on purpose (the simulator imports nothing of the product). Two
processes built with the same epoch and speed agree on the simulated wall clock, which is how the
simulated garage and the daemon under test share meter timestamps and 15-minute periods.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta


class SimClock:
    def __init__(
        self, speed: float = 1.0, epoch_utc: datetime | None = None, *, real_start_s: float | None = None
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        epoch = datetime.now(UTC) if epoch_utc is None else epoch_utc
        if epoch.tzinfo is None:
            raise ValueError("epoch_utc must be timezone-aware")
        self.speed = speed
        self.epoch_utc = epoch.astimezone(UTC)
        # `real_start_s` on the system's monotonic clock lets several processes (the garage, a daemon
        # restarted after a kill) share one simulated timeline.
        self.real_start_s = time.monotonic() if real_start_s is None else real_start_s

    def monotonic(self) -> float:
        """Simulated seconds since the epoch."""
        return (time.monotonic() - self.real_start_s) * self.speed

    def utc_now(self) -> datetime:
        return self.epoch_utc + timedelta(seconds=self.monotonic())

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    async def sleep_until(self, sim_s: float) -> None:
        await self.sleep(sim_s - self.monotonic())

    def loop_seconds(self, seconds: float) -> float:
        return seconds / self.speed
