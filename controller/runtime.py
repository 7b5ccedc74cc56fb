"""Process-wide settings of the daemon that are not site configuration."""

from __future__ import annotations

import gc

# The event loop stops for as long as a collection runs. With CPython's default thresholds
# (700, 10, 10) a 300-charger daemon ran a full collection every 4 s or so, each 60-140 ms
# (bench.login_storm): medium-lived objects (OCPP calls waiting for their answer, timers, messages)
# survived two young collections and died old. With a young generation of 20 000 they die young,
# full collections become rare, and a young collection stays in the tens of milliseconds.
GC_THRESHOLDS = (20_000, 20, 20)


def tune_garbage_collector() -> None:
    """Called once by `sitectl run` before the daemon starts (and by benchmarks that run it)."""
    gc.set_threshold(*GC_THRESHOLDS)
