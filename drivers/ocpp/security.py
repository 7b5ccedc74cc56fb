"""Listener defences: basic-auth parsing, failed-login rate limits, TLS contexts, certificate names."""

from __future__ import annotations

import base64
import binascii
import ssl
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from drivers.ocpp.config import CsmsConfig, SecurityProfile

# TLS 1.2 suites the OCPP security whitepaper (1.6) and 2.0.1 part 2 name: ECDHE-ECDSA AES-GCM for
# ECC certificates, the RSA AES-GCM pair for RSA certificates, plus ECDHE-RSA for forward secrecy with
# RSA certificates. TLS 1.3 suites are all AEAD and left at OpenSSL's defaults.
OCPP_TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
    )
)


def server_ssl_context(config: CsmsConfig) -> ssl.SSLContext | None:
    """None for profile 1 (plain ws); TLS >= 1.2 for 2; plus required client certificates for 3."""
    if config.security_profile is SecurityProfile.BASIC_AUTH:
        return None
    assert config.tls_cert_file is not None  # CsmsConfig checks both
    assert config.tls_key_file is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(OCPP_TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    if config.security_profile is SecurityProfile.MUTUAL_TLS:
        assert config.tls_ca_file is not None
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(config.tls_ca_file)
    return context


def peer_common_name(peercert: Any) -> str | None:
    """The subject CN of a verified peer certificate (`SSLObject.getpeercert()`), or None."""
    if not isinstance(peercert, dict):
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def basic_auth_password(header: str | None, identity: str) -> str | None:
    """The password from `Authorization: Basic ...` if its username is exactly `identity`, else None.

    Identities may contain ':' (2.0.1 identifierString), so the username is matched as a prefix
    rather than split at the first colon.
    """
    if header is None:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or len(encoded) > 512:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    prefix = identity + ":"
    if not decoded.startswith(prefix):
        return None
    return decoded[len(prefix) :]


@dataclass(slots=True)
class _Bucket:
    failures: deque[float]
    locked_until: float = 0.0


class LoginLimiter:
    """Failed logins per source address and per (address, identity), over a sliding window.

    Too many failures lock the key out for `lockout_s`: further attempts are refused before any
    password is checked, which also keeps a flood from burning CPU on scrypt. There is deliberately no
    lock on an identity alone: anyone on the LAN could then lock a real charger out.
    """

    def __init__(
        self,
        *,
        window_s: float,
        per_address: int,
        per_identity_address: int,
        lockout_s: float,
        max_keys: int = 4096,
    ) -> None:
        self._window_s = window_s
        self._limits = (per_address, per_identity_address)
        self._lockout_s = lockout_s
        self._max_keys = max_keys
        self._buckets: OrderedDict[tuple[str, str | None], _Bucket] = OrderedDict()

    def _keys(self, address: str, identity: str) -> tuple[tuple[str, str | None], tuple[str, str | None]]:
        return (address, None), (address, identity)

    def blocked(self, address: str, identity: str, now_s: float) -> bool:
        return any(
            (bucket := self._buckets.get(key)) is not None and bucket.locked_until > now_s
            for key in self._keys(address, identity)
        )

    def failure(self, address: str, identity: str, now_s: float) -> bool:
        """Record a failed login; True if this failure locked something out."""
        locked = False
        for key, limit in zip(self._keys(address, identity), self._limits, strict=True):
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(deque())
            self._buckets.move_to_end(key)
            bucket.failures.append(now_s)
            while bucket.failures and bucket.failures[0] <= now_s - self._window_s:
                bucket.failures.popleft()
            if len(bucket.failures) >= limit and bucket.locked_until <= now_s:
                bucket.locked_until = now_s + self._lockout_s
                bucket.failures.clear()
                locked = True
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return locked
