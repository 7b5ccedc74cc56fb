"""Run one virtual meter by hand, e.g.

python -m simulator.han_meter --vendor aidon --phases 3 --grid IT --pty
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence

import structlog

from simulator.clock import SimClock

from .load import SlowLoad
from .meter import VirtualMeter
from .model import Grid, Phases, Vendor, default_profile
from .outputs import Output, PtyOutput, TcpOutput


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulator.han_meter", description=__doc__)
    parser.add_argument("--vendor", type=Vendor, choices=list(Vendor), default=Vendor.AIDON)
    parser.add_argument("--phases", type=int, choices=(1, 3), default=3)
    parser.add_argument("--grid", choices=("IT", "TN"), default="TN")
    parser.add_argument("--ct-ratio", type=float, default=1.0)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--pty", nargs="?", const="", metavar="LINK", help="pty; optional stable symlink path")
    where.add_argument("--tcp", type=_host_port, metavar="HOST:PORT", help="serve on TCP (port 0: any)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    parser.add_argument("--mean-current", type=float, default=40.0, help="mean line current, A")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many real seconds")
    return parser


async def _run(args: argparse.Namespace) -> int:
    phases: Phases = 1 if args.phases == 1 else 3
    grid: Grid = "IT" if args.grid == "IT" else "TN"
    profile = default_profile(args.vendor, phases, grid, args.ct_ratio)
    clock = SimClock(args.speed)
    load = SlowLoad(clock, grid=grid, phases=phases, mean_current_a=args.mean_current)
    output: Output
    if args.tcp is not None:
        tcp = TcpOutput(*args.tcp)
        await tcp.start()
        print(f"serving {profile.vendor} meter on socket://{tcp.host}:{tcp.port}", flush=True)
        output = tcp
    else:
        pty = PtyOutput(args.pty or None)
        pty.replug()
        link = f" (link {pty.link_path})" if pty.link_path else ""
        print(f"{profile.vendor} meter on {pty.slave_path}{link}", flush=True)
        output = pty
    meter = VirtualMeter(profile, load, clock, output)
    try:
        async with asyncio.timeout(args.duration):
            await meter.run()
    except TimeoutError:
        pass
    finally:
        await output.aclose()
        print(f"frames sent: {dict(sorted((int(k), v) for k, v in meter.frames_sent.items()))}", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Standard output carries the pty path / port for whoever started the meter; logs go aside.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    if args.speed <= 0 or args.ct_ratio <= 0:
        print("--speed and --ct-ratio must be positive", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
