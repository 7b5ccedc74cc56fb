"""`sitectl demo`: the embedded default run, for a newcomer on a fresh machine.

A simulated garage (simulator/scenarios/demo_garage.toml: IT 230 V, main fuse 3x125 A, two boards
and a circuit per charger, 24 virtual OCPP chargers with 1- and 3-phase cars that respond in ~5 s and
taper, an evening base load, a virtual Kaifa HAN meter on a pty) and the real daemon (`sitectl run`)
against it over the real protocols, accelerated. The live status table is the daemon's own
(`sitectl status`); at the end a summary from the simulator's ground truth: energy per car, the
highest line current against its limit, overload ampere-seconds, fairness.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.cli import SubParsers

if TYPE_CHECKING:
    from simulator.recording import Recording

SCENARIO_NAME = "demo_garage.toml"


def register(subparsers: SubParsers) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run the embedded default: a simulated garage driven by the real daemon",
        description=(
            "Run a simulated garage (24 OCPP chargers, a HAN meter, IT 230 V, main fuse 3x125 A) with "
            "the real daemon against it, accelerated; show the daemon's live status table and end with "
            "a summary from the simulator's ground truth."
        ),
    )
    # 10x leaves the daemon and the simulator headroom on a two-core box; faster, the daemon's
    # reactions start to lag in simulated time and the overload figures say more about the CPU.
    demo.add_argument("--speed", type=float, default=10.0, help="simulated seconds per real second")
    demo.add_argument(
        "--duration", type=float, default=1800.0, help="simulated seconds to run (default 30 min)"
    )
    demo.add_argument("--every", type=float, default=3.0, help="real seconds between status tables")
    demo.add_argument("--workdir", type=Path, help="daemon configuration, ledger and log (default: temp)")
    demo.add_argument("--plot", type=Path, help="also write the simulator's plot (PNG)")
    demo.add_argument("--report", type=Path, help="also write the simulator's report (JSON)")
    demo.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import sys
    import tempfile

    from controller.logs import configure_logging

    if args.speed <= 0 or args.duration <= 0 or args.every <= 0:
        print("sitectl demo: --speed, --duration and --every must be positive", file=sys.stderr)
        return 2
    configure_logging("warning", "console")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sitectl-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(_demo(args, workdir))
    except KeyboardInterrupt:
        return 130


async def _demo(args: argparse.Namespace, workdir: Path) -> int:
    import asyncio
    import contextlib
    import sys
    from collections.abc import AsyncIterator

    import simulator
    from controller.cli.sim import _free_port, daemon_around
    from controller.cli.status import render_status
    from controller.localapi.client import DaemonUnreachable, RemoteError, call
    from controller.simrun import DaemonError
    from simulator.metrics import plot, report
    from simulator.runner import SimulationRun, run_live, write_json
    from simulator.scenario_file import load_scenario

    scenario = Path(simulator.__file__).parent / "scenarios" / SCENARIO_NAME
    loaded = load_scenario(scenario).with_overrides(duration_s=args.duration, speed=args.speed)
    listen = f"127.0.0.1:{_free_port()}"
    socket_path = workdir / "control.sock"
    tty = sys.stdout.isatty()
    real_s = args.duration / args.speed
    print(
        f"sitectl demo: {len(loaded.scenario.chargers)} virtual OCPP chargers, a virtual HAN meter and "
        f"the daemon, {args.duration:g} simulated s at {args.speed:g}x (about {real_s:.0f} s); "
        f"work directory {workdir}",
        flush=True,
    )
    daemon = daemon_around(workdir, listen, out=lambda line: print(line, flush=True))
    last_status: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def around(sim: SimulationRun) -> AsyncIterator[None]:
        async with daemon(sim):

            async def show() -> None:
                while True:
                    await asyncio.sleep(args.every)
                    try:
                        status = await call(socket_path, "status", timeout_s=5.0)
                    except (DaemonUnreachable, RemoteError, OSError, TimeoutError):
                        continue  # starting, or killed by a drill: the next round shows it
                    last_status.update(status)
                    table = render_status(status)
                    print(("\x1b[2J\x1b[H" if tty else "\n") + table, flush=True)

            task = asyncio.create_task(show(), name="demo-status")
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    try:
        recording, extra = await run_live(
            loaded,
            speed=args.speed,
            csms_url=f"ws://{listen}/ocpp",
            meter_link=workdir / "ttyHAN",
            around=around,
            out=lambda _line: None,
        )
    except DaemonError as exc:
        print(f"sitectl demo: {exc}\ndaemon log: {workdir / 'daemon.log'}", file=sys.stderr)
        return 1
    data = report(recording)
    data.update(extra)
    if args.report is not None:
        write_json(args.report, data)
    if args.plot is not None:
        plot(recording, args.plot)
    for line in summary(recording, data, workdir):
        print(line)
    if args.plot is not None:
        print(f"plot: {args.plot}")
    return 0


def summary(recording: Recording, data: dict[str, Any], workdir: Path) -> list[str]:
    """The end-of-run summary from the simulator's ground truth (not from the daemon's view)."""
    import numpy as np

    lines = ["", f"summary of {data['scenario']} ({data['duration_s']:g} simulated s, ground truth):"]
    lines.append("  energy per car:")
    for visit in data["visits"]:
        lines.append(
            f"    {visit['charger'] or '-':<6} {visit['model']:<18} {visit['delivered_wh'] / 1000:6.2f} kWh "
            f"of {visit['wanted_wh'] / 1000:5.1f} wanted, started {visit['starts']}x, "
            f"longest wait {visit['longest_wait_s']:.0f} s"
        )
    worst_ratio, worst = 0.0, ""
    for i, fuse in enumerate(recording.fuse_ids):
        limit_a = float(recording.fuse_limits_a[i])
        for k, line in enumerate(("L1", "L2", "L3")):
            series = recording.fuse_a[: recording.rows, i, k]
            peak_a = float(np.max(series)) if len(series) else 0.0
            if peak_a / limit_a > worst_ratio:
                worst_ratio, worst = peak_a / limit_a, f"{fuse} {line}: {peak_a:.1f} A of {limit_a:g} A"
    lines.append(f"  highest line current against its limit: {worst} ({worst_ratio:.0%})")
    overload = data["overload"]
    lines.append(
        f"  overload: {overload['total_as']:.1f} A*s above ratings"
        + "".join(
            f"; {x['fuse']} {x['line']} {x['overload_as']:.1f} A*s over {x['time_above_s']:.0f} s "
            f"in {x['episodes']} spells, the longest {x['longest_above_s']:.1f} s"
            for x in overload["lines"]
        )
    )
    if overload["lines"]:
        lines.append(
            "    (the seconds after a base-load step - the lift, the ventilation - before the cars follow "
            "their cut; a fuse carries 1.25x its rating for an hour)"
        )
    lines.append(f"  trips: {len(data['trips'])}")
    fairness = data["fairness"]
    jain = fairness["jain_energy"]
    lines.append(
        f"  fairness (Jain index of energy among {fairness['cars_with_unmet_demand']} cars that wanted "
        f"more): {'-' if jain is None else f'{jain:.2f}'}"
    )
    energy = data["energy"]
    lines.append(
        f"  energy: {energy['delivered_wh'] / 1000:.1f} kWh to {energy['cars']} cars; "
        f"longest wait plugged in: {data['waits']['longest_plugged_not_charging_s']:.0f} s"
    )
    lines.append(f"  daemon: sessions in {workdir / 'ledger.sqlite'}, log {workdir / 'daemon.log'}")
    return lines
