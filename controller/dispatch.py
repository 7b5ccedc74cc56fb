"""Commanded values → charger commands: one in flight per charger, leases, acknowledgements, retries,
and what each charger may be drawing meanwhile.

The pacer (controller/pacing.py) decides what each charger should be set to now; this module sends
it and keeps track (DESIGN.md §5):

- never more than one outstanding command per charger; a failed command is retried with backoff;
- every acknowledged limit is a lease that expires on the charger; it is refreshed at half its life
  (also while the value stays the same), so a dead controller lets every charger fall back to its
  safe current within the lease;
- `budget(charger_id)` says what is known of each charger's limit (`Drive`) and what it may be
  drawing now, an unknown always counted as the higher value: a command in flight as the higher of
  the confirmed and the sent value, a failed one as the higher of the confirmed and the failed one,
  a lapsed lease as the higher of the confirmed value and the safe current, a charger that refuses
  limits at its maximum.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

from controller.allocation import Drive
from drivers.contracts import Clock, CommandOutcome, CommandResult, CurrentLimiter

log = structlog.get_logger("dispatch")

# Outcomes by which a charger refuses limits (as opposed to a link that failed to carry one).
_REFUSALS = frozenset({CommandOutcome.REJECTED, CommandOutcome.NOT_SUPPORTED})


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    lease_s: float = 60.0
    command_timeout_s: float = 10.0
    retry_initial_s: float = 2.0
    retry_max_s: float = 30.0


@dataclass(frozen=True, slots=True)
class ChargerLimits:
    """What a charger falls back to on its own, and the most it can deliver."""

    safe_current_a: float
    max_a: float


@dataclass(frozen=True, slots=True)
class Budget:
    drive: Drive
    setpoint_a: float | None  # the limit it holds or is heading to (None: unknown)
    may_draw_a: float  # the most it may be drawing now


@dataclass(frozen=True, slots=True)
class ChargerCommand:
    charger_id: str
    current_a: float
    lease_s: float
    kind: str  # "set" | "refresh"


@dataclass(slots=True)
class _ChargerState:
    wanted_a: float | None = None
    acked_a: float | None = None  # None: unknown (never acknowledged on this connection)
    acked_mono: float = -math.inf
    inflight: ChargerCommand | None = None
    failed_a: float | None = None  # the value of the last failed command, until a later ack
    refused: bool = False  # the last failure was the charger refusing the limit
    failures: int = 0
    retry_mono: float = -math.inf


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
        limits: Mapping[str, ChargerLimits] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._limiters = dict(limiters)
        self._clock = clock
        self._config = config or DispatchConfig()
        self._limits = dict(limits or {})
        self.on_change = on_change
        self._states = {charger_id: _ChargerState() for charger_id in self._limiters}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.last_decrease_ack_mono = -math.inf
        self.counters = DispatchCounters()

    # ------------------------------------------------------------------------------------ inputs

    def submit(self, values_a: Mapping[str, float]) -> None:
        """The values the chargers should hold now. Never blocks; chargers not named keep theirs."""
        for charger_id, value in values_a.items():
            state = self._states.get(charger_id)
            if state is not None:
                state.wanted_a = _round_down(value)
        self._wake.set()

    def forget(self, charger_id: str) -> None:
        """The charger rebooted or reconnected: whatever it had is gone, so its value is unknown."""
        state = self._states.get(charger_id)
        if state is not None:
            state.acked_a = None
            state.acked_mono = -math.inf
            state.failed_a = None
            state.refused = False
            # Retry at once: a backoff earned while it was offline says nothing about it now.
            state.failures = 0
            state.retry_mono = -math.inf
            self._wake.set()

    # ----------------------------------------------------------------------------------- outputs

    def drives(self, charger_id: str) -> bool:
        return charger_id in self._states

    def budget(self, charger_id: str) -> Budget:
        """What is known of the charger's limit and the most it may be drawing now."""
        state = self._states[charger_id]
        limits = self._limits.get(charger_id)
        max_a = limits.max_a if limits is not None else math.inf
        safe_a = limits.safe_current_a if limits is not None else 0.0
        acked = state.acked_a
        if state.refused and acked is None:
            return Budget(Drive.REFUSED, None, max_a)
        if state.failed_a is not None and state.inflight is None:
            return Budget(Drive.FAILED, acked, max(acked or max_a, state.failed_a))
        if acked is not None and self._clock.monotonic() > state.acked_mono + self._config.lease_s:
            return Budget(Drive.LAPSED, acked, max(acked, safe_a))
        inflight = state.inflight
        if inflight is not None and inflight.kind == "set":
            if acked is None:
                return Budget(Drive.UNKNOWN, None, max_a)
            return Budget(Drive.IN_FLIGHT, inflight.current_a, max(acked, inflight.current_a))
        if acked is None:
            return Budget(Drive.UNKNOWN, None, max_a)
        return Budget(Drive.ACKNOWLEDGED, acked, acked)

    def decreases_pending(self) -> bool:
        """A lower value is on its way, or wanted and not sent yet (an increase in flight finishes
        first): until it holds, the charger may draw the higher value the allocation no longer
        counts. A failed command is not pending: its charger is budgeted at the higher value."""
        for state in self._states.values():
            if state.failed_a is not None:
                continue
            known = state.acked_a
            if state.inflight is not None and state.inflight.kind == "set":
                if known is None or state.inflight.current_a < known:
                    return True
                known = state.inflight.current_a
            if state.wanted_a is not None and known is not None and state.wanted_a < known:
                return True
        return False

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
        lease_s = self._config.lease_s
        next_due = now + lease_s / 2
        for charger_id, state in self._states.items():
            if state.inflight is not None or state.wanted_a is None:
                continue
            if now < state.retry_mono:
                next_due = min(next_due, state.retry_mono)
                continue
            if state.acked_a is None or state.wanted_a != state.acked_a:
                self._start(charger_id, state, ChargerCommand(charger_id, state.wanted_a, lease_s, "set"))
                continue
            refresh_at = state.acked_mono + lease_s / 2
            if now >= refresh_at:
                self._start(charger_id, state, ChargerCommand(charger_id, state.acked_a, lease_s, "refresh"))
            else:
                next_due = min(next_due, refresh_at)
        return max(0.0, next_due - now)

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
                command.current_a, lease_s=command.lease_s, timeout_s=self._config.command_timeout_s
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
        changed = not result.ok or state.acked_a != command.current_a or state.failed_a is not None
        if result.ok:
            was_decrease = state.acked_a is None or command.current_a < state.acked_a
            state.acked_a = command.current_a
            state.acked_mono = now
            state.failed_a = None
            state.refused = False
            state.failures = 0
            state.retry_mono = -math.inf
            self.counters.acked += 1
            if was_decrease:
                self.last_decrease_ack_mono = now
            log.debug("dispatch.acked", charger=charger_id, current_a=command.current_a, kind=command.kind)
        else:
            self.counters.failed += 1
            state.failures += 1
            state.failed_a = max(command.current_a, state.failed_a or 0.0)
            state.refused = result.outcome in _REFUSALS
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
        # A refresh acknowledged at the value already held changes no budget: no recomputation.
        if changed and self.on_change is not None:
            self.on_change()


def _round_down(current_a: float) -> float:
    """0.1 A resolution, rounded down: OCPP 1.6 takes one decimal, and down is the safe side."""
    return math.floor(max(0.0, current_a) * 10 + 1e-9) / 10
