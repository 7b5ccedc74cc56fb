"""The MQTT uplink: outbox relay, telemetry, events and commands. See docs/mqtt.md."""

from .commands import (
    AuthListEntry,
    AuthListUpdate,
    ChargerAvailability,
    CommandHandler,
    CommandProcessor,
    CommandReply,
    RemoteStart,
    RemoteStop,
    SiteCommand,
    SiteLimitChange,
)
from .config import UplinkConfig, UplinkConfigError
from .service import Uplink
from .telemetry import ChargerTelemetry, SiteTelemetry, TelemetryPublisher
from .topics import Topics

__all__ = [
    "AuthListEntry",
    "AuthListUpdate",
    "ChargerAvailability",
    "ChargerTelemetry",
    "CommandHandler",
    "CommandProcessor",
    "CommandReply",
    "RemoteStart",
    "RemoteStop",
    "SiteCommand",
    "SiteLimitChange",
    "SiteTelemetry",
    "TelemetryPublisher",
    "Topics",
    "Uplink",
    "UplinkConfig",
    "UplinkConfigError",
]
