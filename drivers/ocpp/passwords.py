"""Charger passwords (HTTP basic auth, security profiles 1 and 2), stored only as scrypt hashes.

The hash is a self-describing string, `scrypt$<log2 n>$<r>$<p>$<salt b64>$<key b64>`, so the cost can
be raised later without breaking stored hashes. The OCPP 1.6 security whitepaper sets the password
length to 16-40 characters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string

MIN_PASSWORD_LENGTH = 16
MAX_PASSWORD_LENGTH = 40
_SCHEME = "scrypt"
_KEY_BYTES = 32
_SALT_BYTES = 16
# n = 2**14, r = 8: about 16 MiB and tens of milliseconds per check; only paid on a new login.
DEFAULT_LOG2_N = 14
DEFAULT_R = 8
DEFAULT_P = 1
# Printable ASCII without quotes, backslash, colon (basic auth splits on ':') and space.
_ALPHABET = "".join(c for c in string.ascii_letters + string.digits + "!#$%&()*+,-.;<=>?@[]^_{|}~")


class PasswordError(ValueError):
    """A password outside the rules, or a malformed stored hash."""


def check_password_rules(password: str) -> None:
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise PasswordError(
            f"password must be {MIN_PASSWORD_LENGTH}-{MAX_PASSWORD_LENGTH} characters, got {len(password)}"
        )
    if not password.isprintable() or ":" in password:
        raise PasswordError("password must be printable and must not contain ':'")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_password(
    password: str, *, log2_n: int = DEFAULT_LOG2_N, r: int = DEFAULT_R, p: int = DEFAULT_P
) -> str:
    """Hash a password that follows the rules; raises PasswordError otherwise."""
    check_password_rules(password)
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _derive(password, salt, log2_n, r, p)
    return f"{_SCHEME}${log2_n}${r}${p}${_b64(salt)}${_b64(key)}"


def _derive(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=128 * n * r * p + (1 << 20),
        dklen=_KEY_BYTES,
    )


def parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    """Split a stored hash into (log2 n, r, p, salt, key); raises PasswordError if malformed."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != _SCHEME:
        raise PasswordError("not a scrypt password hash (expected scrypt$n$r$p$salt$key)")
    try:
        log2_n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except ValueError as exc:
        raise PasswordError(f"malformed password hash: {exc}") from exc
    if not (1 <= log2_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16 and salt and len(key) == _KEY_BYTES):
        raise PasswordError("password hash parameters out of range")
    return log2_n, r, p, salt, key


def verify_password(password: str, stored: str) -> bool:
    """True if `password` matches `stored`. Constant-time compare; False for a malformed hash."""
    try:
        log2_n, r, p, salt, key = parse_hash(stored)
    except PasswordError:
        return False
    if len(password) > 4 * MAX_PASSWORD_LENGTH:
        return False  # hashing megabytes from a hostile header is not worth the CPU
    return hmac.compare_digest(_derive(password, salt, log2_n, r, p), key)


def generate_password(length: int = 24) -> str:
    """A random password that follows the rules (24 characters: about 150 bits)."""
    if not MIN_PASSWORD_LENGTH <= length <= MAX_PASSWORD_LENGTH:
        raise PasswordError(f"length must be {MIN_PASSWORD_LENGTH}-{MAX_PASSWORD_LENGTH}")
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))
