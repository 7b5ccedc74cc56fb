"""`sitectl balance SNAPSHOT`: run the allocator on a site snapshot and print its decision.

SNAPSHOT is a file or `-` for standard input, in the format of docs/snapshot.md (what
`sitectl status --json` prints). The allocation is printed as JSON, indented for reading unless
`--compact` asks for one line. A malformed snapshot exits 2 with the offending field named.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.cli import SubParsers


def register(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser(
        "balance",
        help="explain the allocation for a site snapshot",
        description="Allocate current for one site snapshot (docs/snapshot.md) and print every "
        "charger's current, state and what limits it, and every fuse's predicted line currents.",
    )
    parser.add_argument("snapshot", metavar="SNAPSHOT", help="snapshot JSON file, or - for standard input")
    parser.add_argument("--compact", action="store_true", help="print the allocation on one line")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from controller.allocation import SnapshotError, allocate
    from controller.allocation.snapshot_json import allocation_to_json, snapshot_from_json

    source = str(args.snapshot)
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        print(f"sitectl balance: cannot read {source}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        print(f"sitectl balance: {source} is not UTF-8 text: {exc.reason}", file=sys.stderr)
        return 2
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        print(
            f"sitectl balance: {source} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            file=sys.stderr,
        )
        return 2
    try:
        snapshot = snapshot_from_json(obj)
        allocation = allocate(snapshot)
    except SnapshotError as exc:
        print(f"sitectl balance: malformed snapshot: {exc}", file=sys.stderr)
        return 2
    out = allocation_to_json(allocation)
    if args.compact:
        print(json.dumps(out, separators=(",", ":")))
    else:
        print(json.dumps(out, indent=2))
    return 0
