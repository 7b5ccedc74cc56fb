"""Uplink figures: relay throughput to mosquitto, backlog drain time, telemetry bytes per day.

    python -m bench.uplink [--runs 3]

Needs /usr/sbin/mosquitto. The backend that acknowledges runs in a process of its own, as the
real one is elsewhere; the relay, the ledger (WAL, synchronous=FULL, in a temporary folder) and the
broker are real. Telemetry volume is computed from the real payload encoders driven by the real
schedule over a simulated day of a 100-charger site.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from controller.sessions.ledger import Ledger
from controller.uplink.config import UplinkConfig
from controller.uplink.connection import dumps
from controller.uplink.service import Uplink
from controller.uplink.telemetry import (
    ChargerTelemetry,
    SiteTelemetry,
    TelemetrySchedule,
    chargers_payload,
    site_payload,
)
from controller.uplink.topics import Topics
from drivers.clock import SystemClock
from tests.support import subprocess_env
from tests.support.mosquitto import Mosquitto
from tests.support.uplink_harness import RecordingHandler, fill


async def _drain_once(folder: Path, broker: Mosquitto, sessions: int, site: str) -> tuple[int, float]:
    """Queue `sessions` complete sessions (2 messages each), then time the drain to zero backlog."""
    async with await Ledger.open(folder / f"{site}.sqlite") as ledger:
        await fill(ledger, sessions)
        rows = await ledger.backlog()
        backend = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.support.mqtt_backend", str(broker.port), site,
            env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await asyncio.sleep(1.0)  # the backend subscribes before the site connects
            config = UplinkConfig(
                url=broker.url,
                site_id=site,
                client_id=f"box-{site}",
                ack_flush_s=0.02,
                backlog_alarm_rows=10**9,
            )
            started = time.perf_counter()
            async with Uplink(config, ledger, SystemClock(), command_handler=RecordingHandler()):
                while await ledger.backlog():  # noqa: ASYNC110 - measuring, polling is the point
                    await asyncio.sleep(0.01)
                elapsed = time.perf_counter() - started
        finally:
            backend.terminate()
            await backend.wait()
    return rows, elapsed


def _telemetry_bytes_per_day(chargers: int, seed: int) -> tuple[int, int]:
    """(bytes, messages) of telemetry in one simulated day; bytes count topic, payload and MQTT headers."""
    rng = random.Random(seed)
    config = UplinkConfig(url="mqtt://localhost", site_id="solbakken-brl", client_id="box")
    topics = Topics(config.prefix, config.site_id)
    schedule = TelemetrySchedule(config)
    schedule.restart(0.0)
    start = datetime(2026, 11, 22, tzinfo=UTC)
    states: dict[str, ChargerTelemetry] = {
        f"CP-{i:03d}": ChargerTelemetry(f"CP-{i:03d}", True, "available", (0.0, 0.0, 0.0), None, 1e6, None)
        for i in range(chargers)
    }
    # Each charger: 1-3 sessions a day of 1-10 hours; a setpoint change every ~15 min while charging.
    changes: list[tuple[float, str, str, float | None]] = []
    for cid in states:
        t = rng.uniform(0, 6 * 3600)
        for _ in range(rng.randint(1, 3)):
            length = rng.uniform(3600, 10 * 3600)
            changes.append((t, cid, "preparing", None))
            changes.append((t + 20, cid, "charging", 16.0))
            s = t + 20 + rng.uniform(600, 1200)
            while s < t + length:
                changes.append((s, cid, "charging", rng.choice([6.0, 10.0, 16.0, 20.0, 32.0])))
                s += rng.uniform(600, 1200)
            changes.append((t + length, cid, "suspended_ev", 0.0))
            changes.append((t + length + rng.uniform(600, 7200), cid, "available", None))
            t += length + rng.uniform(3600, 8 * 3600)
    changes.sort()
    total_bytes = 0
    messages = 0
    site = SiteTelemetry(
        start, "normal", (88.1, 76.4, 70.2), (123.0, 123.0, 123.0), (34.9, 46.6, 52.8), (60.0, 60.0, 12.5)
    )
    for c in states.values():
        schedule.update_charger(c)
    schedule.update_site(site)
    index = 0
    for second in range(86_400):
        while index < len(changes) and changes[index][0] <= second:
            _, cid, state, setpoint = changes[index]
            states[cid] = replace(states[cid], state=state, setpoint_a=setpoint)
            schedule.update_charger(states[cid])
            index += 1
        send_site, batch, full = schedule.due(float(second))
        now = start + timedelta(seconds=second)
        if send_site:
            schedule.update_site(replace(site, measured_utc=now))
            payload = dumps(site_payload(replace(site, measured_utc=now), config.site_id))
            total_bytes += _publish_size(topics.site_telemetry, payload, qos=0)
            messages += 1
        if batch:
            payload = dumps(chargers_payload(batch, config.site_id, now, full=full))
            total_bytes += _publish_size(topics.charger_telemetry, payload, qos=1)
            messages += 1
    return total_bytes, messages


def _publish_size(topic: str, payload: bytes, *, qos: int) -> int:
    """MQTT 5 PUBLISH size: fixed header, topic, packet id (QoS 1), properties (message expiry), payload."""
    properties = 1 + 5  # property length byte + Message Expiry Interval (id + 4 bytes)
    remaining = 2 + len(topic.encode()) + (2 if qos else 0) + properties + len(payload)
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16_384 else 3
    puback = 4 if qos else 0
    return 1 + length_bytes + remaining + puback


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backlog-sessions", type=int, default=10_000)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        broker = Mosquitto(folder / "broker")
        broker.start()
        try:
            rates: list[float] = []
            for run in range(args.runs):
                rows, elapsed = asyncio.run(_drain_once(folder, broker, 2500, f"rate{run}"))
                rates.append(rows / elapsed)
            print(
                f"relay throughput: {statistics.median(rates):.0f} session messages/s "
                f"(median of {args.runs}; 5000 messages each, acknowledged by a backend process; "
                f"runs {', '.join(f'{r:.0f}' for r in rates)})"
            )
            drains: list[float] = []
            for run in range(args.runs):
                rows, elapsed = asyncio.run(_drain_once(folder, broker, args.backlog_sessions, f"drain{run}"))
                drains.append(elapsed)
            print(
                f"backlog drain: {statistics.median(drains):.1f} s for {args.backlog_sessions} sessions "
                f"({rows} messages: start and stop versions; median of {args.runs}; "
                f"runs {', '.join(f'{d:.1f}' for d in drains)})"
            )
        finally:
            broker.stop()
    volumes = [_telemetry_bytes_per_day(100, seed) for seed in range(args.runs)]
    size = statistics.median(v[0] for v in volumes)
    count = statistics.median(v[1] for v in volumes)
    print(
        f"telemetry, 100 chargers: {size / 1e6:.1f} MB/day in {count:.0f} messages/day "
        f"(MQTT 5 packets incl. PUBACKs, excl. TCP/TLS; median of {args.runs} simulated days)"
    )


if __name__ == "__main__":
    main()
