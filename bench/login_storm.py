"""Reconnect storm at the production password cost while the meter keeps the control loop busy.

    python -m bench.login_storm [--chargers 300] [--runs 3] [--cpu-limit 0.25]

The real daemon (controller.app) runs in its own process on a generated garage: IT 230 V, main
3x800 A, 300 OCPP chargers, each with its own password hashed at the production scrypt cost
(drivers/ocpp/passwords.py defaults), the AMS meter on a real pty. This process writes Aidon HAN
frames into the pty every 250 ms (ten times the meter's cadence, to sample the loop often) and runs
the chargers (lightweight websocket clients from bench.ocpp_fanout, half 1.6, half 2.0.1), which
honour a 503's Retry-After as real chargers do. Per run:

1. quiet: 10 s of frames, no charger connected;
2. storm: all chargers connect within about 0.3 s, as after a power cut (the daemon has just
   started, so no password is remembered), until every one is provisioned and Accepted;
3. steady: 10 s with every charger connected, sending MeterValues every 10 s;
4. re-storm: every connection drops and comes back (a switch rebooted; passwords are remembered).

Loop cycle latency is measured from the moment a frame's bytes are written into the pty (here) to
the end of the control-loop cycle that consumed them (in the daemon, both on CLOCK_MONOTONIC).
Also printed: time until all are provisioned, the daemon's CPU seconds during the storm, and its
peak resident memory (VmHWM). `--cpu-limit F` puts the daemon in a cgroup (v1 cpu controller, CFS
quota of F x 10 ms per 10 ms period) to emulate a slower CPU; 0.25 stands for one Raspberry Pi 4
core taken as a quarter of one of this machine's cores (an assumption, not a measurement on a Pi).
With it the daemon is also pinned to ceil(F) CPUs (`--cpus` overrides): a quota spread over two
CPUs would let the idle-priority password threads run beside the loop on the other CPU and spend
the quota the loop needs, which on one slow core they cannot (SCHED_IDLE yields to the loop there).
The daemon's garbage-collector thresholds are those `sitectl run` sets (controller/runtime.py);
`--gc-defaults` keeps CPython's, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import time
import tty
from concurrent.futures import ProcessPoolExecutor
from contextlib import suppress
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from bench.daemon_loop import boards
from bench.ocpp_fanout import REPO_ROOT, Server, cpu_seconds
from bench.storm_rig import CGROUP_ROOT, FrameWriter, StormCharger, latencies_ms, limit_cpu, pct, peak_rss_mb

# ------------------------------------------------------------------------------------ the garage


def _password(i: int) -> str:
    return f"storm-password-{i:04d}-xyz"


def _hash(i: int) -> str:
    from drivers.ocpp.passwords import hash_password

    return hash_password(_password(i))  # the production cost


def site_toml(chargers: int, hashes: list[str], tty_path: str, port: int, tmp: Path) -> str:
    parts = [
        '[site]\nid = "storm"\n[grid]\ntype = "IT"\n',
        f'[meter]\nfuse = "main"\nport = "{tty_path}"\nvendor = "aidon"\n',
        f'[ocpp]\nlisten = "127.0.0.1:{port}"\nadoption = false\n',
        "[authorization]\naccept_unknown_tags = true\n",
        f'[storage]\npath = "{tmp / "ledger.sqlite"}"\n[control]\nsocket_path = "{tmp / "control.sock"}"\n',
        '[[fuses]]\nid = "main"\nlimit_a = 800\n',
    ]

    def charger(i: int, circuit: str) -> str:
        return (
            f'[[chargers]]\nid = "CP{i:03d}"\nprotocol = "ocpp"\nfuse = "{circuit}"\n'
            'lines = ["L1", "L2", "L3"]\nmax_a = 16\nsafe_current_a = 0\n'
            f"password_hash = '{hashes[i]}'\n"
        )

    return "\n".join(parts + boards(chargers, charger))


# ------------------------------------------------------------------------------- daemon process


async def serve(site: Path) -> None:
    from controller import app
    from controller.loop import Cycle
    from controller.settings import load_settings
    from drivers.clock import SystemClock

    settings = load_settings(site, {})
    stop = asyncio.Event()
    daemons: list[app.Daemon] = []
    cycle_ends: list[tuple[float, float]] = []  # (end, compute_s) of each meter-triggered cycle

    def observe(cycle: Cycle) -> None:
        if cycle.trigger == "meter":
            cycle_ends.append((time.monotonic(), cycle.compute_s))

    runner = asyncio.create_task(app.serve(settings, SystemClock(), stop, started=daemons.append))
    await asyncio.sleep(0)  # serve() has made the daemon
    daemon = daemons[0]
    await daemon.ready.wait()
    assert daemon.loop is not None and daemon.csms is not None
    daemon.loop.add_observer(observe)
    csms = daemon.csms
    handles = [csms.charger(c) for c in csms.charger_ids()]
    print(json.dumps({"ready": True, "workers": csms.logins.workers}), flush=True)
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    while line := (await reader.readline()).decode().strip():
        if line == "stats":
            logins = csms.logins
            reply: dict[str, Any] = {
                "provisioned": sum(h.provisioned and h.status().online for h in handles),
                "full_checks": logins.full_checks,
                "cached": logins.cached_hits,
                "busy": logins.busy_refusals,
                "connected": len(csms.connected_identities()),
            }
        elif line == "cycles":
            reply = {"ends": cycle_ends[:]}
            cycle_ends.clear()
        else:
            reply = {"error": line}
        print(json.dumps(reply), flush=True)
    stop.set()
    await runner


# ------------------------------------------------------------------------------------- a run


async def storm(server: Server, chargers: int, url: str, stop: asyncio.Event, tasks: asyncio.TaskGroup,
                clients: list[StormCharger]) -> float:  # fmt: skip
    started = time.monotonic()
    for client in clients:
        tasks.create_task(client.run(url, stop))
        await asyncio.sleep(0.001)
    while True:
        stats = await server.ask("stats")
        if stats["provisioned"] == chargers and all(c.accepted.is_set() for c in clients):
            return time.monotonic() - started
        if time.monotonic() - started > 600:
            raise RuntimeError(f"storm did not finish in 600 s: {stats}")
        await asyncio.sleep(0.1)


async def one_run(
    site: Path, chargers: int, master_fd: int, port: int, args: argparse.Namespace
) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.login_storm", "--serve", str(site),
        *(["--gc-defaults"] if args.gc_defaults else []),
        *(["--cpus", str(args.cpus)] if args.cpus is not None else []),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": REPO_ROOT},
    )  # fmt: skip
    group = limit_cpu(process.pid, args.cpu_limit) if args.cpu_limit is not None else None
    server = Server(process)
    assert process.stdout is not None
    ready = json.loads(await asyncio.wait_for(process.stdout.readline(), 120))
    clients: list[StormCharger] = []
    writer = FrameWriter(master_fd, args.frame_period_s, lambda: sum(c.current_a() for c in clients[:]))
    writer.start()
    url = f"ws://127.0.0.1:{port}/ocpp"
    result: dict[str, Any] = {"workers": ready["workers"]}
    ends: list[tuple[float, float]] = []
    windows: dict[str, tuple[float, float]] = {}
    try:
        await asyncio.sleep(2.0)  # the reader has synchronised on the frames
        t, cpu = time.monotonic(), cpu_seconds(process.pid)
        await asyncio.sleep(args.phase_s)
        windows["quiet"] = (t, time.monotonic())
        result["quiet_cpu_s"] = cpu_seconds(process.pid) - cpu
        async with asyncio.TaskGroup() as tasks:
            for phase in ("storm", "re-storm"):
                stop = asyncio.Event()
                clients[:] = [
                    StormCharger(f"CP{i:03d}", "1.6" if i % 2 == 0 else "2.0.1", 10.0, _password(i))
                    for i in range(chargers)
                ]
                t, cpu = time.monotonic(), cpu_seconds(process.pid)
                result[f"{phase}_s"] = await storm(server, chargers, url, stop, tasks, clients)
                windows[phase] = (t, time.monotonic())
                result[f"{phase}_cpu_s"] = cpu_seconds(process.pid) - cpu
                result[f"{phase}_busy"] = sum(c.busy for c in clients)
                result[f"{phase}_failed"] = sum(c.failed for c in clients)
                if phase == "storm":
                    t, cpu = time.monotonic(), cpu_seconds(process.pid)
                    await asyncio.sleep(args.phase_s)
                    windows["steady"] = (t, time.monotonic())
                    result["steady_cpu_s"] = cpu_seconds(process.pid) - cpu
                ends += [(end, compute) for end, compute in (await server.ask("cycles"))["ends"]]
                stop.set()
                for _ in range(600):  # the daemon has seen every connection close
                    if not (await server.ask("stats"))["connected"]:
                        break
                    await asyncio.sleep(0.1)
        result["stats"] = await server.ask("stats")
        result["peak_rss_mb"] = peak_rss_mb(process.pid)
    finally:
        writer.stop.set()
        writer.join()
        if process.stdin is not None:
            process.stdin.close()
        with suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 30)
        if process.returncode is None:
            process.kill()
            await process.wait()
        if group is not None:
            with suppress(OSError):
                group.rmdir()  # empty once the daemon has exited
    for phase, (start, end) in windows.items():
        result[phase], result[f"{phase}_compute"] = latencies_ms(writer.written, ends, start, end)
        if not result[phase]:
            raise RuntimeError(f"no meter cycle seen in the {phase} phase: the daemon read no frame")
    return result


def _run_line(run: int, r: dict[str, Any], phase_s: float) -> str:
    return (
        f"run {run + 1}: storm {r['storm_s']:.1f} s ({r['storm_cpu_s']:.1f} CPU s, {r['storm_busy']} "
        f"busy refusals, {r['storm_failed']} failed handshakes), re-storm {r['re-storm_s']:.1f} s "
        f"({r['re-storm_cpu_s']:.1f} CPU s); daemon CPU quiet {r['quiet_cpu_s'] / phase_s:.2f} "
        f"core, steady {r['steady_cpu_s'] / phase_s:.2f} core; loop p99 quiet "
        f"{pct(r['quiet'], 0.99):.1f} / storm {pct(r['storm'], 0.99):.1f} / steady "
        f"{pct(r['steady'], 0.99):.1f} ms; peak RSS {r['peak_rss_mb']:.1f} MB; {r['stats']}"
    )


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _summary(name: str, runs: list[dict[str, Any]]) -> str:
    def p99_of(phase: str) -> float:
        return statistics.median(pct(r[phase], 0.99) for r in runs)

    p50 = statistics.median(pct(r[name], 0.5) for r in runs)
    p99 = p99_of(name)
    compute = statistics.median(pct(r[f"{name}_compute"], 0.5) for r in runs)
    samples = sum(len(r[name]) for r in runs)
    ratios = "".join(f", {p99 / p99_of(ref):.2f}x {ref}" for ref in ("quiet", "steady") if ref != name)
    return (
        f"  {name:9s} loop latency p50 {p50:6.1f} ms, p99 {p99:6.1f} ms{ratios}; "
        f"cycle compute p50 {compute:5.1f} ms ({samples} frames)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chargers", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cpu-limit", type=float, default=None, help="daemon CPU, in cores of this machine")
    parser.add_argument(
        "--cpus",
        type=int,
        default=None,
        help="CPUs the daemon may run on (default: 1 with --cpu-limit, else all)",
    )
    parser.add_argument("--frame-period-s", type=float, default=0.25, help="seconds between HAN lists")
    parser.add_argument("--phase-s", type=float, default=10.0, help="length of the quiet and steady phases")
    parser.add_argument(
        "--gc-defaults", action="store_true", help="CPython's GC thresholds, not the daemon's"
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        if args.cpus is not None:
            # Before any thread exists: the password pool is sized from, and its threads inherit, this.
            os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cpus])
        from controller.logs import configure_logging

        configure_logging("info", "json")  # the daemon's production level
        if not args.gc_defaults:
            from controller.runtime import tune_garbage_collector

            tune_garbage_collector()  # as `sitectl run` does
        asyncio.run(serve(args.serve))
        return
    if args.cpu_limit is not None and not os.access(CGROUP_ROOT, os.W_OK):
        raise SystemExit(f"--cpu-limit needs a writable cgroup v1 cpu controller at {CGROUP_ROOT}")
    if args.cpu_limit is not None and args.cpus is None:
        args.cpus = max(1, math.ceil(args.cpu_limit))
    started = time.monotonic()
    with ProcessPoolExecutor() as pool:
        hashes = list(pool.map(_hash, range(args.chargers)))
    print(f"{args.chargers} passwords hashed at the production cost in {time.monotonic() - started:.1f} s")
    runs: list[dict[str, Any]] = []
    with TemporaryDirectory() as tmp:
        for run in range(args.runs):
            folder = Path(tmp) / f"run{run}"
            folder.mkdir()
            port = _free_port()
            site = folder / "site.toml"
            # A new pty per run: the meter's line as a new daemon first opens it.
            master_fd, slave_fd = os.openpty()
            tty.setraw(slave_fd)
            try:
                site.write_text(site_toml(args.chargers, hashes, os.ttyname(slave_fd), port, folder))
                result = asyncio.run(one_run(site, args.chargers, master_fd, port, args))
            finally:
                os.close(master_fd)
                os.close(slave_fd)
            runs.append(result)
            print(_run_line(run, result, args.phase_s))
    limit = "no CPU limit" if args.cpu_limit is None else f"daemon limited to {args.cpu_limit:g} core"
    if args.cpus is not None:
        limit += f" on {args.cpus} CPU{'s' if args.cpus > 1 else ''}"
    print(f"medians of {args.runs} runs, {args.chargers} chargers, {limit}, "
          f"{runs[0]['workers']} password workers:")  # fmt: skip
    for name in ("quiet", "storm", "steady", "re-storm"):
        print(_summary(name, runs))
    print(f"  all provisioned after the storm in {statistics.median(r['storm_s'] for r in runs):.1f} s "
          f"({statistics.median(r['storm_cpu_s'] for r in runs):.1f} CPU s), after the re-storm in "
          f"{statistics.median(r['re-storm_s'] for r in runs):.1f} s "
          f"({statistics.median(r['re-storm_cpu_s'] for r in runs):.1f} CPU s)")  # fmt: skip
    peak = [r["peak_rss_mb"] for r in runs]
    print(f"  peak resident memory (VmHWM) median {statistics.median(peak):.1f} MB, "
          f"max {max(peak):.1f} MB; target <= 150 MB")  # fmt: skip
    print("  targets: storm loop p99 within 2x of a quiet run (printed against the empty and the steady")
    print("  garage); peak RSS <= 150 MB; all chargers provisioned")


if __name__ == "__main__":
    main()
