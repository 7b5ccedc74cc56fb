"""Modbus bus throughput, decrease latency under load, and the CPU cost of many Modbus TCP chargers.

    python -m bench.modbus_bus [--runs N] [--seconds S] [--tcp-chargers 100] [--tcp-seconds 60]

RTU: 8 and 32 ABB Terra AC chargers (the simulator's) on one pty at 9600 and 19200 baud. A pty moves
bytes at once, so the simulator's end emulates the line: each answer waits for the time the request
and the answer take on the wire at that baud rate (11 bits a character) plus two 3.5-character
silences. The drivers (drivers/modbus/charger.py, their real templates) poll as fast as the bus
allows; the figure is the wire time the bus carried against the elapsed time (1.0: the line never
idle). Meanwhile a decrease is sent to a random charger every ~0.1 s: latency from the call to its
acknowledgement, p50 and p99.

TCP: `--tcp-chargers` Vestel EVC04s, each on its own TCP endpoint in a child process (so the figure
is the controller's side only), polled every 2 s by the drivers; process CPU seconds per hour.
Medians of `--runs` runs; the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from drivers.clock import SystemClock
from drivers.modbus.bus import Bus, BusConfig
from drivers.modbus.charger import ModbusCharger, ModbusChargerConfig
from drivers.modbus.template import load_template
from drivers.modbus.transport import Endpoint, PymodbusTransport
from simulator.modbus.chargers import AbbTerraAc, PluggedCar, VestelEvc04
from simulator.modbus.server import RtuPty, TcpEndpoint, Units

DEVICES = Path(__file__).resolve().parents[1] / "config" / "devices"


async def _noop(_: Any) -> None:
    return None


def _driver(
    template_name: str, unit: int, bus: Bus, poll_s: float, ids: itertools.count[int]
) -> ModbusCharger:
    template = load_template(DEVICES / f"{template_name}.toml")
    return ModbusCharger(
        ModbusChargerConfig(f"MB-{unit}", unit, template, 6.0, 16.0, poll_interval_s=poll_s, lease_s=3600.0),
        bus,
        SystemClock(),
        sink=lambda _event: None,
        record=_noop,
        new_transaction_id=lambda: f"mb-{next(ids)}",
    )


async def rtu_run(devices: int, baud: int, seconds: float) -> dict[str, float]:
    chargers = [AbbTerraAc(unit_id=u, max_a=16.0, safe_a=6.0) for u in range(1, devices + 1)]
    for charger in chargers[::2]:
        charger.plug(PluggedCar(takes_a=16.0))
        charger.step(0.0)
    units: dict[int, Any] = {}
    for charger in chargers:
        units |= charger.units()
    async with RtuPty(Units(units), line_baud=baud) as pty:
        url = f"rtu://{pty.device}?baudrate={baud}"  # a pty takes no parity; the line model counts 8E1
        timeout_s = max(0.3, 300 * 11 / baud)
        bus = Bus(
            PymodbusTransport(Endpoint.parse(url), timeout_s=timeout_s), "rtu", BusConfig(timeout_s=timeout_s)
        )
        ids = itertools.count()
        drivers = [_driver("abb_terra_ac", c.unit_id, bus, 0.0, ids) for c in chargers]
        tasks = [asyncio.create_task(bus.run(), name="bus")]
        tasks += [asyncio.create_task(d.run(), name=f"driver-{d.charger_id}") for d in drivers]
        try:
            while not all(d.provisioned for d in drivers):  # noqa: ASYNC110 - a flag, no event
                await asyncio.sleep(0.05)
            latencies: list[float] = []
            rng = random.Random(7)
            line0, t0 = pty.line_s, time.perf_counter()
            polls0 = sum(d.counters.polls for d in drivers)
            while time.perf_counter() - t0 < seconds:
                await asyncio.sleep(rng.uniform(0.05, 0.15))
                started = time.perf_counter()
                result = await rng.choice(drivers).set_current(6.0, lease_s=3600.0)
                if result.ok:
                    latencies.append(time.perf_counter() - started)
            elapsed = time.perf_counter() - t0
            polls = sum(d.counters.polls for d in drivers) - polls0
            carried = pty.line_s - line0
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    latencies.sort()
    return {
        "line_utilisation": carried / elapsed,
        "polls_per_device_s": polls / devices / elapsed,
        "decrease_p50_ms": 1000 * statistics.median(latencies),
        "decrease_p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "decreases": len(latencies),
    }


async def serve_tcp(count: int) -> None:
    """The child process: `count` Vestels, one TCP endpoint each; prints the ports, then serves."""
    chargers = [
        VestelEvc04(max_a=16.0, safe_a=0.0, timeout_s=20.0, serial=f"SIM{k:04d}") for k in range(count)
    ]
    for charger in chargers[::2]:
        charger.plug(PluggedCar(takes_a=16.0))
    async with contextlib.AsyncExitStack() as stack:
        endpoints = [await stack.enter_async_context(TcpEndpoint(Units(c.units()))) for c in chargers]
        print(json.dumps([e.port for e in endpoints]), flush=True)
        t0 = time.monotonic()
        while True:
            for charger in chargers:
                charger.step(time.monotonic() - t0)
            await asyncio.sleep(0.5)


async def tcp_run(count: int, seconds: float) -> dict[str, float]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.modbus_bus", "--serve", str(count), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        ports = json.loads(await child.stdout.readline())
        ids = itertools.count()
        buses = [
            Bus(PymodbusTransport(Endpoint.parse(f"tcp://127.0.0.1:{p}"), timeout_s=1.0), str(p))
            for p in ports
        ]
        drivers = [_driver("vestel_evc04", 255, bus, 2.0, ids) for bus in buses]
        tasks = [asyncio.create_task(b.run(), name="bus") for b in buses]
        tasks += [asyncio.create_task(d.run(), name="driver") for d in drivers]
        try:
            while not all(d.provisioned for d in drivers):  # noqa: ASYNC110 - a flag, no event
                await asyncio.sleep(0.1)
            for driver in drivers:
                await driver.set_current(10.0, lease_s=3600.0)
            cpu0, t0 = time.process_time(), time.perf_counter()
            polls0 = sum(d.counters.polls for d in drivers)
            await asyncio.sleep(seconds)
            cpu = time.process_time() - cpu0
            elapsed = time.perf_counter() - t0
            polls = sum(d.counters.polls for d in drivers) - polls0
            failed = sum(d.counters.failed_polls for d in drivers)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        child.terminate()
        await child.wait()
    return {
        "cpu_s_per_hour": cpu / elapsed * 3600,
        "polls_per_charger_s": polls / count / elapsed,
        "failed_polls": failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0, help="each RTU measurement")
    parser.add_argument("--tcp-chargers", type=int, default=100)
    parser.add_argument("--tcp-seconds", type=float, default=60.0)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    if args.serve:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_tcp(args.serve))
        return
    print(f"bench.modbus_bus {datetime.now(UTC):%Y-%m-%d %H:%M}Z, {os.cpu_count()} CPUs, {args.runs} runs")
    for devices, baud in ((8, 9600), (8, 19200), (32, 9600), (32, 19200)):
        runs = [asyncio.run(rtu_run(devices, baud, args.seconds)) for _ in range(args.runs)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"RTU {devices:2d} devices @ {baud:5d} baud: line used {med['line_utilisation']:.2f} of its "
            f"capacity, {med['polls_per_device_s']:.2f} polls/device/s, decrease acknowledged "
            f"p50 {med['decrease_p50_ms']:.0f} ms p99 {med['decrease_p99_ms']:.0f} ms "
            f"({med['decreases']:.0f} decreases/run)"
        )
    runs = [asyncio.run(tcp_run(args.tcp_chargers, args.tcp_seconds)) for _ in range(args.runs)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(
        f"TCP {args.tcp_chargers} chargers polled every 2 s: {med['cpu_s_per_hour']:.0f} CPU s per hour "
        f"({med['polls_per_charger_s']:.2f} polls/charger/s, {med['failed_polls']:.0f} failed polls)"
    )


if __name__ == "__main__":
    main()
