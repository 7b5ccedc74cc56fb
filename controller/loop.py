"""The event-driven control loop: readings and statuses in, setpoints out (DESIGN.md §5).

Every meter reading triggers a recomputation at once; so does a tick, because a silent meter sends
nothing that could trigger one, and staleness is exactly what must be acted on; so does every charger
status change (a car's state, a charger gone, a transaction) and every dispatcher acknowledgement
that changed a budget. A report that only refreshes a charger's measurements (MeterValues) triggers
one no sooner than `min_gap_s` after the previous cycle started: a garage of 300 chargers sends about
30 such reports a second, and a cycle for each would cost a slow CPU all of its time. Events that
arrive while a cycle runs or waits are folded into the next one, so a burst costs one allocation.

A cycle: the dispatcher's budgets → the site's snapshot → `allocate` (fair shares) → the pacer (what
to command now) → the dispatcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from controller.allocation import Allocation, SiteSnapshot, allocate
from controller.dispatch import Dispatcher
from controller.pacing import DispatchState, Paced, Pacer
from controller.site.snapshot import SiteState
from drivers.contracts import ChargerEvent, ChargerStatus, Clock, EnergySample, MeterReading

log = structlog.get_logger("loop")


@dataclass(frozen=True, slots=True)
class Cycle:
    """One recomputation: what the allocator saw, what it decided, what was commanded."""

    number: int
    snapshot: SiteSnapshot
    allocation: Allocation
    trigger: str  # "meter", "charger" (a change), "report" (measurements only), "tick" or "dispatch"
    started_mono: float
    compute_s: float  # wall-clock seconds spent (for the benchmark and `sitectl status`)
    paced: Mapping[str, Paced] = field(default_factory=dict)


CycleObserver = Callable[[Cycle], None]


class ControlLoop:
    def __init__(
        self,
        site: SiteState,
        dispatcher: Dispatcher,
        clock: Clock,
        *,
        pacer: Pacer | None = None,
        tick_s: float = 2.0,
        min_gap_s: float = 0.5,
        observers: Sequence[CycleObserver] = (),
    ) -> None:
        self._site = site
        self._dispatcher = dispatcher
        self._pacer = pacer or Pacer()
        self._clock = clock
        self._tick_s = tick_s
        self._min_gap_s = min_gap_s
        self._observers = list(observers)
        self._inbox: list[MeterReading | ChargerEvent] = []
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._last_started_mono: float | None = None
        self._trigger = "tick"
        self._online: dict[str, bool] = {}
        # per charger: online, and (state, vehicle, transaction) as last reported to a sink
        self._seen: dict[str, tuple[bool, tuple[object, ...]]] = {}
        self.cycles = 0
        self.errors = 0
        self.last: Cycle | None = None

    # ----------------------------------------------------------------------- sinks (never block)

    def meter_sink(self, reading: MeterReading) -> None:
        self._inbox.append(reading)
        self._trigger = "meter"
        self._wake.set()
        self._urgent.set()

    def charger_sink(self, event: ChargerEvent) -> None:
        self._inbox.append(event)
        if self._news(event):
            if self._trigger != "meter":
                self._trigger = "charger"
            self._urgent.set()
        elif self._trigger == "tick":
            self._trigger = "report"
        self._wake.set()

    def _news(self, event: ChargerEvent) -> bool:
        """A change the allocation must see now: a car's state, a charger gone, a transaction.
        A report that only refreshes the measurements (MeterValues) is not; it waits its turn."""
        if not isinstance(event, ChargerStatus):
            return not isinstance(event, EnergySample)
        seen = (event.state, event.vehicle_connected, event.transaction_id)
        before = self._seen.get(event.charger_id)
        self._seen[event.charger_id] = (event.online, seen)
        if before is None:
            return True
        was_online, was_seen = before
        return was_seen != seen or (was_online and not event.online)

    def poke(self) -> None:
        """The dispatcher learnt something (an ack or a failure): budgets may have changed."""
        if self._trigger in ("tick", "report"):
            self._trigger = "dispatch"
        self._wake.set()
        self._urgent.set()

    def add_observer(self, observer: CycleObserver) -> None:
        self._observers.append(observer)

    # ------------------------------------------------------------------------------------ engine

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._clock.loop_seconds(self._tick_s)):
                    await self._wake.wait()
            if self._trigger == "report":
                await self._hold_off()
            self._wake.clear()
            self._urgent.clear()
            trigger, self._trigger = self._trigger, "tick"
            try:
                self.cycle(trigger)
            except Exception:
                # A bug in one cycle must not stop the loop: the chargers' leases keep them safe
                # meanwhile, and the watchdog notices when cycles stop succeeding.
                self.errors += 1
                log.exception("loop.cycle_failed", trigger=trigger)

    async def _hold_off(self) -> None:
        """Wait out the rest of `min_gap_s` since the last cycle, unless something urgent arrives."""
        if self._last_started_mono is None:
            return
        remaining_s = self._last_started_mono + self._min_gap_s - self._clock.monotonic()
        if remaining_s <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._clock.loop_seconds(remaining_s)):
                await self._urgent.wait()

    def cycle(self, trigger: str = "tick") -> Cycle:
        started = time.perf_counter()
        inbox, self._inbox = self._inbox, []
        for item in inbox:
            if isinstance(item, MeterReading):
                self._site.ingest_meter(item)
            else:
                self._site.ingest_charger(item)
                if isinstance(item, ChargerStatus):
                    self._note_connection(item)
        now_mono = self._last_started_mono = self._clock.monotonic()
        dispatcher = self._dispatcher
        budgets = {cid: dispatcher.budget(cid) for cid in self._site.charger_ids() if dispatcher.drives(cid)}
        snapshot = self._site.snapshot(now_mono, self._clock.utc_now(), budgets)
        allocation = allocate(snapshot)
        self._site.note_allocation(allocation, snapshot.now)
        paced = self._pacer.pace(
            snapshot,
            allocation,
            {cid: budget.setpoint_a for cid, budget in budgets.items()},
            now_mono=now_mono,
            dispatch=DispatchState(dispatcher.last_decrease_ack_mono, dispatcher.decreases_pending()),
            holding=self._site.holding,
        )
        dispatcher.submit({cid: value.current_a for cid, value in paced.items()})
        self.cycles += 1
        cycle = Cycle(
            self.cycles, snapshot, allocation, trigger, now_mono, time.perf_counter() - started, paced
        )
        self.last = cycle
        for observer in self._observers:
            try:
                observer(cycle)
            except Exception:
                log.exception("loop.observer_failed", observer=getattr(observer, "__name__", repr(observer)))
        return cycle

    def _note_connection(self, status: ChargerStatus) -> None:
        was_online = self._online.get(status.charger_id)
        self._online[status.charger_id] = status.online
        if status.online and was_online is not True:
            # A (re)connected charger has lost or may have lost its dynamic limit: its value is
            # unknown again, and its first limit is no higher than its safe current.
            self._dispatcher.forget(status.charger_id)
