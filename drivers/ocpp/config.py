"""Configuration of the local CSMS: one listener and the chargers allowed on it.

Frozen values only; the daemon maps its site configuration onto them. Durations in seconds of the
injected clock (simulated seconds when the clock is accelerated).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

SUBPROTOCOL_16 = "ocpp1.6"
SUBPROTOCOL_201 = "ocpp2.0.1"
SUBPROTOCOLS: tuple[str, str] = (SUBPROTOCOL_201, SUBPROTOCOL_16)


class SecurityProfile(enum.IntEnum):
    """OCPP security profiles. One per listener."""

    BASIC_AUTH = 1  # plain ws, HTTP basic auth: only on a closed LAN
    TLS_BASIC_AUTH = 2  # wss (TLS >= 1.2, server certificate) + HTTP basic auth
    MUTUAL_TLS = 3  # wss with client certificates; the certificate's CN is the charger's identity


@dataclass(frozen=True, slots=True)
class Quirks:
    """Per-charger deviations from the specification that real chargers need.

    `stack_level_zero_only`: the charger rejects stack levels above 0; the lease then goes on the
    connector (TxDefaultProfile) or the transaction (TxProfile) at stack level 0, which overrides the
    safe profile on connector 0 / the station without replacing it.
    `limit_in_watts`: the charger only takes W; amps are converted with nominal voltage x phases.
    `relaxed_actions`: actions whose payloads are not schema-validated (requests from the charger and
    its responses to ours), for firmware that sends out-of-schema fields.
    `phase_to_use`: OCPP 2.0.1 phaseToUse for single-phase charging, where the charger supports it.
    """

    stack_level_zero_only: bool = False
    limit_in_watts: bool = False
    nominal_voltage_v: float = 230.0
    relaxed_actions: tuple[str, ...] = ()
    phase_to_use: int | None = None


@dataclass(frozen=True, slots=True)
class ChargePointConfig:
    """One charger (OCPP identity) and its connectors (1.6) or EVSEs (2.0.1).

    `connectors` maps the OCPP connector id (1.6) or EVSE id (2.0.1) to the product's charger id; each
    entry is a separately controlled charging point. `password_hash` comes from `sitectl secret hash`;
    None is only valid under security profile 3 (client certificates).
    """

    identity: str
    connectors: Mapping[int, str]
    password_hash: str | None = None
    safe_current_a: float = 6.0
    max_current_a: float = 32.0
    phases: int = 3
    quirks: Quirks = field(default_factory=Quirks)

    def __post_init__(self) -> None:
        if not self.identity or len(self.identity) > 48 or "/" in self.identity:
            raise ValueError(f"invalid OCPP identity {self.identity!r}: 1-48 characters, no '/'")
        if not self.connectors:
            raise ValueError(f"charger {self.identity}: at least one connector is required")
        if any(c <= 0 for c in self.connectors):
            raise ValueError(f"charger {self.identity}: connector/EVSE ids start at 1")
        if self.phases not in (1, 2, 3):
            raise ValueError(f"charger {self.identity}: phases must be 1, 2 or 3")
        if not 0 <= self.safe_current_a <= self.max_current_a:
            raise ValueError(f"charger {self.identity}: need 0 <= safe_current_a <= max_current_a")
        object.__setattr__(self, "connectors", MappingProxyType(dict(self.connectors)))


MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class LoginConfig:
    """Full password checks (scrypt) at login: see drivers/ocpp/logins.py."""

    workers: int | None = None  # None: pool_size(available CPUs, memory budget, production cost)
    memory_budget_bytes: int = 64 * MIB
    max_waiting: int = 64  # full checks queued or running; beyond it a login is refused as busy
    # A login expected to wait longer is refused as busy (the CSMS also keeps it under half the
    # handshake timeout: a longer wait would time out anyway).
    max_wait_s: float = 5.0
    cache_entries: int = 4096

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.max_waiting < 1 or self.max_wait_s <= 0 or self.cache_entries < 1:
            raise ValueError("max_waiting, max_wait_s and cache_entries must be positive")


@dataclass(frozen=True, slots=True)
class OnboardingConfig:
    """Chargers brought up at once after admission: see drivers/ocpp/onboarding.py."""

    max_concurrent: int = 32
    # The CSMS keeps it under a quarter of the handshake timeout: the login may have waited too.
    max_wait_s: float = 4.0
    # A slot is released at the latest this long after admission: a 1.6 charger that only lost its
    # link sends no boot and is provisioned after `provision_unbooted_after_s`, idle meanwhile.
    hold_s: float = 1.0

    def __post_init__(self) -> None:
        if self.max_concurrent < 1 or self.max_wait_s <= 0 or self.hold_s <= 0:
            raise ValueError("max_concurrent, max_wait_s and hold_s must be positive")


@dataclass(frozen=True, slots=True)
class CsmsConfig:
    """One listener: `ws[s]://host:port/ocpp/<identity>`.

    `default_subprotocol` is the version assumed for a charger that offers no subprotocol (None:
    refuse such chargers). `lease_s` is the default lease of a dynamic limit. Handshake, message size
    and rate limits are the listener's defences against a misbehaving or hostile LAN peer.
    """

    host: str = "0.0.0.0"
    port: int = 9000
    security_profile: SecurityProfile = SecurityProfile.BASIC_AUTH
    adoption: bool = False
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_ca_file: str | None = None
    default_subprotocol: str | None = SUBPROTOCOL_16
    subprotocols: tuple[str, ...] = SUBPROTOCOLS
    max_message_bytes: int = 65536
    handshake_timeout_s: float = 10.0
    call_timeout_s: float = 10.0
    # How long a transaction message may wait for the ledger before the charger is told to send it
    # again; below the 30 s or so a charger waits for an answer.
    record_timeout_s: float = 20.0
    lease_s: float = 120.0
    heartbeat_interval_s: int = 300
    boot_retry_interval_s: int = 10
    # A charger that reconnects and sends no BootNotification within this long (it only lost its
    # link) is provisioned anyway; until then it cannot be commanded, so this is part of how long a
    # restarted daemon takes to regain its chargers. A booting charger sends its boot at once.
    provision_unbooted_after_s: float = 3.0
    meter_value_sample_interval_s: int = 10
    clock_aligned_data_interval_s: int = 900
    ping_interval_s: float | None = 30.0
    auth_window_s: float = 60.0
    auth_failures_per_address: int = 10
    auth_failures_per_identity_address: int = 3
    auth_lockout_s: float = 60.0
    max_pending: int = 32
    max_connections: int = 1024
    login: LoginConfig = field(default_factory=LoginConfig)
    onboarding: OnboardingConfig = field(default_factory=OnboardingConfig)

    def __post_init__(self) -> None:
        unknown = [p for p in self.subprotocols if p not in SUBPROTOCOLS]
        if unknown or not self.subprotocols:
            raise ValueError(f"subprotocols must be a non-empty subset of {SUBPROTOCOLS}, got {unknown}")
        if self.default_subprotocol is not None and self.default_subprotocol not in self.subprotocols:
            raise ValueError(f"default_subprotocol {self.default_subprotocol!r} is not served")
        if self.security_profile >= SecurityProfile.TLS_BASIC_AUTH and not (
            self.tls_cert_file and self.tls_key_file
        ):
            raise ValueError("security profiles 2 and 3 need tls_cert_file and tls_key_file")
        if self.security_profile is SecurityProfile.MUTUAL_TLS and not self.tls_ca_file:
            raise ValueError("security profile 3 needs tls_ca_file (the CA of the chargers' certificates)")
        if self.max_message_bytes < 1024:
            raise ValueError("max_message_bytes below 1024 would refuse ordinary OCPP messages")
        if self.lease_s <= 0 or self.call_timeout_s <= 0 or self.handshake_timeout_s <= 0:
            raise ValueError("lease_s, call_timeout_s and handshake_timeout_s must be positive")
