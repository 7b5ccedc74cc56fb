"""The parts of bench.login_storm that measure: the meter's frames, the chargers, the CPU limit."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from websockets.exceptions import InvalidMessage, InvalidStatus

from bench.ocpp_fanout import BenchCharger

# After a refusal that is not a 503 (a handshake the daemon timed out, a reset connection), a
# charger tries again after its own back-off; 5-10 s here (real chargers often wait longer).
RETRY_S = (5.0, 10.0)
CGROUP_ROOT = Path("/sys/fs/cgroup/cpu")


# -------------------------------------------------------------------------------- meter frames


class FrameWriter(threading.Thread):
    """Writes Aidon lists into the pty master every `period_s`; remembers each write's moment.

    A thread, so that what the daemon's load does to this process's event loop does not delay the
    frames (the meter sends on its own clock)."""

    def __init__(self, master_fd: int, period_s: float, cars_a: Callable[[], float]) -> None:
        super().__init__(name="han-frames", daemon=True)
        self._fd = master_fd
        self._period_s = period_s
        self._cars_a = cars_a  # what the cars draw per line (three-phase chargers on L1-L2-L3)
        self.written: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        from simulator.han_meter import ListType, MeterState, Vendor, default_profile, encode

        profile = default_profile(Vendor.AIDON, phases=3, grid="IT")
        n = 0
        next_s = time.monotonic()
        while not self.stop.is_set():
            cars_a = self._cars_a()
            list_type = ListType.FULL if n % 40 == 0 else ListType.POWER
            state = MeterState(
                current_a=(100.0 + n % 3 + cars_a, 95.0 + cars_a, 90.0 + cars_a),
                voltage_v=(231.0, 230.0, 229.0),
                active_power_import_w=60_000.0 + 10 * (n % 7) + cars_a * 230.0 * 3**0.5,
                active_power_export_w=0.0,
                reactive_power_import_var=0.0,
                reactive_power_export_var=0.0,
                energy_import_wh=1e7 + n,
                energy_export_wh=0.0,
                reactive_energy_import_varh=0.0,
                reactive_energy_export_varh=0.0,
            )
            data = encode(profile, list_type, state, datetime.now(UTC))
            self.written.append(time.monotonic())
            os.write(self._fd, data)
            n += 1
            next_s += self._period_s
            time.sleep(max(0.0, next_s - time.monotonic()))


def latencies_ms(
    written: list[float], ends: list[tuple[float, float]], start: float, end: float
) -> tuple[list[float], list[float]]:
    """Per frame written in [start, end): the first meter cycle that ended after it, and that
    cycle's own compute time (ms)."""
    latency: list[float] = []
    compute: list[float] = []
    j = 0
    for t0 in written:
        if not start <= t0 < end:
            continue
        while j < len(ends) and ends[j][0] < t0:
            j += 1
        if j < len(ends):
            latency.append((ends[j][0] - t0) * 1000)
            compute.append(ends[j][1] * 1000)
    return latency, compute


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ------------------------------------------------------------------------------------ chargers


class StormCharger(BenchCharger):
    """A bench charger that comes back after a 503 when the Retry-After says, as chargers do."""

    busy = 0
    failed = 0
    limit_a = 0.0

    def on_call(self, action: str, payload: dict[str, Any]) -> None:
        # The car follows the last limit it was sent (the safe profile first, then the setpoints).
        if action == "SetChargingProfile":
            profile = payload.get("csChargingProfiles") or payload.get("chargingProfile") or {}
            schedule = profile.get("chargingSchedule", {})
            if isinstance(schedule, list):  # 2.0.1: a list of schedules
                schedule = schedule[0] if schedule else {}
            periods = schedule.get("chargingSchedulePeriod") or [{}]
            self.limit_a = float(periods[0].get("limit", 0.0))

    def current_a(self) -> float:
        return min(self.limit_a, 15.9)

    async def run(self, url: str, stop: asyncio.Event) -> None:
        while True:
            try:
                await super().run(url, stop)
                return
            except InvalidStatus as refused:
                if refused.response.status_code != 503:
                    raise
                self.busy += 1
                await asyncio.sleep(float(refused.response.headers.get("Retry-After", "5")))
            except (OSError, TimeoutError, InvalidMessage):
                self.failed += 1
                await asyncio.sleep(random.uniform(*RETRY_S))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def limit_cpu(pid: int, fraction: float) -> Path:
    group = CGROUP_ROOT / f"bench-login-storm-{os.getpid()}"
    group.mkdir()
    (group / "cpu.cfs_period_us").write_text("10000")
    (group / "cpu.cfs_quota_us").write_text(str(max(1000, round(fraction * 10000))))
    (group / "cgroup.procs").write_text(str(pid))
    return group
