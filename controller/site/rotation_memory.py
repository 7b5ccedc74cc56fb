"""When each car was started, paused, and began waiting, and why it was paused: what the allocator's
rotation needs (`Vehicle.charging_since`, `waiting_since`, `paused_at`, `start_times`).

A car starts or pauses when its setpoint on the charger does, not when an allocation says so: a
decision not sent yet (increases come in paced waves) is no start. Times are UTC; nothing here reads
a clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from controller.allocation import Allocation
from controller.allocation.model import ROTATION

START_MEMORY = timedelta(hours=1)
# Why a charging car was paused when the allocator said rotation but nobody took its place.
ROOM = "room"
# A car paused this soon after it was started has not had its turn: it keeps its place in the queue.
BRIEF_START = timedelta(seconds=60)


@dataclass(slots=True)
class Turns:
    """One charging point's place in the rotation."""

    charging_since: datetime | None = None
    waiting_since: datetime | None = None
    paused_at: datetime | None = None
    queued_since: datetime | None = None  # waiting_since before the latest start
    pause_reason: str | None = None  # the allocator's reason while the car is paused
    start_times: deque[datetime] = field(default_factory=deque)


class RotationMemory:
    def __init__(self, charger_ids: tuple[str, ...]) -> None:
        self._turns = {cid: Turns() for cid in charger_ids}

    def turns(self, charger_id: str) -> Turns:
        return self._turns[charger_id]

    def note_setpoint(self, charger_id: str, old: float | None, new: float | None, now_utc: datetime) -> None:
        """The setpoint on the charger changed from `old` to `new`.

        Only a restart after a pause for rotation counts against `max_starts_per_hour`: that is the
        switching the controller chooses. A pause forced by a fuse line is safety; counting the
        restart after it let a few minutes of tight readings use up a car's starts and leave it
        waiting for the rest of the hour while current was free. The restart hold (`paused_at`)
        keeps such pauses from repeating every few seconds.

        A car paused within BRIEF_START of being started has not had its turn (at a rotation's turn
        the next cars were started and paused again before they drew anything): it keeps its place
        in the queue and the start is not counted. Queueing it anew from the pause put cars that had
        just had their turn before it, and four of 24 waited 900 s against a 660 s bound.
        """
        turns = self._turns[charger_id]
        was_on = bool(old)
        is_on = bool(new)
        if is_on and not was_on:
            if turns.pause_reason == ROTATION:
                turns.start_times.append(now_utc)
            turns.queued_since = turns.waiting_since
            turns.charging_since = now_utc
            turns.waiting_since = None
            turns.pause_reason = None
        elif was_on and not is_on:
            started = turns.charging_since
            brief = started is not None and now_utc - started < BRIEF_START
            if brief and turns.start_times and turns.start_times[-1] == started:
                turns.start_times.pop()
            turns.charging_since = None
            turns.waiting_since = turns.queued_since if brief and turns.queued_since else now_utc
            turns.queued_since = None
            turns.paused_at = now_utc

    def note_allocation(
        self, allocation: Allocation, setpoints: Mapping[str, float | None], now_utc: datetime
    ) -> None:
        """Forget starts older than an hour; mark cars that start waiting or leave; remember why a
        charging car was paused, for as long as it waits. `setpoints`: what each charger holds.

        The allocator calls a pause `rotation` whenever the car's minimum would fit alone. A car it
        pauses so that a waiting car can charge has yielded its place: its restart is a rotation
        start. One it pauses while nobody waiting is started in its place was paused because the
        room shrank (a base load rose, the meter froze): the fuse's doing, like a pause a fuse line
        forces, and its restart is not counted against `max_starts_per_hour`. Counting those left
        four of six cars in the fault-drill garage waiting at `start_limit` for twenty minutes while
        current was free.
        """
        horizon = now_utc - START_MEMORY
        taken_over = any(
            decision.state == "charging" and not setpoints.get(cid)
            for cid, decision in allocation.chargers.items()
            if cid in self._turns
        )
        for charger_id, decision in allocation.chargers.items():
            turns = self._turns.get(charger_id)
            if turns is None:
                continue
            while turns.start_times and turns.start_times[0] < horizon:
                turns.start_times.popleft()
            held = setpoints.get(charger_id)
            if decision.state == "idle":
                turns.charging_since = None
                turns.waiting_since = None
                turns.queued_since = None
                turns.paused_at = None
                turns.pause_reason = None
            elif decision.state == "paused":
                if held:
                    # The decision that pauses a charging car says why it stops.
                    reason = decision.limited_by
                    turns.pause_reason = ROOM if reason == ROTATION and not taken_over else reason
                elif turns.pause_reason is None:
                    turns.pause_reason = decision.limited_by
                if turns.waiting_since is None and not held:
                    turns.waiting_since = now_utc
