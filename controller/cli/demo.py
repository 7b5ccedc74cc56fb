"""`sitectl demo`: the embedded default run, for a newcomer on a fresh machine.

It starts a virtual AMS meter (the simulator's, Aidon three-wire IT by default) on a real pty and
reads it with the product's HAN reader, accelerated, printing each live reading and a summary.
"""

from __future__ import annotations

import argparse

from controller.cli import SubParsers


def register(subparsers: SubParsers) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="run the embedded default: a simulated AMS meter read live by the HAN reader",
        description=(
            "Start a virtual AMS meter on a pty and read it live with the product's HAN reader, "
            "accelerated; print each reading and a summary at the end."
        ),
    )
    demo.add_argument("--vendor", default="aidon", choices=("aidon", "kaifa", "kamstrup", "landis_gyr"))
    demo.add_argument("--grid", default="IT", choices=("IT", "TN"))
    demo.add_argument("--speed", type=float, default=10.0, help="simulated seconds per real second")
    demo.add_argument(
        "--duration", type=float, default=900.0, help="simulated seconds to run (default 15 min)"
    )
    demo.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from controller.logs import configure_logging

    if args.speed <= 0 or args.duration <= 0:
        print("sitectl demo: --speed and --duration must be positive")
        return 2
    configure_logging("warning", "console")
    return asyncio.run(_demo(args))


async def _demo(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib
    import signal
    import sys
    import tempfile
    from collections import Counter
    from datetime import UTC, datetime
    from pathlib import Path

    from controller.cli.han import reading_line
    from drivers.clock import ScaledClock
    from drivers.contracts import MeterReading
    from drivers.han import HanReader
    from simulator.clock import SimClock
    from simulator.han_meter import PtyOutput, SlowLoad, Vendor, VirtualMeter, default_profile

    # Start just before an hour so the hourly list with energy registers shows up early.
    now = datetime.now(UTC).replace(minute=59, second=30, microsecond=0)
    sim_clock = SimClock(args.speed, now)
    clock = ScaledClock(args.speed, now)
    profile = default_profile(Vendor(args.vendor), phases=3, grid=args.grid)
    load = SlowLoad(sim_clock, grid=args.grid, phases=3, mean_current_a=60.0, swing_a=25.0, period_s=600.0)
    lists: Counter[int] = Counter()
    stop = asyncio.Event()

    def show(reading: MeterReading) -> None:
        lists[int(reading.list_type)] += 1
        print(reading_line(reading), flush=True)

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with tempfile.TemporaryDirectory(prefix="sitectl-demo-") as tmp:
        link = Path(tmp) / "ttyHAN"
        async with PtyOutput(link) as output:
            meter = VirtualMeter(profile, load, sim_clock, output)
            reader = HanReader(str(link), clock=clock, sink=show, vendor="auto")
            print(
                f"virtual {args.vendor} meter ({args.grid}, 3-phase) on {output.slave_path} "
                f"at {args.speed:g}x; reading it with the HAN reader for {args.duration:g} simulated s",
                flush=True,
            )
            async with asyncio.TaskGroup() as tasks:
                meter_task = tasks.create_task(meter.run(), name="virtual-meter")
                reader_task = tasks.create_task(reader.run(), name="han-reader")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=clock.loop_seconds(args.duration))
                meter_task.cancel()
                reader_task.cancel()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(signum)

    sent = sum(meter.frames_sent.values())
    counters = reader.counters
    dropped = {k: v for k, v in counters.items() if k.startswith("bad_") and v}
    print(
        f"\nsummary: meter sent {sent} frames; reader decoded {sum(lists.values())} readings "
        f"(list 1: {lists[1]}, list 2: {lists[2]}, list 3: {lists[3]}); dropped {dropped or 'none'}; "
        f"garbage bytes {counters.get('garbage_bytes', 0)}",
        file=sys.stdout,
    )
    # Frames still in the pty when the run ended are the only ones allowed to be missing.
    return 0 if sent - sum(lists.values()) <= 2 else 1
