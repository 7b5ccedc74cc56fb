"""OCPP fan-out benchmark: 300 chargers on one CSMS, MeterValues every 10 s (accelerated), and one
allocation's 300 setpoint changes fanned out.

    python -m bench.ocpp_fanout [--chargers 300] [--speed 10] [--rounds 7]

The CSMS runs in its own process so that its CPU time (/proc/<pid>/stat) and resident memory
(/proc/<pid>/status VmRSS) are its own; the chargers are lightweight raw-websocket OCPP clients in
this process (half 1.6, half 2.0.1). Figures printed:
- fan-out: time from "allocation ready" (all 300 set_current calls issued at once) to the last
  acknowledged SetChargingProfile, per round; median and max over the rounds;
- CPU seconds of the CSMS process per 1000 OCPP messages (in + out) while the chargers send
  MeterValues every 10 simulated seconds, median over windows;
- VmRSS of the CSMS process, median and max over samples.
Targets: fan-out acknowledged within 1 s on loopback; resident memory <= 150 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PASSWORD = "bench-password-0123456789"
REPO_ROOT = str(Path(__file__).resolve().parents[1])
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------- CSMS process


async def serve(chargers: int) -> None:
    from drivers.clock import SystemClock
    from drivers.contracts import ChargerEvent
    from drivers.ocpp import (
        CentralSystem,
        ChargePointConfig,
        CsmsConfig,
        InMemoryTransactionIds,
        LocalAuthList,
    )
    from drivers.ocpp.passwords import hash_password

    # Cheap scrypt: the benchmark measures the OCPP path; a real hash costs ~50 ms once per charger.
    password_hash = hash_password(PASSWORD, log2_n=8, r=4, p=1)
    events = [0]

    def sink(event: ChargerEvent) -> None:
        events[0] += 1

    config = CsmsConfig(
        host="127.0.0.1",
        port=0,
        boot_retry_interval_s=2,
        call_timeout_s=10,
        max_connections=chargers + 10,
        ping_interval_s=None,
    )
    charge_points = [
        ChargePointConfig(f"CP{i:03d}", {1: f"cp{i:03d}"}, password_hash=password_hash, safe_current_a=6)
        for i in range(chargers)
    ]
    async with CentralSystem(
        config,
        charge_points,
        clock=SystemClock(),
        sink=sink,
        authorizer=LocalAuthList(),
        transaction_ids=InMemoryTransactionIds(),
    ) as csms:
        print(json.dumps({"port": csms.port}), flush=True)
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().strip():
            command, _, argument = line.partition(" ")
            if command == "stats":
                reply: dict[str, Any] = {
                    "messages": csms.counters["messages_in"] + csms.counters["messages_out"],
                    "provisioned": sum(csms.charger(c).provisioned for c in csms.charger_ids()),
                    "events": events[0],
                    "errors": {
                        k: v
                        for k, v in csms.counters.items()
                        if v and k not in ("messages_in", "messages_out")
                    },
                }
            elif command == "fanout":
                amps = float(argument)
                handles = [csms.charger(c) for c in csms.charger_ids()]
                started = time.perf_counter()
                results = await asyncio.gather(
                    *(h.set_current(amps, lease_s=60, timeout_s=10) for h in handles)
                )
                elapsed = time.perf_counter() - started
                reply = {"elapsed_s": elapsed, "accepted": sum(r.ok for r in results), "total": len(results)}
            else:
                reply = {"error": f"unknown command {command}"}
            print(json.dumps(reply), flush=True)


# ---------------------------------------------------------------------------------- charger clients


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class BenchCharger:
    """A minimal OCPP charger: answers the CSMS's calls, boots until Accepted, one transaction,
    MeterValues every `interval_s`."""

    def __init__(self, identity: str, version: str, interval_s: float, password: str = PASSWORD) -> None:
        self.identity = identity
        self.password = password
        self.version = version
        self.interval_s = interval_s
        self.accepted = asyncio.Event()
        self._ids = (str(n) for n in range(10**9))
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.energy_wh = 1000

    async def call(self, ws: Any, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        unique_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[unique_id] = future
        await ws.send(json.dumps([2, unique_id, action, payload]))
        return await asyncio.wait_for(future, 30)

    def boot_payload(self) -> dict[str, Any]:
        if self.version == "1.6":
            return {"chargePointVendor": "bench", "chargePointModel": "b16"}
        return {"chargingStation": {"vendorName": "bench", "model": "b201"}, "reason": "PowerUp"}

    async def boot(self, ws: Any) -> None:
        reply = await self.call(ws, "BootNotification", self.boot_payload())
        if reply.get("status") == "Accepted":
            self.accepted.set()

    async def receive(self, ws: Any) -> None:
        async for raw in ws:
            message = json.loads(raw)
            if message[0] == 3:
                future = self._waiting.pop(message[1], None)
                if future is not None and not future.done():
                    future.set_result(message[2])
                continue
            if message[0] != 2:
                continue
            action = message[2]
            self.on_call(action, message[3])
            answer: dict[str, Any] = {"status": "Accepted"}
            if action == "SetVariables":
                answer = {
                    "setVariableResult": [
                        {
                            "attributeStatus": "Accepted",
                            "component": d["component"],
                            "variable": d["variable"],
                        }
                        for d in message[3]["setVariableData"]
                    ]
                }
            await ws.send(json.dumps([3, message[1], answer]))
            if action == "TriggerMessage" and message[3].get("requestedMessage") == "BootNotification":
                asyncio.get_running_loop().create_task(self.boot(ws))

    def on_call(self, action: str, payload: dict[str, Any]) -> None:
        """A call from the CSMS, before it is answered Accepted."""

    def current_a(self) -> float:
        return 15.9

    def meter_value(self) -> list[dict[str, Any]]:
        self.energy_wh += 40
        current = self.current_a()
        sampled: list[dict[str, Any]]
        if self.version == "1.6":
            sampled = [
                {"value": str(self.energy_wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
            ]
            sampled += [
                {"value": str(current), "measurand": "Current.Import", "phase": p, "unit": "A"}
                for p in ("L1", "L2", "L3")
            ]
        else:
            sampled = [{"value": self.energy_wh, "measurand": "Energy.Active.Import.Register"}]
            sampled += [
                {"value": current, "measurand": "Current.Import", "phase": p} for p in ("L1", "L2", "L3")
            ]
        return [{"timestamp": _now(), "sampledValue": sampled}]

    async def run(self, url: str, stop: asyncio.Event) -> None:
        import websockets
        from websockets.typing import Subprotocol

        token = base64.b64encode(f"{self.identity}:{self.password}".encode()).decode()
        protocol = Subprotocol("ocpp1.6" if self.version == "1.6" else "ocpp2.0.1")
        async with websockets.connect(
            f"{url}/{self.identity}",
            subprotocols=[protocol],
            additional_headers={"Authorization": f"Basic {token}"},
            open_timeout=60,
            ping_interval=None,
            compression=None,
        ) as ws:
            receiver = asyncio.get_running_loop().create_task(self.receive(ws))
            try:
                await self.boot(ws)
                await asyncio.wait_for(self.accepted.wait(), 60)
                if self.version == "1.6":
                    start = await self.call(
                        ws,
                        "StartTransaction",
                        {
                            "connectorId": 1,
                            "idTag": "BENCH",
                            "meterStart": self.energy_wh,
                            "timestamp": _now(),
                        },
                    )
                    transaction: Any = start["transactionId"]
                else:
                    transaction = f"{self.identity}-tx"
                    await self.call(ws, "TransactionEvent", self._event("Started", 0, transaction))
                seq = 1
                while not stop.is_set():
                    with suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.interval_s)
                        break
                    if self.version == "1.6":
                        payload = {
                            "connectorId": 1,
                            "transactionId": transaction,
                            "meterValue": self.meter_value(),
                        }
                        await self.call(ws, "MeterValues", payload)
                    else:
                        await self.call(ws, "TransactionEvent", self._event("Updated", seq, transaction))
                        seq += 1
            finally:
                receiver.cancel()
                with suppress(asyncio.CancelledError):
                    await receiver

    def _event(self, kind: str, seq: int, transaction: str) -> dict[str, Any]:
        return {
            "eventType": kind,
            "timestamp": _now(),
            "triggerReason": "Authorized" if kind == "Started" else "MeterValuePeriodic",
            "seqNo": seq,
            "transactionInfo": {"transactionId": transaction, "chargingState": "Charging"},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": self.meter_value(),
        }


# ---------------------------------------------------------------------------------------- measuring


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Server:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(self.process.stdout.readline(), 60))
        return reply


def _staggered(n: int) -> Iterator[tuple[int, str]]:
    for i in range(n):
        yield i, "1.6" if i % 2 == 0 else "2.0.1"


async def run(chargers: int, speed: float, rounds: int, windows: int, window_s: float) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.ocpp_fanout", "--serve", "--chargers", str(chargers),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": REPO_ROOT},
    )  # fmt: skip
    server = Server(process)
    assert process.stdout is not None
    port = json.loads(await asyncio.wait_for(process.stdout.readline(), 60))["port"]
    url = f"ws://127.0.0.1:{port}/ocpp"
    stop = asyncio.Event()
    interval_s = 10.0 / speed
    clients = [BenchCharger(f"CP{i:03d}", version, interval_s) for i, version in _staggered(chargers)]
    connect_started = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as group:
            for client in clients:
                group.create_task(client.run(url, stop))
                await asyncio.sleep(0.002)  # a garage's chargers don't all connect in the same millisecond
            for _ in range(600):
                stats = await server.ask("stats")
                if stats["provisioned"] == chargers and all(c.accepted.is_set() for c in clients):
                    break
                await asyncio.sleep(0.1)
            connected_s = time.perf_counter() - connect_started
            ready = f"{stats['provisioned']}/{chargers}"
            print(f"chargers connected, provisioned and Accepted: {ready} in {connected_s:.1f} s")
            rss = [rss_mb(process.pid)]

            cpu_per_1000: list[float] = []
            for _ in range(windows):
                before_cpu, before = cpu_seconds(process.pid), (await server.ask("stats"))["messages"]
                await asyncio.sleep(window_s)
                after_cpu, after = cpu_seconds(process.pid), (await server.ask("stats"))["messages"]
                cpu_per_1000.append((after_cpu - before_cpu) / max(1, after - before) * 1000)
                rss.append(rss_mb(process.pid))

            fanout: list[float] = []
            for round_number in range(rounds):
                amps = 10.0 + round_number * 0.7
                result = await server.ask(f"fanout {amps}")
                if result["accepted"] != chargers:
                    raise RuntimeError(f"fan-out round {round_number}: {result}")
                fanout.append(result["elapsed_s"])
                rss.append(rss_mb(process.pid))
                await asyncio.sleep(0.5)
            final = await server.ask("stats")
            stop.set()
    finally:
        stop.set()
        if process.stdin is not None:
            process.stdin.close()
        with suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 20)
        if process.returncode is None:
            process.kill()
            await process.wait()

    rate = chargers / interval_s
    print(f"MeterValues: every 10 s simulated = {interval_s:.2f} s real (x{speed:g}); {rate:.0f}/s sent")
    print(f"CPU per 1000 messages (CSMS process): median {statistics.median(cpu_per_1000):.3f} s "
          f"(windows: {', '.join(f'{x:.3f}' for x in cpu_per_1000)})")  # fmt: skip
    rounds_ms = ", ".join(f"{x * 1000:.0f}" for x in fanout)
    print(f"fan-out of {chargers} setpoints to last ack: median {statistics.median(fanout) * 1000:.0f} ms, "
          f"max {max(fanout) * 1000:.0f} ms (rounds: {rounds_ms}); target <= 1000 ms")  # fmt: skip
    print(f"resident memory (VmRSS, CSMS process): median {statistics.median(rss):.1f} MB, "
          f"max {max(rss):.1f} MB; target <= 150 MB")  # fmt: skip
    print(f"CSMS counters other than messages: {final['errors'] or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chargers", type=int, default=300)
    parser.add_argument(
        "--speed", type=float, default=10.0, help="time acceleration of the MeterValues interval"
    )
    parser.add_argument("--rounds", type=int, default=7, help="fan-out rounds")
    parser.add_argument("--windows", type=int, default=5, help="CPU measurement windows")
    parser.add_argument("--window-s", type=float, default=4.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        import logging

        import structlog

        # Per-message logs to a pipe nobody reads would measure the logger, not the CSMS.
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
        asyncio.run(serve(args.chargers))
    else:
        asyncio.run(run(args.chargers, args.speed, args.rounds, args.windows, args.window_s))


if __name__ == "__main__":
    main()
