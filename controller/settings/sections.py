"""The sections of `site.toml` (DESIGN.md §7.5), one pydantic model each.

Every model forbids unknown keys, so a misspelt key is an error that names it instead of a silent
default. Field docstrings are the documentation (`config/site.example.toml` repeats them for the
electrician). Units are in the names; amps are per phase.
"""

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StringConstraints, field_validator

from drivers.contracts import Line

DEFAULT_MIN_CURRENT_A = 6.0
"""IEC 61851-1: no car charges below 6 A, so no configuration may ask for less."""

SAFE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$"
TOPIC_LEVEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
OCPP_IDENTITY_PATTERN = r"^[A-Za-z0-9._~*@!$&'()+,;=-]{1,48}$"
MQTT_PREFIX_PATTERN = r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_.-]+)*$"
NO_WHITESPACE_PATTERN = r"^\S+$"

PATTERN_HELP = {
    SAFE_ID_PATTERN: "use 1-48 letters, digits, '.', '_' or '-', starting with a letter or digit",
    TOPIC_LEVEL_PATTERN: "use 1-64 letters, digits, '_' or '-', starting with a letter or digit "
    "(it is an MQTT topic level)",
    OCPP_IDENTITY_PATTERN: "use 1-48 characters that are allowed unescaped in a URL path, without ':' or '/'",
    MQTT_PREFIX_PATTERN: "use topic levels of letters, digits, '.', '_' or '-' separated by single '/', "
    "no wildcards, no leading or trailing '/'",
    NO_WHITESPACE_PATTERN: "must not be empty or contain whitespace",
}
"""What each pattern means, for error messages people can act on."""

SafeId = Annotated[str, StringConstraints(pattern=SAFE_ID_PATTERN)]
"""Ids that end up in MQTT payloads, log lines, `limited_by` labels and file names."""

TopicLevel = Annotated[str, StringConstraints(pattern=TOPIC_LEVEL_PATTERN)]
"""One MQTT topic level: no '/', no wildcards '+' '#', no leading '$' (reserved by brokers)."""

OcppIdentity = Annotated[str, StringConstraints(pattern=OCPP_IDENTITY_PATTERN)]
"""OCPP charge point identity: at most 48 characters that may stand unescaped in a URL path
segment, without ':' (it is the basic-auth user name under security profiles 1 and 2)."""

NonEmpty = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]


def _quirk_value(value: object) -> bool | int | float | str:
    if isinstance(value, bool | int | float | str):
        return value
    raise ValueError("a quirk value is true/false, a number or a string")


QuirkValue = Annotated[bool | int | float | str, PlainValidator(_quirk_value)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class SiteSection(Section):
    """[site]: the site's identity."""

    id: TopicLevel
    """Site identifier, the `<site>` level of every MQTT topic: letters, digits, '-' and '_'."""

    timezone: str = "Europe/Oslo"
    """IANA time zone of the site: the meter's clock and local billing periods. Records are UTC."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as 'Europe/Oslo')") from None
        return value


class GridSection(Section):
    """[grid]: the low-voltage grid the installation is on."""

    type: Literal["IT", "TN"]
    """IT: 3-wire 230 V between lines (a single-phase charger sits between two lines).
    TN: 400/230 V with neutral (a single-phase charger sits between one line and neutral)."""

    nominal_voltage_v: Annotated[float, Field(ge=100, le=500)] = 230.0
    """Voltage a single-phase charger sees: line-to-line on IT, line-to-neutral on TN."""


class PolicySection(Section):
    """[policy]: how current is shared out and how fast the controller reacts (DESIGN.md §4, §5)."""

    safety_margin_a: Annotated[float, Field(ge=0)] = 2.0
    """Headroom kept below every fuse rating on every line."""

    min_current_a: Annotated[float, Field(ge=DEFAULT_MIN_CURRENT_A, le=80)] = DEFAULT_MIN_CURRENT_A
    """Lowest setpoint a charging car gets; also the default `min_a` of every charger."""

    rotation_period_s: Annotated[float, Field(gt=0)] = 900.0
    """When not everyone fits: longest time a waiting car waits before paused cars rotate."""

    deadband_a: Annotated[float, Field(ge=0)] = 1.0
    """Setpoint changes smaller than this are not sent (decreases for safety always are)."""

    max_starts_per_hour: Annotated[int, Field(ge=1)] = 4
    """Most pause→charge transitions per car per hour (relay and car wear)."""

    lease_s: Annotated[float, Field(gt=0)] = 60.0
    """How long a dynamic setpoint holds on a charger without a refresh; after that the charger
    falls back to its safe current on its own (this bounds how long a dead daemon matters)."""

    settle_s: Annotated[float, Field(ge=0)] = 5.0
    """Wait after acknowledged decreases before sending increases: a car follows a new limit within
    5 s (IEC 61851-1). Increases also go out in waves 10 s apart (docs/daemon.md, pacing)."""

    meter_stale_intervals: Annotated[int, Field(ge=1)] = 3
    """A meter silent for this many expected full-list intervals is stale: chargers go to safe current."""


class MeterSection(Section):
    """[meter]: the AMS meter on the HAN port. Absent: no meter, chargers run at their safe current."""

    fuse: SafeId
    """Id of the fuse whose load the meter measures (everything below it)."""

    port: NonEmpty
    """Serial device (/dev/ttyUSB0), pty path, or pyserial URL such as socket://127.0.0.1:7000."""

    vendor: Literal["auto", "aidon", "kaifa", "kamstrup", "landis_gyr"] = "auto"
    """Meter make; `auto` detects it from the frames."""

    ct_ratio: Annotated[float, Field(gt=0)] = 1.0
    """Current-transformer ratio applied to the meter's currents and powers (1 for direct meters)."""

    full_list_interval_s: Annotated[float, Field(gt=0)] = 10.0
    """Expected interval between lists with per-line currents (10 s for all Norwegian AMS meters)."""


class FuseSection(Section):
    """[[fuses]]: one node of the fuse tree (main fuse, board, final circuit)."""

    id: SafeId
    """Fuse id, unique in the site: used in `limited_by` (`fuse:<id>:<line>`) and status output."""

    parent: SafeId | None = None
    """Id of the fuse upstream; absent for the one root (the main fuse)."""

    limit_a: Annotated[float, Field(gt=0)]
    """Rating of the fuse, per line."""

    base_load_a: Annotated[float, Field(ge=0)] = 0.0
    """Worst-case non-EV load on each line of this fuse when no meter measures it."""


class OcppSection(Section):
    """[ocpp]: the local OCPP server. Absent: no OCPP listener (a Modbus-only site)."""

    listen: NonEmpty = "0.0.0.0:9000"
    """`host:port` of the OCPP websocket listener (`[::]:9000` for IPv6); chargers connect to
    ws[s]://<box>:<port>/ocpp/<identity>."""

    security_profile: Annotated[int, Field(ge=1, le=3)] = 1
    """OCPP security profile: 1 basic auth over ws:// (closed LAN only), 2 TLS + basic auth,
    3 mutual TLS (client certificates)."""

    adoption: bool = False
    """true: unknown chargers that connect wait as *pending* until adopted with `sitectl`."""

    cert_file: Path | None = None
    """Server certificate chain (PEM), profiles 2 and 3."""

    key_file: Path | None = None
    """Private key of the server certificate (PEM), profiles 2 and 3."""

    ca_file: Path | None = None
    """CA certificates (PEM) that sign charger client certificates, profile 3."""

    default_subprotocol: Literal["ocpp1.6", "ocpp2.0.1"] = "ocpp1.6"
    """Chosen when a charger offers both OCPP 1.6J and 2.0.1."""

    heartbeat_interval_s: Annotated[int, Field(ge=10, le=86400)] = 300
    """Heartbeat interval given to chargers in the BootNotification response."""

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        _split_host_port(value)
        return value

    @property
    def host(self) -> str:
        return _split_host_port(self.listen)[0]

    @property
    def port(self) -> int:
        return _split_host_port(self.listen)[1]


def _split_host_port(value: str) -> tuple[str, int]:
    match = re.fullmatch(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]\s]+)):(?P<port>\d{1,5})", value)
    if match is None:
        raise ValueError(f"expected 'host:port' or '[v6-address]:port', got {value!r}")
    port = int(match["port"])
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1..65535")
    return match["v6"] or match["host"], port


class ModbusSection(Section):
    """[chargers.modbus]: how to reach a Modbus charger."""

    endpoint: NonEmpty
    """Where the charger's Modbus server is: `tcp://host:port` (Modbus TCP) or
    `rtu:///dev/ttyUSB1?baudrate=9600` (RS-485)."""

    unit_id: Annotated[int, Field(ge=0, le=255)] | None = None
    """Modbus unit (slave) id; default: the template's (RTU: 1-247; Modbus TCP devices may use 255)."""

    register_map: NonEmpty
    """Name of the device template describing this charger model: a file `<name>.toml` in
    `[modbus] devices_dir` or among the shipped templates (config/devices/)."""

    accept_no_failsafe: bool = False
    """true: drive a charger whose template has no fail-safe (it keeps its last setpoint for ever
    without the controller); it is counted at its maximum in the fail-safe budget."""

    @field_validator("endpoint")
    @classmethod
    def _scheme(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme == "tcp" and parts.hostname:
            return value
        if parts.scheme == "rtu" and parts.path:
            return value
        raise ValueError(f"expected tcp://host:port or rtu:///dev/<device>, got {value!r}")


class ModbusDefaultsSection(Section):
    """[modbus]: the Modbus master's settings for every bus."""

    devices_dir: Path | None = None
    """A directory of device templates (`<name>.toml`) besides the shipped ones; a template here
    takes the place of a shipped one of the same name."""

    poll_interval_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    """How often each Modbus charger is read."""

    timeout_s: Annotated[float, Field(gt=0, le=10)] = 1.0
    """How long one request waits for its answer before the device counts as not answering."""

    stale_after_polls: Annotated[int, Field(ge=1, le=20)] = 3
    """Failed polls in a row after which a charger is reported offline (budgeted at its maximum)."""

    frame_gap_s: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Extra silence between two requests on a bus, beyond the 3.5 characters Modbus RTU keeps,
    for devices (or RS-485 adapters) that need longer to turn the line around."""


class ChargerSection(Section):
    """[[chargers]]: one charging point (one connector)."""

    id: SafeId
    """Charging point id, unique in the site (also the OCPP identity unless `ocpp_identity` is set)."""

    protocol: Literal["ocpp", "modbus"]
    """How the controller drives the charger."""

    fuse: SafeId
    """Id of the fuse the charger hangs on."""

    lines: Annotated[tuple[Line, ...], Field(min_length=1, max_length=3)]
    """Grid lines wired to the charger's terminals 1, 2, 3 in order (phase rotation). TN: one line
    (single-phase) or three; IT: two lines (single-phase) or three."""

    phases: Literal[1, 3] | None = None
    """Number of phases the charger delivers; derived from `lines` when absent, checked when given."""

    min_a: Annotated[float, Field(ge=DEFAULT_MIN_CURRENT_A)] = DEFAULT_MIN_CURRENT_A
    """Lowest current this charger is set to when charging (default: policy.min_current_a)."""

    max_a: Annotated[float, Field(gt=0, le=80)]
    """Highest current this charger may be given (its rating or its circuit's, whichever is less)."""

    safe_current_a: Annotated[float, Field(ge=0)]
    """Current the charger falls back to on its own without the controller: 0 (paused) or
    between min_a and max_a. All safe currents together must fit the fuses."""

    password_hash: Annotated[str, StringConstraints(pattern=NO_WHITESPACE_PATTERN)] | None = None
    """Hash of the charger's basic-auth password, from `sitectl secret hash` (OCPP profiles 1, 2)."""

    space: NonEmpty | None = None
    """Parking space label, for people."""

    ocpp_identity: OcppIdentity | None = None
    """Identity the charger connects with, when it differs from `id` (two connectors of one charger
    share an identity)."""

    connector: Annotated[int, Field(ge=1)] = 1
    """OCPP connector (EVSE) id this charging point is on."""

    quirks: dict[str, QuirkValue] = Field(default_factory=dict)
    """Workarounds for a charger model's deviations from the protocol, interpreted by its driver."""

    modbus: ModbusSection | None = None
    """Modbus connection; required for, and only for, protocol = "modbus"."""

    @property
    def identity(self) -> str:
        """The OCPP identity the charger connects with."""
        return self.ocpp_identity or self.id


class MqttSection(Section):
    """[mqtt]: the uplink to the backend. Absent: no uplink, sessions wait in the outbox."""

    url: NonEmpty
    """Broker: mqtt://host[:1883] or mqtts://host[:8883] (TLS)."""

    prefix: Annotated[str, StringConstraints(pattern=MQTT_PREFIX_PATTERN)] = "garage/v1"
    """Topic prefix; topics are `<prefix>/<site.id>/...`."""

    ca_file: Path | None = None
    """CA certificates (PEM) to verify the broker; absent: the system's trust store."""

    cert_file: Path | None = None
    """Client certificate (PEM) for mutual TLS; needs `key_file`."""

    key_file: Path | None = None
    """Private key of the client certificate (PEM)."""

    client_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    """MQTT client id; default `sitectl-<site.id>`."""

    @field_validator("url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"expected mqtt://host[:port] or mqtts://host[:port], got {value!r}")
        try:
            parts.port  # noqa: B018 - urlsplit validates the port lazily
        except ValueError as exc:
            raise ValueError(f"bad port in {value!r}: {exc}") from None
        return value

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def host(self) -> str:
        host = urlsplit(self.url).hostname
        assert host is not None  # checked by the validator
        return host

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)


class AuthorizationSection(Section):
    """[authorization]: who may charge when a tag is on no list the box holds."""

    accept_unknown_tags: bool = False
    """true: a tag that is neither on the local authorization list (from the backend) nor in the
    cache may still charge; the session is recorded and billed by its tag. false: it is refused."""


class StorageSection(Section):
    """[storage]: where billing data lives."""

    path: Path = Path("/var/lib/sitectl/ledger.sqlite")
    """SQLite ledger of sessions and the uplink outbox (systemd's StateDirectory)."""


class ControlSection(Section):
    """[control]: the local control API between `sitectl` and the daemon."""

    socket_path: Path = Path("/run/sitectl/control.sock")
    """Unix socket of the local control API used by `sitectl` (systemd's RuntimeDirectory)."""

    socket_group: NonEmpty | None = None
    """Group that may use the control socket (mode 0660); absent: the daemon's own group."""


class LogSection(Section):
    """[log]: structured logging (level and format; the daemon writes to standard error)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    """Least severe level written."""

    format: Literal["auto", "json", "console"] = "auto"
    """json: one JSON object per line (journald); console: for people; auto: console on a terminal."""


def phases_from_lines(grid_type: str, line_count: int) -> int | None:
    """Phases implied by the number of wired lines on a grid type; None if the wiring is impossible."""
    table = {"TN": {1: 1, 3: 3}, "IT": {2: 1, 3: 3}}
    return table.get(grid_type, {}).get(line_count)
