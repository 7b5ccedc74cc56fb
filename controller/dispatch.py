"""Allocation → charger commands: ordering, deadband, leases, acknowledgements, retries.

The allocator says where every charger should end up; this module decides in which order and when the
commands go out so that the sum never overshoots on the way there (DESIGN.md §5):

- decreases go out at once, in one wave;
- increases go out only when no decrease is in flight or failed, and the last decrease has had
  `settle_s` to take effect (a car needs up to ~5 s to follow a new limit, IEC 61851-1);
- increases go out in waves at most every `increase_interval_s`, so the meter and the chargers have
  reported the effect of one wave before the next is decided (smoothing; without it a ramp decided
  on stale readings overshoots and the site pauses the cars it just started);
- a charger whose current value is unknown (just booted, or a command that timed out) is first
  brought to at most its safe current, which the fail-safe budget guarantees fits; the rest is an
  increase like any other;
- every acknowledged limit is a lease that expires on the charger; it is refreshed at half its life
  so a dead controller lets every charger fall back to its safe current within the lease;
- never more than one outstanding command per charger; a failed command is retried with backoff.

`budget_a()` tells the control loop the most each charger may be drawing right now given what is in
flight and what failed: an unknown always counts as the higher value.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

from drivers.contracts import Clock, CommandOutcome, CommandResult, CurrentLimiter

log = structlog.get_logger("dispatch")


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    lease_s: float = 60.0
    settle_s: float = 10.0
    increase_interval_s: float = 10.0
    deadband_a: float = 1.0
    command_timeout_s: float = 10.0
    retry_initial_s: float = 2.0
    retry_max_s: float = 30.0


@dataclass(frozen=True, slots=True)
class ChargerTarget:
    """Where the allocator wants one charger: 0 pauses. `safe_current_a` bounds a first step from unknown."""

    current_a: float
    safe_current_a: float
    phases: int | None = None


@dataclass(frozen=True, slots=True)
class ChargerCommand:
    charger_id: str
    current_a: float
    lease_s: float
    phases: int | None
    kind: str  # "decrease" | "increase" | "refresh"


@dataclass(slots=True)
class _ChargerState:
    target: ChargerTarget | None = None
    acked_a: float | None = None  # None: unknown (never acknowledged, or a command failed)
    acked_mono: float = -math.inf
    inflight: ChargerCommand | None = None
    failed_a: float | None = None  # the value of the last failed command, until a later ack
    failures: int = 0
    retry_mono: float = -math.inf
    generation_failed: int = -1


@dataclass(slots=True)
class DispatchCounters:
    sent: int = 0
    acked: int = 0
    failed: int = 0
    refreshes: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)


class Dispatcher:
    def __init__(
        self,
        limiters: Mapping[str, CurrentLimiter],
        clock: Clock,
        config: DispatchConfig | None = None,
        *,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._limiters = dict(limiters)
        self._clock = clock
        self._config = config or DispatchConfig()
        self.on_change = on_change
        self._states = {charger_id: _ChargerState() for charger_id in self._limiters}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._generation = 0
        self._last_decrease_ack_mono = -math.inf
        self._last_increase_wave_mono = -math.inf
        self.counters = DispatchCounters()

    # ------------------------------------------------------------------------------------ inputs

    def submit(self, targets: Mapping[str, ChargerTarget]) -> None:
        """Take the latest allocation. Never blocks; chargers not named keep their targets."""
        self._generation += 1
        for charger_id, target in targets.items():
            state = self._states.get(charger_id)
            if state is not None:
                state.target = target
        self._wake.set()

    def forget(self, charger_id: str) -> None:
        """The charger rebooted or reconnected: whatever it had is gone, so its value is unknown."""
        state = self._states.get(charger_id)
        if state is not None:
            state.acked_a = None
            state.acked_mono = -math.inf
            # Retry at once: a backoff earned while it was offline says nothing about it now.
            state.failures = 0
            state.retry_mono = -math.inf
            self._wake.set()

    # ----------------------------------------------------------------------------------- outputs

    def budget_a(self, charger_id: str) -> float | None:
        """The most the charger may be set to now; None when unknown (budget it at its maximum)."""
        state = self._states[charger_id]
        if state.acked_a is None:
            return None
        values = [state.acked_a]
        if state.inflight is not None:
            values.append(state.inflight.current_a)
        if state.failed_a is not None:
            values.append(state.failed_a)
        return max(values)

    def acked_a(self, charger_id: str) -> float | None:
        return self._states[charger_id].acked_a

    def outstanding(self) -> int:
        return sum(1 for s in self._states.values() if s.inflight is not None)

    # ------------------------------------------------------------------------------------- engine

    async def run(self) -> None:
        """Runs until cancelled; cancelling it cancels the commands in flight."""
        try:
            while True:
                wait_s = self._step()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._clock.loop_seconds(wait_s)):
                        await self._wake.wait()
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def _step(self) -> float:
        """Send what is due now; return how long until something may be due (clock seconds)."""
        now = self._clock.monotonic()
        next_due = now + self._config.lease_s / 2
        decreases_pending = False
        increases: list[tuple[str, ChargerCommand]] = []

        for charger_id, state in self._states.items():
            target = state.target
            if state.inflight is not None:
                if self._is_decrease(state, state.inflight.current_a):
                    decreases_pending = True
                continue
            if target is None:
                continue
            if now < state.retry_mono:
                next_due = min(next_due, state.retry_mono)
                if state.failed_a is not None and target.current_a < state.failed_a:
                    decreases_pending = True
                continue
            command = self._plan(charger_id, state, target, now)
            if command is None:
                refresh_at = state.acked_mono + self._config.lease_s / 2
                next_due = min(next_due, refresh_at)
                continue
            if command.kind == "increase":
                increases.append((charger_id, command))
            else:
                if command.kind == "decrease":
                    decreases_pending = True
                self._start(charger_id, state, command)

        settled_at = max(
            self._last_decrease_ack_mono + self._config.settle_s,
            self._last_increase_wave_mono + self._config.increase_interval_s,
        )
        gate_open = not decreases_pending and not self._failed_decrease_blocks() and now >= settled_at
        if increases and not decreases_pending and now < settled_at:
            next_due = min(next_due, settled_at)
        if increases and gate_open:
            self._last_increase_wave_mono = now
        for charger_id, command in increases:
            state = self._states[charger_id]
            if gate_open:
                self._start(charger_id, state, command)
                continue
            # A held-back increase must not let the current lease lapse: the charger would fall back
            # to its safe current, which may be more than it has now (a paused car would start).
            refresh_at = state.acked_mono + self._config.lease_s / 2
            if now >= refresh_at and state.acked_a is not None:
                refresh = ChargerCommand(
                    charger_id, state.acked_a, command.lease_s, command.phases, "refresh"
                )
                self._start(charger_id, state, refresh)
            else:
                next_due = min(next_due, refresh_at)
        return max(0.0, next_due - now)

    def _plan(
        self, charger_id: str, state: _ChargerState, target: ChargerTarget, now: float
    ) -> ChargerCommand | None:
        lease_s = self._config.lease_s
        wanted = _round_down(target.current_a)
        if state.acked_a is None:
            # Unknown: first step no higher than the safe current the fail-safe budget covers.
            first = min(wanted, _round_down(target.safe_current_a))
            return ChargerCommand(charger_id, first, lease_s, target.phases, "decrease")
        if wanted < state.acked_a:
            return ChargerCommand(charger_id, wanted, lease_s, target.phases, "decrease")
        rising = wanted - state.acked_a
        starting = state.acked_a == 0.0 and wanted > 0.0
        if rising > 0 and (rising >= self._config.deadband_a or starting):
            return ChargerCommand(charger_id, wanted, lease_s, target.phases, "increase")
        if now >= state.acked_mono + lease_s / 2:
            return ChargerCommand(charger_id, state.acked_a, lease_s, target.phases, "refresh")
        return None

    def _is_decrease(self, state: _ChargerState, value_a: float) -> bool:
        return state.acked_a is None or value_a < state.acked_a

    def _failed_decrease_blocks(self) -> bool:
        # A decrease that failed in the current allocation generation may still be drawing its old
        # value; the loop re-allocates with that charger budgeted higher, which opens a new generation.
        return any(s.generation_failed == self._generation for s in self._states.values())

    def _start(self, charger_id: str, state: _ChargerState, command: ChargerCommand) -> None:
        state.inflight = command
        self.counters.sent += 1
        if command.kind == "refresh":
            self.counters.refreshes += 1
        task = asyncio.get_running_loop().create_task(
            self._send(charger_id, state, command), name=f"dispatch:{charger_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, charger_id: str, state: _ChargerState, command: ChargerCommand) -> None:
        limiter = self._limiters[charger_id]
        try:
            result = await limiter.set_current(
                command.current_a,
                lease_s=command.lease_s,
                phases=command.phases,
                timeout_s=self._config.command_timeout_s,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a driver bug must not stop dispatch for every other charger
            log.exception("dispatch.command_error", charger=charger_id)
            result = CommandResult(CommandOutcome.REJECTED, f"driver error: {exc!r}")
        self._finish(charger_id, state, command, result)

    def _finish(
        self, charger_id: str, state: _ChargerState, command: ChargerCommand, result: CommandResult
    ) -> None:
        now = self._clock.monotonic()
        state.inflight = None
        outcome = str(result.outcome)
        self.counters.by_outcome[outcome] = self.counters.by_outcome.get(outcome, 0) + 1
        if result.ok:
            was_decrease = self._is_decrease(state, command.current_a)
            state.acked_a = command.current_a
            state.acked_mono = now
            state.failed_a = None
            state.failures = 0
            state.retry_mono = -math.inf
            state.generation_failed = -1
            self.counters.acked += 1
            if was_decrease:
                self._last_decrease_ack_mono = now
            log.debug("dispatch.acked", charger=charger_id, current_a=command.current_a, kind=command.kind)
        else:
            self.counters.failed += 1
            state.failures += 1
            state.failed_a = max(command.current_a, state.failed_a or 0.0)
            if command.kind != "refresh":
                state.generation_failed = self._generation
            backoff_s = min(
                self._config.retry_max_s, self._config.retry_initial_s * 2 ** (state.failures - 1)
            )
            state.retry_mono = now + backoff_s
            log.warning(
                "dispatch.failed",
                charger=charger_id,
                current_a=command.current_a,
                kind=command.kind,
                outcome=outcome,
                detail=result.detail,
                retry_in_s=backoff_s,
            )
        self._wake.set()
        if self.on_change is not None:
            self.on_change()


def _round_down(current_a: float) -> float:
    """0.1 A resolution, rounded down: OCPP 1.6 takes one decimal, and down is the safe side."""
    return math.floor(max(0.0, current_a) * 10 + 1e-9) / 10
