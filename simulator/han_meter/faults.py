"""Fault drills for the virtual meter: what goes wrong on a real HAN line, on demand.

Frame faults act on the next `frames` frames sent; time faults act on every frame whose slot lies
in [start, start + duration_s) of simulated time. A fault starts either immediately (at the next
frame) or at a scheduled simulated UTC instant. All randomness comes from one `random.Random(seed)`,
so a run with the same seed, faults and frames produces the same bytes.
"""

from __future__ import annotations

import bisect
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Garbage:
    """Random bytes on the line before each of the next `frames` frames (noise, a second device)."""

    n_bytes: int = 16
    frames: int = 1


@dataclass(frozen=True)
class FlipBits:
    """`bits` distinct bits flipped between the flags of each of the next `frames` frames.

    CRC-16/X.25 detects every error of up to 3 bits in frames of this size, so with bits <= 3 the
    frame always fails its HCS or FCS.
    """

    bits: int = 1
    frames: int = 1


@dataclass(frozen=True)
class DropBytes:
    """`n_bytes` bytes lost from each of the next `frames` frames (a UART overrun)."""

    n_bytes: int = 1
    frames: int = 1


@dataclass(frozen=True)
class Silence:
    """No frames at all for `duration_s` simulated seconds (meter port off, cable loose)."""

    duration_s: float


@dataclass(frozen=True)
class Freeze:
    """For `duration_s` simulated seconds the meter keeps sending the values it had when the fault
    started (its clock still runs), like the Aidon that repeated an hour's registers."""

    duration_s: float


Fault = Garbage | FlipBits | DropBytes | Silence | Freeze


@dataclass(frozen=True, order=True)
class ScheduledFault:
    at_utc: datetime
    fault: Fault = field(compare=False)


@dataclass(frozen=True)
class FramePlan:
    silent: bool = False
    frozen: bool = False


def _validate(fault: Fault) -> None:
    if isinstance(fault, Garbage | DropBytes) and (fault.n_bytes < 1 or fault.frames < 1):
        raise ValueError(f"{fault!r}: n_bytes and frames must be >= 1")
    if isinstance(fault, FlipBits) and (fault.bits < 1 or fault.frames < 1):
        raise ValueError(f"{fault!r}: bits and frames must be >= 1")
    if isinstance(fault, Silence | Freeze) and not fault.duration_s > 0:
        raise ValueError(f"{fault!r}: duration_s must be > 0")


class FaultInjector:
    def __init__(self, seed: int = 0, schedule: list[ScheduledFault] | None = None) -> None:
        self._rng = random.Random(seed)
        self._scheduled: list[ScheduledFault] = []
        self._immediate: list[Fault] = []
        self._frame_faults: list[tuple[Garbage | FlipBits | DropBytes, int]] = []
        self._silent_until: datetime | None = None
        self._frozen_until: datetime | None = None
        self.injected: Counter[str] = Counter()
        for item in schedule or []:
            self.schedule(item.at_utc, item.fault)

    def inject(self, fault: Fault) -> None:
        """Start `fault` at the next frame."""
        _validate(fault)
        self._immediate.append(fault)

    def schedule(self, at_utc: datetime, fault: Fault) -> None:
        _validate(fault)
        if at_utc.tzinfo is None:
            raise ValueError("scheduled faults need an aware UTC time")
        bisect.insort(self._scheduled, ScheduledFault(at_utc, fault))

    def _start(self, fault: Fault, at_utc: datetime) -> None:
        self.injected[type(fault).__name__] += 1
        if isinstance(fault, Silence):
            until = at_utc + timedelta(seconds=fault.duration_s)
            self._silent_until = max(until, self._silent_until or until)
        elif isinstance(fault, Freeze):
            until = at_utc + timedelta(seconds=fault.duration_s)
            self._frozen_until = max(until, self._frozen_until or until)
        else:
            self._frame_faults.append((fault, fault.frames))

    def plan(self, slot_utc: datetime) -> FramePlan:
        """Start what is due by this frame's slot; say whether the frame is silenced or frozen."""
        while self._scheduled and self._scheduled[0].at_utc <= slot_utc:
            item = self._scheduled.pop(0)
            self._start(item.fault, item.at_utc)
        for fault in self._immediate:
            self._start(fault, slot_utc)
        self._immediate.clear()
        return FramePlan(
            silent=self._silent_until is not None and slot_utc < self._silent_until,
            frozen=self._frozen_until is not None and slot_utc < self._frozen_until,
        )

    def mangle(self, frame: bytes) -> bytes:
        """The bytes that reach the line for a frame about to be sent."""
        prefix = b""
        data = bytearray(frame)
        still_active = []
        for fault, remaining in self._frame_faults:
            if isinstance(fault, Garbage):
                prefix += self._rng.randbytes(fault.n_bytes)
            elif isinstance(fault, FlipBits):
                # Between the flags, so the frame still looks like a frame and only its CRC fails.
                positions = self._rng.sample(
                    range(8, (len(data) - 1) * 8), min(fault.bits, (len(data) - 2) * 8)
                )
                for bit in positions:
                    data[bit // 8] ^= 1 << (bit % 8)
            else:
                for _ in range(min(fault.n_bytes, len(data))):
                    del data[self._rng.randrange(len(data))]
            if remaining > 1:
                still_active.append((fault, remaining - 1))
        self._frame_faults = still_active
        return prefix + bytes(data)
