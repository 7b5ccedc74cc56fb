"""From fair shares to setpoints to send: a deadband for small changes, smoothed increases, and
decreases never delayed beyond what the fuses allow.

- A car that starts goes to at most `min + increase_step_a`; a charging car rises by at most
  `increase_step_a` per allocation (`ramp`). Lower than the fair share is always safe.
- A change smaller than `deadband_a` is not made: the previous setpoint is kept (`deadband` when that
  keeps a car below its share). Keeping a previous value *above* the share is allowed only while no
  fuse line it loads is overloaded with the values actually sent; otherwise the decrease is made.
- A previous setpoint outside the car's present bounds is never kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from controller.allocation.compiled import BoolArray, FloatArray, IntArray
from controller.allocation.model import Policy

# A share computed a hair under a round value (the allocator keeps 1e-6 A back on every line) must not
# turn a change of exactly the deadband into a change "smaller than the deadband".
ROUNDING_A = 1e-5

HELD_NONE = 0
HELD_RAMP = 1  # sent below the share: the increase is smoothed
HELD_BELOW = 2  # sent below the share: the change is within the deadband
HELD_ABOVE = 3  # sent above the share: the decrease is within the deadband and still safe


@dataclass(frozen=True, slots=True)
class Smoothed:
    current_a: FloatArray
    held: IntArray


def smooth(
    target_a: FloatArray,
    previous_a: FloatArray,
    lo_a: FloatArray,
    hi_a: FloatArray,
    charging: BoolArray,
    policy: Policy,
    overloaded_cars: Callable[[FloatArray], BoolArray],
) -> Smoothed:
    """`overloaded_cars(sent)` tells which cars load a fuse line that `sent` overloads."""
    step = np.inf if policy.increase_step_a is None else policy.increase_step_a
    was_on = previous_a > 0
    in_bounds = (previous_a >= lo_a) & (previous_a <= hi_a)
    small = np.abs(target_a - previous_a) < policy.deadband_a - ROUNDING_A
    hold = charging & was_on & in_bounds & small
    ramped = np.minimum(target_a, np.where(was_on, np.maximum(previous_a, lo_a), lo_a) + step)
    sent = np.where(charging, np.where(hold, previous_a, ramped), 0.0)
    held = np.full(len(sent), HELD_NONE, dtype=np.int64)
    held[charging & ~hold & (ramped < target_a)] = HELD_RAMP
    held[hold & (previous_a < target_a)] = HELD_BELOW
    above = hold & (previous_a > target_a)
    held[above] = HELD_ABOVE
    if above.any():
        revert = above & overloaded_cars(sent)
        sent = np.where(revert, target_a, sent)
        held[revert] = HELD_NONE
        above &= ~revert
        # Lowering values cannot overload a line, so one pass suffices; the second is a belt for
        # rounding at the edge of a line's capacity.
        if above.any() and overloaded_cars(sent).any():
            sent = np.where(above, target_a, sent)
            held[above] = HELD_NONE
    return Smoothed(current_a=sent, held=held)
