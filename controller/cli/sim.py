"""`sitectl sim run SCENARIO.toml`: the simulated garage, optionally with the real daemon under test.

Without `--with-daemon` it is `python -m simulator run`: the meter on a pty (or TCP) and the
virtual chargers as websocket clients of `--csms-url`, for a controller started by hand. With
`--with-daemon` it also writes a daemon configuration for the scenario's site into a work
directory (the simulator's endpoints filled in), starts `sitectl run` on the simulator's clock,
kills and restarts it for the scenario's `controller_kill` faults, and stops it at the end.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from controller.cli import SubParsers

if TYPE_CHECKING:
    from simulator.runner import SimulationRun


def register(subparsers: SubParsers) -> None:
    from simulator.cli import add_run_arguments

    sim = subparsers.add_parser("sim", help="hardware-in-the-loop simulator: run a scenario")
    commands = sim.add_subparsers(dest="sim_command", metavar="SUBCOMMAND", required=True)
    run = commands.add_parser(
        "run",
        help="run a scenario (meter on a pty, chargers over OCPP), optionally with the daemon",
        description=(
            "Run a simulated garage whose endpoints are real: HAN frames on a pty or TCP port, "
            "OCPP chargers as websocket clients. Prints the endpoints, runs to the end, writes the "
            "report and plot, prints a summary. See docs/simulator.md."
        ),
    )
    add_run_arguments(run)
    who = run.add_mutually_exclusive_group()
    who.add_argument(
        "--csms-url",
        metavar="ws://HOST:PORT/ocpp",
        help="a controller already running (chargers connect here)",
    )
    who.add_argument(
        "--with-daemon",
        action="store_true",
        help="start the daemon (sitectl run) as the controller, configured from the scenario's site",
    )
    run.add_argument(
        "--workdir",
        type=Path,
        help="with --with-daemon: where its configuration, ledger, socket and log go (default: new temp dir)",
    )
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import sys
    import tempfile

    from controller.logs import configure_logging
    from simulator.cli import run_command

    # Standard output carries the endpoints and the summary; the simulator's logs, warnings up,
    # go to standard error (the daemon's own go to its log file).
    configure_logging("warning", "console")
    if not args.with_daemon:
        if args.workdir is not None:
            print("sitectl sim run: --workdir goes with --with-daemon", file=sys.stderr)
            return 2
        return run_command(args, csms_url=args.csms_url, prog="sitectl sim run")
    if args.offline:
        print("sitectl sim run: --offline runs no endpoints for a daemon", file=sys.stderr)
        return 2

    from controller.settings import ConfigError
    from controller.simrun import DaemonError

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sitectl-sim-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.meter_link is None and args.meter_tcp is None and args.meter_serial is None:
        args.meter_link = workdir / "ttyHAN"
    listen = f"127.0.0.1:{_free_port()}"
    print(f"daemon work directory: {workdir}", flush=True)
    try:
        return run_command(
            args,
            csms_url=f"ws://{listen}/ocpp",
            around=daemon_around(workdir, listen, out=lambda line: print(line, flush=True)),
            prog="sitectl sim run",
        )
    except ConfigError as exc:
        print(f"sitectl sim run: the scenario's site does not make a valid daemon configuration:\n{exc}")
        return 2
    except DaemonError as exc:
        print(f"sitectl sim run: {exc}", file=sys.stderr)
        return 1
    finally:
        print(f"daemon log: {workdir / 'daemon.log'}", flush=True)


def daemon_around(
    workdir: Path, listen: str, out: Callable[[str], None] = print
) -> Callable[[SimulationRun], contextlib.AbstractAsyncContextManager[None]]:
    """What `run_scenario` wraps the garage run in: the daemon under test, configured for the
    simulation's endpoints, with the scenario's controller kills applied on its timeline."""

    @contextlib.asynccontextmanager
    async def around(sim: SimulationRun) -> AsyncIterator[None]:
        import asyncio

        from controller.simrun import (
            ClockArgs,
            DaemonUnderTest,
            daemon_argv,
            daemon_config,
            write_daemon_config,
        )

        endpoints = sim.endpoints
        config = daemon_config(
            sim.loaded, meter_port=endpoints.meter_port, ocpp_listen=listen, workdir=workdir
        )
        path = write_daemon_config(config, workdir / "site.toml")
        out(f"daemon configuration: {path}")
        clock = ClockArgs(sim.clock.speed, sim.clock.epoch_utc, sim.clock.real_start_s)
        async with DaemonUnderTest(
            daemon_argv(path, clock), workdir / "control.sock", workdir / "daemon.log"
        ) as daemon:
            out(f"daemon running (pid {daemon.pid}), OCPP on ws://{listen}/ocpp")

            async def drills() -> None:
                for kill in sim.loaded.controller_kills:
                    await sim.sleep_until_scenario_s(kill.at_s)
                    out(f"controller_kill at {kill.at_s:g} s: SIGKILL pid {daemon.pid}")
                    daemon.kill()
                    await sim.sleep_until_scenario_s(kill.at_s + kill.duration_s)
                    await daemon.restart()
                    out(f"daemon restarted (pid {daemon.pid})")

            task = asyncio.create_task(drills(), name="controller-kills")
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            out(f"daemon stopped, exit code {await daemon.stop()}")

    return around


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
