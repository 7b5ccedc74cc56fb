"""A rig that steps one virtual charger's model on the simulated clock, as the garage does, next to
a CSMS built on the `ocpp` library."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from simulator.cars import Car, CarSpec
from simulator.chargers import ChargerSpec, VirtualCharger, make_charger
from simulator.clock import SimClock
from tests.integration.sim_csms import CsmsState, running_csms

SPEED = 40.0
EPOCH = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)


@dataclasses.dataclass
class Rig:
    """Steps a charger's model on the simulated clock, as the garage does, and keeps its history."""

    charger: VirtualCharger
    clock: SimClock
    csms: CsmsState
    history: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    stepped: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    async def step_forever(self) -> None:
        while True:
            t = self.clock.monotonic()
            self.charger.step(t, self.clock.epoch_utc + timedelta(seconds=t))
            self.history.append((t, self.charger.connectors[0].current_a))
            self.stepped.set()
            await self.clock.sleep(0.25)

    def point(self) -> Any:
        return self.csms.points[self.charger.spec.identity]

    async def sim_sleep(self, seconds: float) -> None:
        await self.clock.sleep(seconds)

    async def until(self, predicate: Any, timeout_sim_s: float = 300.0) -> None:
        async with asyncio.timeout(self.clock.loop_seconds(timeout_sim_s)):
            while not predicate():
                self.stepped.clear()
                await self.stepped.wait()

    def now_utc(self) -> datetime:
        return self.clock.epoch_utc + timedelta(seconds=self.clock.monotonic())


@contextlib.asynccontextmanager
async def rig(state: CsmsState | None = None, version: str = "1.6", **spec_kw: Any) -> AsyncIterator[Rig]:
    state = state or CsmsState()
    clock = SimClock(SPEED, EPOCH)
    async with running_csms(state) as (url, _):
        kw: dict[str, Any] = {
            "identity": "CP1",
            "fuse": "c1",
            "lines": ("L2", "L3", "L1"),
            "reconnect_s": 2.0,
        }
        kw.update(spec_kw)
        charger = make_charger(
            ChargerSpec(version=version, **kw),  # type: ignore[arg-type]
            grid="IT",
            nominal_voltage_v=230.0,
            clock=clock,
            csms_url=url,
        )
        r = Rig(charger, clock, state)
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(charger.run()), group.create_task(r.step_forever())]
            try:
                yield r
            finally:
                for task in tasks:
                    task.cancel()


def one_phase_car(**kw: Any) -> Car:
    spec = CarSpec(max_current_a=32, phases=1, response_delay_s=2.0, battery_kwh=60, **kw)
    return Car(spec, soc=0.3, power_per_amp_w=230.0)
