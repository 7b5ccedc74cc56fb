"""The simulator's command line, shared by `python -m simulator` and `sitectl sim`.

`add_run_arguments` only builds argparse (cheap, so `sitectl --help` stays fast); the work happens
in `run_command`, which imports the garage.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simulator.runner import Around


def host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", type=Path, help="scenario file (TOML, see docs/simulator.md)")
    parser.add_argument(
        "--speed", type=positive, help="simulated seconds per real second (default: the file's)"
    )
    parser.add_argument("--seed", type=int, help="random seed (default: the file's)")
    parser.add_argument(
        "--duration", type=positive, metavar="S", help="simulated seconds (default: the file's)"
    )
    parser.add_argument("--report", type=Path, metavar="OUT.json", help="write the JSON report here")
    parser.add_argument("--plot", type=Path, metavar="OUT.png", help="write the plot here (needs matplotlib)")
    parser.add_argument("--endpoints", type=Path, metavar="OUT.json", help="write the endpoints here")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="physics only, as fast as possible: no meter, no websockets, no controller",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--meter-link", type=Path, metavar="PATH", help="stable symlink to the meter's pty")
    where.add_argument("--meter-tcp", type=host_port, metavar="HOST:PORT", help="serve the meter on TCP")
    where.add_argument(
        "--meter-serial",
        metavar="DEVICE",
        help="write the meter's frames to a real serial port (a USB adapter wired to a real box's HAN "
        "input) at 2400 baud and the vendor's parity; use --speed 1",
    )


def run_command(
    args: argparse.Namespace,
    *,
    csms_url: str | None,
    around: Around | None = None,
    prog: str = "python -m simulator run",
) -> int:
    """Load, run, report; 0 ok, 1 runtime failure, 2 bad input."""
    import sys

    from simulator.runner import run_scenario
    from simulator.scenario_file import ScenarioFileError, load_scenario

    try:
        loaded = load_scenario(args.scenario).with_overrides(
            seed=args.seed, duration_s=args.duration, speed=args.speed
        )
    except ScenarioFileError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    if args.offline and (around is not None or csms_url is not None):
        print(
            f"{prog}: --offline runs no endpoints; it cannot be combined with a controller", file=sys.stderr
        )
        return 2
    try:
        run_scenario(
            loaded,
            speed=args.speed,
            csms_url=csms_url,
            meter_link=args.meter_link,
            meter_tcp=args.meter_tcp,
            meter_serial=args.meter_serial,
            offline=args.offline,
            report_path=args.report,
            plot_path=args.plot,
            endpoints_path=args.endpoints,
            around=around,
            out=lambda line: print(line, flush=True),
        )
    except OSError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    return 0


def check_command(args: argparse.Namespace, prog: str = "python -m simulator check") -> int:
    import sys

    from simulator.scenario_file import ScenarioFileError, load_scenario, scenario_summary

    status = 0
    for path in args.scenarios:
        try:
            loaded = load_scenario(path)
        except ScenarioFileError as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            status = 2
            continue
        for line in scenario_summary(loaded):
            print(line)
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simulator", description="Hardware-in-the-loop garage simulator."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    run = commands.add_parser(
        "run", help="run a scenario: meter on a pty or TCP, chargers as websocket clients of a CSMS"
    )
    add_run_arguments(run)
    run.add_argument(
        "--csms-url",
        metavar="ws://HOST:PORT/ocpp",
        help="the controller's OCPP endpoint; chargers connect to <url>/<identity>",
    )
    check = commands.add_parser("check", help="load scenario files and print what they describe")
    check.add_argument("scenarios", type=Path, nargs="+")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import sys

    import structlog

    args = build_parser().parse_args(argv)
    # Standard output carries the endpoints and the summary; logs go to standard error, warnings up.
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(30),
    )
    if args.command == "check":
        return check_command(args)
    try:
        return run_command(args, csms_url=args.csms_url)
    except KeyboardInterrupt:
        return 130
