"""How fast the simulated garage runs: 40 chargers with cars, no controller.

Two measurements, each the median of several runs:
1. physics only: `Garage.run_offline()` (fuses, base loads, cars, charger models; no networking);
2. the full garage: every charger connected over a real websocket (OCPP 1.6J and 2.0.1 mixed) to a
   minimal CSMS in this file that accepts everything, with boot, authorization, transactions,
   status, sampled (every 60 s) and clock-aligned meter values on the wire. The garage paces itself
   against a SimClock at each given speed; it keeps up when the achieved factor equals the speed
   and the lag at the end (clock time minus garage time) stays within a few steps.

    python -m bench.sim_speed [--runs 3] [--duration 1200] [--speeds 60,120,240,480]
    python -m bench.sim_speed --scenario simulator/scenarios/it_125a_40_evening.toml --speeds 60

With `--scenario` the garage is a scenario file's, and the networked runs are the whole live
simulation (`SimulationRun`): its virtual meter on a pty as well as its chargers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
import websockets
from websockets.asyncio.server import ServerConnection, serve

from simulator.arrivals import ArrivalProcess, CarArrival
from simulator.baseload import BaseLoadSpec
from simulator.cars import CarSpec
from simulator.chargers import ChargerSpec
from simulator.clock import SimClock
from simulator.garage import Garage
from simulator.physics import FuseSpec
from simulator.runner import SimulationRun
from simulator.scenario import GridSpec, Scenario
from simulator.scenario_file import LoadedScenario, load_scenario

CHARGERS = 40
TARGET_FACTOR = 60.0


def scenario(duration_s: float, csms_url: str | None) -> Scenario:
    fuses = [FuseSpec("main", 400, device="gG"), FuseSpec("board", 250, parent="main", device="gG")]
    fuses += [FuseSpec(f"c{i:02d}", 32, parent="board", device="C") for i in range(CHARGERS)]
    chargers = tuple(
        ChargerSpec(
            identity=f"CP{i:02d}",
            fuse=f"c{i:02d}",
            lines=("L1", "L2", "L3") if i % 3 == 0 else (("L1", "L2"), ("L2", "L3"), ("L3", "L1"))[i % 3],
            version="1.6" if i % 2 == 0 else "2.0.1",
            max_current_a=16.0,
            reconnect_s=5.0,
        )
        for i in range(CHARGERS)
    )
    car = CarSpec(battery_kwh=60, max_current_a=16, phases=1, response_delay_s=2.0)
    visits = tuple(
        CarArrival(f"early-{i}", 1.0 + i, duration_s + 3600, car, 0.2, 0.9, f"T{i:03d}")
        for i in range(CHARGERS)
    )
    return Scenario(
        name="bench-40",
        grid=GridSpec("IT", 230.0),
        fuses=tuple(fuses),
        chargers=chargers,
        base_loads=(
            BaseLoadSpec("house", "main", kind="evening_peak", amps=(40, 40, 40)),
            BaseLoadSpec("lift", "main", kind="lift", amps=(0, 20, 0), power_factor=0.8),
        ),
        visits=visits,
        arrivals=ArrivalProcess(rate_per_h=(10.0,), mean_dwell_s=1800.0),
        duration_s=duration_s,
        seed=7,
        csms_url=csms_url,
    )


# ------------------------------------------------------------------------ a minimal CSMS
_TX_IDS = iter(range(1, 10**9))


def _answer(action: str, payload: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    if action == "BootNotification":
        return {"currentTime": now, "interval": 300, "status": "Accepted"}
    if action == "Heartbeat":
        return {"currentTime": now}
    if action == "Authorize":
        key = "idTagInfo" if "idTag" in payload else "idTokenInfo"
        return {key: {"status": "Accepted"}}
    if action == "StartTransaction":
        return {"transactionId": next(_TX_IDS), "idTagInfo": {"status": "Accepted"}}
    if action == "StopTransaction":
        return {"idTagInfo": {"status": "Accepted"}}
    if action == "TransactionEvent" and payload.get("eventType") == "Started":
        return {"idTokenInfo": {"status": "Accepted"}}
    return {}


async def _csms(connection: ServerConnection, counts: dict[str, int]) -> None:
    with contextlib.suppress(websockets.exceptions.ConnectionClosed):
        async for text in connection:
            msg = json.loads(text)
            if msg[0] == 2:
                counts[msg[2]] = counts.get(msg[2], 0) + 1
                await connection.send(json.dumps([3, msg[1], _answer(msg[2], msg[3])]))


@dataclass
class Networked:
    factor: float
    lag_s: float
    calls: dict[str, int]
    call_errors: int
    started: int


async def networked_run(duration_s: float, speed: float, loaded: LoadedScenario | None = None) -> Networked:
    counts: dict[str, int] = {}
    async with serve(
        lambda c: _csms(c, counts),
        "127.0.0.1",
        0,
        subprotocols=["ocpp1.6", "ocpp2.0.1"],  # type: ignore[list-item]
        ping_interval=None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}/ocpp"
        if loaded is not None:
            async with SimulationRun(
                loaded.with_overrides(duration_s=duration_s), speed=speed, csms_url=url
            ) as sim:
                clock, garage = sim.clock, sim.garage
                start = time.perf_counter()
                await sim.run()
                wall = time.perf_counter() - start
        else:
            clock = SimClock(speed, datetime(2026, 11, 22, 16, 0, tzinfo=UTC))
            garage = Garage(scenario(duration_s, url), clock)
            start = time.perf_counter()
            await garage.run()
            wall = time.perf_counter() - start
        lag_s = clock.monotonic() - garage.now_s
        errors = sum(c.counters["call_errors_received"] for c in garage.chargers)
    started = sum(1 for c in garage.chargers for conn in c.connectors if conn.tx is not None)
    return Networked(duration_s / wall, lag_s, counts, errors, started)


def offline_run(duration_s: float, loaded: LoadedScenario | None = None) -> float:
    if loaded is not None:
        garage = Garage(loaded.with_overrides(duration_s=duration_s).scenario)
    else:
        garage = Garage(scenario(duration_s, None))
    start = time.perf_counter()
    garage.run_offline()
    return duration_s / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=1200.0, help="simulated seconds per networked run")
    parser.add_argument("--speeds", default="60,120,240,480", help="clock speeds for the networked runs")
    parser.add_argument("--scenario", type=Path, help="a scenario file instead of the built-in 40 chargers")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    loaded = load_scenario(args.scenario) if args.scenario is not None else None
    chargers = len(loaded.scenario.chargers) if loaded is not None else CHARGERS
    name = loaded.scenario.name if loaded is not None else "built-in"

    offline = [offline_run(args.duration * 4, loaded) for _ in range(args.runs)]
    runs_text = ", ".join(f"{x:.0f}" for x in offline)
    print(
        f"{name}: physics only, {chargers} chargers: median {statistics.median(offline):.0f}x "
        f"real time (runs: {runs_text}; {args.duration * 4:.0f} s simulated each)"
    )
    for speed in (float(x) for x in args.speeds.split(",")):
        runs = [asyncio.run(networked_run(args.duration, speed, loaded)) for _ in range(args.runs)]
        median = sorted(runs, key=lambda r: r.factor)[len(runs) // 2]
        print(
            f"{name}: {chargers} websocket chargers + garage, clock at {speed:.0f}x: median achieved "
            f"{median.factor:.0f}x, lag at end {statistics.median(r.lag_s for r in runs):.2f} sim s, "
            f"{sum(median.calls.values())} OCPP calls, {median.call_errors} call errors, "
            f"{median.started}/{chargers} transactions open at the end "
            f"(achieved per run: {', '.join(f'{r.factor:.0f}' for r in runs)})"
        )


if __name__ == "__main__":
    main()
