"""`sitectl secret`: charger passwords for OCPP basic auth (security profiles 1 and 2).

`sitectl secret generate` prints a random valid password; `sitectl secret hash` reads one password on
standard input and prints the hash to put in site.toml (`password_hash`). Only the hash is stored.
"""

from __future__ import annotations

import argparse
import sys

from controller.cli import SubParsers


def register(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("secret", help="charger passwords: generate, hash")
    commands = parser.add_subparsers(dest="secret_command", metavar="SUBCOMMAND", required=True)
    hash_parser = commands.add_parser(
        "hash", help="read a charger password (16-40 characters) on standard input, print its hash"
    )
    hash_parser.set_defaults(handler=_hash)
    generate = commands.add_parser("generate", help="print a random valid charger password")
    generate.add_argument("--length", type=int, default=24, help="16-40 characters (default 24)")
    generate.set_defaults(handler=_generate)


def _hash(args: argparse.Namespace) -> int:
    from drivers.ocpp.passwords import PasswordError, hash_password

    # One line; the terminal's newline is not part of the password.
    password = sys.stdin.readline().rstrip("\r\n")
    try:
        print(hash_password(password))
    except PasswordError as exc:
        print(f"sitectl secret hash: {exc}", file=sys.stderr)
        return 2
    return 0


def _generate(args: argparse.Namespace) -> int:
    from drivers.ocpp.passwords import PasswordError, generate_password

    try:
        print(generate_password(args.length))
    except PasswordError as exc:
        print(f"sitectl secret generate: {exc}", file=sys.stderr)
        return 2
    return 0
