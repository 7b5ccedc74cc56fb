"""The virtual meter: samples ground truth on its vendor's cadence and pushes frames to an output."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

import structlog

from .cosem_time import OSLO
from .encoder import encode
from .faults import FaultInjector
from .model import ListType, MeterProfile, MeterState
from .outputs import Output
from .schedule import Slot, next_slot, slots_between
from .vendors import SPECS


class MeterClock(Protocol):
    """What the meter needs of `simulator.clock.SimClock`."""

    def utc_now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...

    def loop_seconds(self, seconds: float) -> float: ...


@dataclass(frozen=True)
class SentFrame:
    utc: datetime  # the slot the frame belongs to (simulated time)
    list_type: ListType
    data: bytes  # what went on the line, faults included


@dataclass(frozen=True)
class _Registers:
    hour_utc: datetime
    state: MeterState


class VirtualMeter:
    """Runs until cancelled, sending each slot's list at its simulated wall-clock instant.

    A slot whose time has passed is still sent (so that an accelerated run loses no frames when
    the host is briefly busy), unless the meter has fallen more than `max_real_lag_s` of real time
    behind: then the missed slots are skipped and counted, as a real meter never sends a burst.
    """

    def __init__(
        self,
        profile: MeterProfile,
        state: Callable[[], MeterState],
        clock: MeterClock,
        output: Output,
        faults: FaultInjector | None = None,
        *,
        on_frame: Callable[[SentFrame], None] | None = None,
        max_real_lag_s: float = 5.0,
    ) -> None:
        self.profile = profile
        self._state = state
        self._clock = clock
        self.output = output
        self.faults = faults
        self._on_frame = on_frame
        self._max_real_lag_s = max_real_lag_s
        self._spec = SPECS[profile.vendor]
        self._frozen: MeterState | None = None
        self._registers: _Registers | None = None
        self.frames_sent: Counter[ListType] = Counter()
        self.frames_silenced = 0
        self.slots_skipped = 0
        self.bytes_sent = 0
        self._log = structlog.get_logger("simulator.han_meter").bind(
            vendor=str(profile.vendor), meter_id=profile.meter_id
        )

    async def run(self) -> None:
        self._log.info("han_meter.started", phases=self.profile.phases, grid=self.profile.grid)
        slot = next_slot(self.profile.vendor, self._clock.utc_now())
        try:
            while True:
                now = self._clock.utc_now()
                behind_s = (now - slot.utc).total_seconds()
                if behind_s < 0:
                    await self._clock.sleep(-behind_s)
                    # Judged again on waking: the host may have been suspended during the sleep.
                    continue
                if self._clock.loop_seconds(behind_s) > self._max_real_lag_s:
                    missed = 1 + len(slots_between(self.profile.vendor, slot.utc, now))
                    self.slots_skipped += missed
                    self._log.warning("han_meter.slots_skipped", count=missed, behind_s=behind_s)
                    slot = next_slot(self.profile.vendor, now)
                    continue
                await self.send_slot(slot)
                slot = next_slot(self.profile.vendor, slot.utc)
        finally:
            self._log.info("han_meter.stopped", frames_sent=sum(self.frames_sent.values()))

    def _sample(self, frozen: bool) -> MeterState:
        if not frozen:
            self._frozen = None
            return self._state()
        if self._frozen is None:
            self._frozen = self._state()
        return self._frozen

    async def send_slot(self, slot: Slot) -> None:
        """Build and send one slot's frame now (the scheduler's step, public for drills)."""
        plan = self.faults.plan(slot.utc) if self.faults is not None else None
        if plan is not None and plan.silent:
            self.frames_silenced += 1
            return
        state = self._sample(plan is not None and plan.frozen)
        local = slot.utc.astimezone(OSLO)
        on_the_hour = local.minute == 0 and local.second == 0 and local.microsecond == 0
        if on_the_hour:
            self._registers = _Registers(slot.utc, state)

        clock_time = local
        if slot.list_type is ListType.HOURLY and self._spec.hourly_clock_at_hour:
            # The meter froze its registers at the hour and names that hour in its clock object.
            hour = slot.utc.replace(minute=0, second=0, microsecond=0)
            clock_time = hour.astimezone(OSLO)
            registers = self._registers
            if registers is not None and registers.hour_utc == hour:
                state = replace(
                    state,
                    energy_import_wh=registers.state.energy_import_wh,
                    energy_export_wh=registers.state.energy_export_wh,
                    reactive_energy_import_varh=registers.state.reactive_energy_import_varh,
                    reactive_energy_export_varh=registers.state.reactive_energy_export_varh,
                )

        frame = encode(self.profile, slot.list_type, state, clock_time)
        data = self.faults.mangle(frame) if self.faults is not None else frame
        await self.output.write(data)
        self.frames_sent[slot.list_type] += 1
        self.bytes_sent += len(data)
        if self._on_frame is not None:
            self._on_frame(SentFrame(slot.utc, slot.list_type, data))
