"""Uplink settings: a frozen value the daemon builds from site.toml's `[mqtt]` section."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal
from urllib.parse import urlsplit

MqttVersion = Literal["auto", "5", "3.1.1"]


class UplinkConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


@dataclass(frozen=True)
class UplinkConfig:
    """Everything the uplink needs; times in seconds, sizes in rows or bytes.

    `fuse_ratings_a` (fuse id → rating) bounds site-limit commands: a command may lower a fuse's
    limit, never raise it above the rating. `charger_ids`, when given, are the only charging points
    commands may address.
    """

    url: str
    site_id: str
    client_id: str
    prefix: str = "garage/v1"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = None
    protocol: MqttVersion = "auto"
    keepalive_s: int = 30
    session_expiry_s: int = 7 * 86400
    connect_timeout_s: float = 10.0
    publish_timeout_s: float = 30.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 120.0
    # Outbox rows published but not yet acknowledged by the backend; also bounds what the broker
    # must queue for a slow backend, so a backlog never overflows the broker's queue.
    window_rows: int = 200
    ack_timeout_s: float = 30.0
    ack_flush_s: float = 0.05
    outbox_poll_s: float = 1.0
    backlog_alarm_rows: int = 5000
    backlog_check_s: float = 5.0
    prune_acked_after_s: float = 30 * 86400
    prune_every_s: float = 3600.0
    site_telemetry_every_s: float = 10.0
    charger_telemetry_every_s: float = 60.0
    charger_telemetry_min_gap_s: float = 2.0
    site_telemetry_expiry_s: int = 30
    charger_telemetry_expiry_s: int = 120
    fuse_ratings_a: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    charger_ids: frozenset[str] = frozenset()
    command_timeout_s: float = 30.0
    max_command_bytes: int = 1_000_000
    command_queue: int = 100

    def __post_init__(self) -> None:
        for name in ("site_id", "client_id"):
            value = getattr(self, name)
            if not value or any(c in value for c in "/+#") or not value.isprintable():
                raise UplinkConfigError(f"mqtt {name} {value!r}: must be non-empty without '/', '+' or '#'")
        if not self.prefix or any(c in self.prefix for c in "+#") or self.prefix.endswith("/"):
            raise UplinkConfigError(f"mqtt prefix {self.prefix!r}: no wildcards, no trailing '/'")
        if self.protocol not in ("auto", "5", "3.1.1"):
            raise UplinkConfigError(f"mqtt protocol {self.protocol!r}: use auto, 5 or 3.1.1")
        if (self.cert_file is None) != (self.key_file is None):
            raise UplinkConfigError("mqtt cert_file and key_file go together")
        if self.window_rows < 1 or self.backlog_alarm_rows < 1:
            raise UplinkConfigError("mqtt window_rows and backlog_alarm_rows must be at least 1")
        for fuse, rating in self.fuse_ratings_a.items():
            if not rating > 0:
                raise UplinkConfigError(f"fuse {fuse!r}: rating {rating!r} A must be positive")
        object.__setattr__(self, "fuse_ratings_a", MappingProxyType(dict(self.fuse_ratings_a)))
        self.broker()

    def broker(self) -> BrokerAddress:
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise UplinkConfigError(f"mqtt url {self.url!r}: scheme must be mqtt:// or mqtts://")
        if not parts.hostname:
            raise UplinkConfigError(f"mqtt url {self.url!r}: no host")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise UplinkConfigError(f"mqtt url {self.url!r}: {exc}") from exc
        return BrokerAddress(parts.hostname, port, tls)

    def tls_context(self) -> ssl.SSLContext | None:
        """Server verification (system CAs or `ca_file`) with hostname check; client cert if given."""
        if not self.broker().tls:
            return None
        try:
            context = ssl.create_default_context(cafile=None if self.ca_file is None else str(self.ca_file))
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if self.cert_file is not None and self.key_file is not None:
                context.load_cert_chain(str(self.cert_file), str(self.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise UplinkConfigError(f"mqtt TLS files: {exc}") from exc
        return context
