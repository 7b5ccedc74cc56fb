"""The uplink in a process of its own, for the SIGKILL tests.

    python -m tests.support.uplink_runner LEDGER URL [--write N]

Relays the ledger's outbox to the broker until killed; with `--write N` it also records N new
sessions per second while it runs, as the daemon would. Prints `connected` once it is online.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import sys
from pathlib import Path

import structlog

from controller.sessions.ledger import Ledger
from controller.uplink.service import Uplink
from drivers.clock import SystemClock
from tests.support.uplink_harness import RecordingHandler, fast_config, fill


async def _run(ledger_path: Path, url: str, write_per_s: int, first: int) -> None:
    async with await Ledger.open(ledger_path) as ledger:
        config = fast_config(url)
        async with Uplink(config, ledger, SystemClock(), command_handler=RecordingHandler()) as uplink:
            await uplink.wait_connected()
            sys.stdout.write("connected\n")
            sys.stdout.flush()
            for n in itertools.count():
                if write_per_s:
                    await fill(ledger, write_per_s // 10 or 1, first=first + n * 1000)
                await asyncio.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ledger", type=Path)
    parser.add_argument("url")
    parser.add_argument("--write", type=int, default=0)
    parser.add_argument("--first", type=int, default=1_000_000)
    args = parser.parse_args()
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    asyncio.run(_run(args.ledger, args.url, args.write, args.first))


if __name__ == "__main__":
    main()
