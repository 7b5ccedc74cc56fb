"""`sitectl run --config FILE`: the daemon."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from controller.cli import SubParsers


def register(subparsers: SubParsers) -> None:
    run = subparsers.add_parser(
        "run",
        help="run the site controller daemon",
        description="Run the daemon: read the meter, balance and drive the chargers, record sessions. "
        "SITECTL_<SECTION>__<KEY> environment variables override the file.",
    )
    run.add_argument("--config", type=Path, required=True, metavar="FILE", help="site configuration (TOML)")
    # Accelerated time for runs against the simulator; the three go together (see controller.simrun).
    run.add_argument("--clock-speed", type=float, default=None, help=argparse.SUPPRESS)
    run.add_argument("--clock-epoch", type=datetime.fromisoformat, default=None, help=argparse.SUPPRESS)
    run.add_argument("--clock-anchor", type=float, default=None, help=argparse.SUPPRESS)
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import os
    import signal
    import sys

    import structlog

    from controller.app import Daemon, serve
    from controller.logs import configure_logging
    from controller.runtime import tune_garbage_collector
    from controller.sdnotify import SystemdNotifier
    from controller.sessions import LedgerError
    from controller.settings import ConfigError, SiteSettings, load_settings
    from controller.site_checks import site_checks
    from drivers.clock import ScaledClock, SystemClock
    from drivers.contracts import Clock

    def load() -> SiteSettings:
        return load_settings(args.config, dict(os.environ), failsafe_budget_check=site_checks)

    try:
        settings = load()
    except ConfigError as exc:
        print(f"sitectl run: invalid configuration\n{exc}", file=sys.stderr)
        return 2
    clock: Clock = SystemClock()
    if args.clock_speed is not None:
        if args.clock_epoch is None or args.clock_epoch.tzinfo is None:
            print("sitectl run: --clock-speed needs an aware --clock-epoch", file=sys.stderr)
            return 2
        clock = ScaledClock(args.clock_speed, args.clock_epoch, real_start_s=args.clock_anchor)
    log = structlog.get_logger("run")

    async def main() -> None:
        stop = asyncio.Event()
        current: list[Daemon] = []

        def started(daemon: Daemon) -> None:
            current[:] = [daemon]
            configure_logging(daemon.settings.log.level, daemon.settings.log.format)

        def hangup() -> None:
            # systemctl reload (ExecReload sends SIGHUP): the same check as `sitectl reload`.
            if not current:
                return  # before the first daemon exists there is nothing to reload yet
            try:
                current[0].request_reload()
            except ConfigError as exc:
                log.error("app.reload_refused", reason="invalid configuration", error=str(exc))

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGHUP, hangup)
        with SystemdNotifier() as notifier:
            await serve(settings, clock, stop, load=load, notifier=notifier, started=started)

    tune_garbage_collector()
    try:
        asyncio.run(main())
    except LedgerError as exc:
        # An unreadable or corrupt ledger is billing data at risk: never run on top of it.
        print(f"sitectl run: {exc}", file=sys.stderr)
        return 1
    except ExceptionGroup as group:
        ledger_errors, rest = group.split(LedgerError)
        if ledger_errors is None or rest is not None:
            raise
        for error in ledger_errors.exceptions:
            print(f"sitectl run: {error}", file=sys.stderr)
        return 1
    return 0
