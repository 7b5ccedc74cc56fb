"""MQTT topic names and payload schema identifiers (DESIGN.md §7.3, docs/mqtt.md)."""

from __future__ import annotations

from dataclasses import dataclass

STATUS_SCHEMA = "garage.status/1"
SESSION_SCHEMA = "garage.session/2"
EVENT_SCHEMA = "garage.event/1"
ACK_SCHEMA = "garage.ack/1"
SITE_TELEMETRY_SCHEMA = "garage.telemetry.site/1"
CHARGER_TELEMETRY_SCHEMA = "garage.telemetry.chargers/1"
COMMAND_SCHEMA = "garage.cmd/1"
COMMAND_RESULT_SCHEMA = "garage.cmd-result/1"


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str
    site_id: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.site_id}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def sessions(self) -> str:
        return f"{self.base}/sessions"

    @property
    def events(self) -> str:
        return f"{self.base}/events"

    @property
    def ack(self) -> str:
        return f"{self.base}/ack"

    @property
    def site_telemetry(self) -> str:
        return f"{self.base}/telemetry/site"

    @property
    def charger_telemetry(self) -> str:
        return f"{self.base}/telemetry/chargers"

    @property
    def commands(self) -> str:
        """The subscription filter for all commands."""
        return f"{self.base}/cmd/+"

    @property
    def command_result(self) -> str:
        return f"{self.base}/cmd-result"

    def command_name(self, topic: str) -> str | None:
        """`cmd/<name>` → name; None for any other topic."""
        head = f"{self.base}/cmd/"
        if not topic.startswith(head):
            return None
        name = topic[len(head) :]
        return name if name and "/" not in name else None
