"""Reconnect delays: exponential with jitter, so a fleet of boxes does not reconnect in lockstep."""

from __future__ import annotations

import random


class Backoff:
    """Delay n is uniform in [cap/2, cap] with cap = min(max_s, initial_s · 2ⁿ) ("equal jitter")."""

    def __init__(self, initial_s: float, max_s: float, rng: random.Random) -> None:
        if not 0 < initial_s <= max_s:
            raise ValueError(f"backoff needs 0 < initial ({initial_s}) <= max ({max_s})")
        self._initial_s = initial_s
        self._max_s = max_s
        self._rng = rng
        self._attempt = 0

    def next_delay_s(self) -> float:
        cap = min(self._max_s, self._initial_s * 2.0 ** min(self._attempt, 60))
        self._attempt += 1
        return cap / 2 + self._rng.uniform(0, cap / 2)

    def reset(self) -> None:
        self._attempt = 0
