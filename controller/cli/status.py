"""`sitectl status`, `sitectl sessions`, `sitectl reload`: asking the running daemon.

They talk to the daemon over its local control socket (`[control] socket_path`, mode 0660), found
from `--socket`, else from `--config`, else the packaged default.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from controller.cli import SubParsers

DEFAULT_SOCKET = Path("/run/sitectl/control.sock")


def register(subparsers: SubParsers) -> None:
    status = subparsers.add_parser(
        "status",
        help="live status of the running daemon: fuses, lines, headroom, chargers",
        description="Print the running daemon's view of the site. --json prints the site snapshot "
        "(docs/snapshot.md), which `sitectl balance` accepts.",
    )
    socket_options(status)
    status.add_argument("--json", action="store_true", help="print the site snapshot as JSON")
    status.add_argument("--watch", type=float, metavar="S", help="refresh every S seconds until Ctrl-C")
    status.set_defaults(handler=_status)

    sessions = subparsers.add_parser(
        "sessions",
        help="charging sessions recorded by the daemon",
        description="Sessions running at some time since DATE (a date is local midnight), as JSON "
        "lines with their 15-minute periods, or CSV.",
    )
    socket_options(sessions)
    sessions.add_argument("--since", metavar="DATE", help="e.g. 2026-11-01 or 2026-11-01T06:00")
    sessions.add_argument("--csv", action="store_true", help="CSV, one row per session")
    sessions.set_defaults(handler=_sessions)

    reload = subparsers.add_parser(
        "reload",
        help="make the running daemon read its configuration again",
        description="The daemon checks its site file as at start; an invalid one is refused and the "
        "daemon keeps running on the old one. A valid one restarts it in place: chargers get their safe "
        "current for a few seconds and reconnect. `systemctl reload sitectl` does the same.",
    )
    socket_options(reload)
    reload.set_defaults(handler=_reload)


def socket_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--socket", type=Path, help=f"control socket (default: from --config, or {DEFAULT_SOCKET})"
    )
    parser.add_argument("--config", type=Path, help="site configuration, to find the control socket")


def socket_path(args: argparse.Namespace) -> Path:
    if args.socket is not None:
        return Path(args.socket)
    if args.config is not None:
        import tomllib

        with open(args.config, "rb") as f:
            data = tomllib.load(f)
        configured = data.get("control", {}).get("socket_path")
        if configured:
            return Path(configured)
    return DEFAULT_SOCKET


def ask(args: argparse.Namespace, method: str, params: Mapping[str, Any] | None = None) -> Any:
    import asyncio

    from controller.localapi.client import call

    return asyncio.run(call(socket_path(args), method, params))


def guard(args: argparse.Namespace, method: str, params: Mapping[str, Any] | None = None) -> tuple[int, Any]:
    import sys

    from controller.localapi.client import DaemonNotRunning, DaemonUnreachable, RemoteError

    try:
        return 0, ask(args, method, params)
    except (DaemonNotRunning, DaemonUnreachable) as exc:
        print(f"sitectl {method}: {exc}", file=sys.stderr)
        return 1, None
    except RemoteError as exc:
        print(f"sitectl {method}: the daemon answered {exc}", file=sys.stderr)
        return 1, None
    except (OSError, ValueError) as exc:
        print(f"sitectl {method}: {exc}", file=sys.stderr)
        return 2, None


def _status(args: argparse.Namespace) -> int:
    import json
    import time

    while True:
        code, status = guard(args, "status")
        if code:
            return code
        if args.json:
            print(json.dumps(status["snapshot"], indent=2))
        else:
            if args.watch:
                print("\x1b[2J\x1b[H", end="")
            print(render_status(status), flush=True)
        if not args.watch:
            return 0
        try:
            time.sleep(args.watch)
        except KeyboardInterrupt:
            return 0


def _sessions(args: argparse.Namespace) -> int:
    import json
    import sys

    from controller.sessions import format_csv, parse_since
    from controller.sessions.model import iso_utc, session_from_json

    params: dict[str, Any] = {}
    if args.since:
        try:
            params["since"] = iso_utc(parse_since(args.since))
        except ValueError as exc:
            print(f"sitectl sessions: {exc}", file=sys.stderr)
            return 2
    code, found = guard(args, "sessions", params)
    if code:
        return code
    if args.csv:
        sys.stdout.write(format_csv([session_from_json(s) for s in found]))
    else:
        for session in found:
            print(json.dumps(session, separators=(",", ":")))
    return 0


def _reload(args: argparse.Namespace) -> int:
    import sys

    from controller.localapi.client import RemoteError

    try:
        answer = ask(args, "reload")
    except RemoteError as exc:
        print(f"sitectl reload: refused: {exc.message}", file=sys.stderr)
        return 2 if exc.code == "invalid_config" else 1
    except Exception as exc:
        print(f"sitectl reload: {exc}", file=sys.stderr)
        return 1
    print(f"reloading: {len(answer['chargers'])} chargers, {answer['fuses']} fuses")
    return 0


# ------------------------------------------------------------------------------------ rendering


def _a(value: float | None) -> str:
    return "    -" if value is None else f"{value:5.1f}"


def render_status(status: Mapping[str, Any]) -> str:
    """The live table: fuses with per-line load, limit and headroom; chargers with their decision."""
    snapshot, allocation = status["snapshot"], status["allocation"]
    margin_a = float(snapshot["policy"].get("safety_margin_a", 2.0))
    lines = [
        f"site {status['site']['id']}  {snapshot['now']}  {snapshot['grid']['type']} "
        f"{snapshot['grid'].get('nominal_voltage_v', 230):g} V  cycle {status['cycle']['number']} "
        f"({status['cycle']['trigger']}, {status['cycle']['compute_ms']:.1f} ms)"
        + (f"  FAIL-SAFE: {allocation['failsafe']}" if allocation.get("failsafe") else "")
    ]
    for meter in snapshot.get("meters", []):
        cur = meter["currents_a"]
        age = meter.get("age_s")
        lines.append(
            f"meter on {meter['fuse']}: L1 {_a(cur.get('L1'))}  L2 {_a(cur.get('L2'))}  "
            f"L3 {_a(cur.get('L3'))} A, age {'-' if age is None else f'{age:.1f} s'}"
        )
    lines.append("")
    lines.append(f"{'fuse':<12} {'limit':>6}   {'L1':>5} {'L2':>5} {'L3':>5}   headroom L1/L2/L3")
    for fuse_id, load in allocation["fuses"].items():
        usable_a = float(load["limit_a"]) - margin_a
        predicted = [load["predicted_a"][line] for line in ("L1", "L2", "L3")]
        headroom = "/".join(f"{usable_a - p:.1f}" for p in predicted)
        per_line = " ".join(f"{p:5.1f}" for p in predicted)
        lines.append(f"{fuse_id:<12} {load['limit_a']:>6g}   {per_line}   {headroom}")
    lines.append("")
    lines.append(
        f"{'charger':<12} {'fuse':<8} {'state':<9} {'set A':>6} {'drawing L1/L2/L3':>18}  limited by"
    )
    decisions = allocation["chargers"]
    for charger in snapshot["chargers"]:
        decision = decisions.get(charger["id"], {})
        vehicle = charger.get("vehicle") or {}
        drawing = vehicle.get("drawing_a", {})
        draw = "/".join(
            "-" if drawing.get(line) is None else f"{drawing[line]:.1f}" for line in ("L1", "L2", "L3")
        )
        online = "" if charger.get("online", True) else " (offline)"
        lines.append(
            f"{charger['id']:<12} {charger['fuse']:<8} {decision.get('state', '-'):<9} "
            f"{decision.get('current_a', 0.0):>6.1f} {draw:>18}  {decision.get('limited_by') or ''}{online}"
        )
    return "\n".join(lines)
