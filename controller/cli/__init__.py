"""`sitectl`: the local command-line tool of the site controller.

Each command group lives in its own module under `controller.cli` and exposes
`register(subparsers)`. Registration must stay cheap (argparse only): heavy imports (numpy, ocpp,
pymodbus, the simulator) happen inside the handlers, so `sitectl --help` is fast on a Pi.

Exit codes: 0 success, 1 a runtime failure, 2 bad input (usage, malformed file, invalid config).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Protocol, TypeAlias, cast

# Order here is the order in `sitectl --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "controller.cli.demo",
    "controller.cli.run",
    "controller.cli.status",
    "controller.cli.chargers",
    "controller.cli.config",
    "controller.cli.han",
    "controller.cli.modbus",
    "controller.cli.secret",
    "controller.cli.balance",
    "controller.cli.sim",
)

Handler = Callable[[argparse.Namespace], int]
# A string: _SubParsersAction is not subscriptable at runtime on Python 3.11.
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class _CommandModule(Protocol):
    def register(self, subparsers: SubParsers) -> None: ...


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sitectl", description="Garage site controller: commissioning, status and tools."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        cast(_CommandModule, importlib.import_module(name)).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = cast(Handler | None, getattr(args, "handler", None))
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `sitectl han decode big.bin | head` closes our stdout early; that is not an error.
        return 0


def run() -> None:
    sys.exit(main())
