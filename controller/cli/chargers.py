"""`sitectl chargers pending` and `sitectl chargers adopt`: taking a new charger into the site.

With `[ocpp] adoption = true` a charger that connects with an identity nobody configured waits as
pending (Boot answered Pending, nothing else accepted). `pending` lists them; `adopt` writes the
charger into the site file - where it hangs in the fuse tree, its lines, its currents, a fresh
password - after the whole file passed every check the daemon applies, and then has the daemon
reload, so that the charger reconnects as a configured one. A file that would not pass is left
unchanged and nothing is reloaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from controller.cli import SubParsers
from controller.cli.status import guard, socket_options


def register(subparsers: SubParsers) -> None:
    chargers = subparsers.add_parser("chargers", help="chargers waiting for adoption; adopting one")
    commands = chargers.add_subparsers(dest="chargers_command", metavar="COMMAND", required=True)
    pending = commands.add_parser("pending", help="chargers that connected but are not configured")
    socket_options(pending)
    pending.set_defaults(handler=_pending)

    adopt = commands.add_parser(
        "adopt",
        help="add a charger to the site file and have the daemon take it in",
        description="Append a [[chargers]] table for IDENTITY to the site file, after checking the "
        "result as the daemon would (fuse tree, lines for the grid type, fail-safe budget), then ask "
        "the running daemon to reload. Under security profiles 1 and 2 a password is generated (or "
        "read from standard input with --password-stdin) and only its hash is written: set it on the "
        "charger as its OCPP basic-auth password.",
    )
    adopt.add_argument(
        "identity",
        metavar="IDENTITY",
        help="the OCPP identity the charger connects with (with --modbus: its name)",
    )
    adopt.add_argument("--config", type=Path, required=True, metavar="FILE", help="site file to change")
    adopt.add_argument("--fuse", required=True, help="id of the fuse the charger hangs on")
    adopt.add_argument(
        "--lines",
        required=True,
        type=_lines,
        help="grid lines on the charger's terminals 1,2,3 in order, e.g. L1,L2,L3 or L2,L3",
    )
    adopt.add_argument("--max-a", type=float, required=True, help="highest current it may be given")
    adopt.add_argument("--safe-a", type=float, required=True, help="its fall-back current (0 or ≥ min)")
    adopt.add_argument("--min-a", type=float, default=None, help="lowest charging current (default 6)")
    adopt.add_argument("--space", default=None, help="parking space label, e.g. P-017")
    adopt.add_argument("--id", dest="charger_id", default=None, help="charging point id (default IDENTITY)")
    adopt.add_argument("--connector", type=int, default=None, help="OCPP connector / EVSE id (default 1)")
    adopt.add_argument(
        "--password-stdin", action="store_true", help="read the charger's password on standard input"
    )
    adopt.add_argument(
        "--modbus",
        metavar="ENDPOINT",
        help="a Modbus charger at ENDPOINT (tcp://host:port or rtu:///dev/ttyUSB0?baudrate=9600); "
        "IDENTITY is then its name; needs --template",
    )
    adopt.add_argument("--template", help="its device template (config/devices/<name>.toml)")
    adopt.add_argument("--unit", type=int, help="its Modbus unit id (default: the template's)")
    adopt.add_argument(
        "--accept-no-failsafe",
        action="store_true",
        help="drive a model without a fail-safe (counted at its maximum in the fail-safe budget)",
    )
    adopt.add_argument("--no-reload", action="store_true", help="only change the file")
    adopt.add_argument("--socket", type=Path, help="control socket (default: from the site file)")
    adopt.set_defaults(handler=_adopt)


def _lines(text: str) -> list[str]:
    lines = [part.strip().upper() for part in text.split(",") if part.strip()]
    if not lines or any(line not in ("L1", "L2", "L3") for line in lines):
        raise argparse.ArgumentTypeError(f"expected lines such as L1,L2,L3, got {text!r}")
    return lines


def _pending(args: argparse.Namespace) -> int:
    code, found = guard(args, "pending")
    if code:
        return code
    if not found:
        print("no pending chargers")
    for p in found:
        print(
            f"{p['identity']:<24} {p['address']:<22} {p.get('vendor') or '-'} {p.get('model') or '-'} "
            f"first seen {p['first_seen_utc']}"
        )
    return 0


def _adopt(args: argparse.Namespace) -> int:
    import os
    import sys
    from datetime import UTC, datetime

    from controller.settings import ConfigError, load_settings
    from controller.settings.edit import check_text, replace_file, with_table
    from controller.site_checks import site_checks
    from drivers.ocpp.passwords import PasswordError, generate_password, hash_password

    def fail(message: str, code: int = 2) -> int:
        print(f"sitectl chargers adopt: {message}", file=sys.stderr)
        return code

    env = dict(os.environ)
    path: Path = args.config
    try:
        text = path.read_text(encoding="utf-8")
        now = load_settings(path, env)
    except OSError as exc:
        return fail(f"cannot read {path}: {exc.strerror or exc}")
    except ConfigError as exc:
        return fail(f"the site file is invalid as it is; fix it first\n{exc}")
    charger_id = args.charger_id or args.identity
    connector = args.connector or 1
    for existing in now.chargers:
        if existing.id == charger_id:
            return fail(f"charger {charger_id!r} is already configured")
        if (existing.ocpp_identity or existing.id) == args.identity and existing.connector == connector:
            return fail(f"identity {args.identity!r} connector {connector} is already {existing.id!r}")

    if (args.modbus is None) != (args.template is None):
        return fail("a Modbus charger needs both --modbus ENDPOINT and --template NAME")
    pending = _pending_identities(args, path)
    entry: dict[str, Any] = {
        "id": charger_id,
        "protocol": "ocpp" if args.modbus is None else "modbus",
        "fuse": args.fuse,
        "lines": args.lines,
        "max_a": args.max_a,
        "safe_current_a": args.safe_a,
    }
    if args.min_a is not None:
        entry["min_a"] = args.min_a
    if charger_id != args.identity and args.modbus is None:
        entry["ocpp_identity"] = args.identity
    if args.connector is not None:
        entry["connector"] = args.connector
    if args.space is not None:
        entry["space"] = args.space

    password: str | None = None
    profile = now.ocpp.security_profile if now.ocpp is not None else 1
    if args.modbus is not None:
        modbus: dict[str, Any] = {"endpoint": args.modbus, "register_map": args.template}
        if args.unit is not None:
            modbus["unit_id"] = args.unit
        if args.accept_no_failsafe:
            modbus["accept_no_failsafe"] = True
        entry["modbus"] = modbus
    elif profile in (1, 2):
        try:
            password = sys.stdin.readline().rstrip("\r\n") if args.password_stdin else generate_password()
            entry["password_hash"] = hash_password(password)
        except PasswordError as exc:
            return fail(str(exc))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    changed = with_table(text, "chargers", entry, comment=f"adopted with sitectl {stamp}")
    try:
        check_text(changed, path, env, failsafe_budget_check=site_checks)
    except ConfigError as exc:
        return fail(f"not adopted, {path} is unchanged: the site would be invalid\n{exc}")
    try:
        backup = replace_file(path, changed)
    except OSError as exc:
        return fail(f"cannot write {path}: {exc.strerror or exc}", 1)

    lines = " ".join(args.lines)
    print(f"{charger_id}: added to {path} (previous version: {backup.name})")
    print(f"  fuse {args.fuse}, lines {lines}, up to {args.max_a:g} A, safe current {args.safe_a:g} A")
    if password is not None and not args.password_stdin:
        print(f"  password (set it on the charger; only its hash is stored): {password}")
    if args.modbus is not None:
        print(f"  Modbus {args.modbus}, template {args.template}")
    elif pending is not None and args.identity not in pending:
        print(f"  note: {args.identity} is not waiting as pending; it is taken in when it connects")
    if args.no_reload:
        print("  not reloaded (--no-reload): run `sitectl reload` to take it in")
        return 0
    if pending is None:
        print("  the daemon is not running: it takes the charger in at its next start")
        return 0
    return _reload_with(args, path, charger_id)


def _pending_identities(args: argparse.Namespace, path: Path) -> set[str] | None:
    """Identities waiting as pending; None when the daemon cannot be asked."""
    from controller.cli.status import ask
    from controller.localapi.client import DaemonUnreachable, RemoteError

    try:
        found = ask(_socket_args(args, path), "pending")
    except (DaemonUnreachable, RemoteError, OSError):
        return None
    return {p["identity"] for p in found}


def _reload_with(args: argparse.Namespace, path: Path, charger_id: str) -> int:
    import sys

    code, answer = guard(_socket_args(args, path), "reload")
    if code:
        print("  the file is changed; run `sitectl reload` once the daemon answers", file=sys.stderr)
        return code
    if charger_id not in answer["chargers"]:
        # The daemon runs on another file (or an environment override hides this one).
        print(
            f"  warning: the daemon reloaded without {charger_id}: is it running on {path}?", file=sys.stderr
        )
        return 1
    print(f"  daemon reloading: {len(answer['chargers'])} chargers configured")
    return 0


def _socket_args(args: argparse.Namespace, path: Path) -> argparse.Namespace:
    return argparse.Namespace(socket=args.socket, config=path)
