"""A charging point (one connector/EVSE of one charger) behind the driver contracts."""

from __future__ import annotations

from collections.abc import Mapping

from drivers.contracts import ChargerStatus, CommandResult
from drivers.ocpp import commands
from drivers.ocpp.station import Station


class ChargerHandle:
    """Implements `CurrentLimiter`, `RemoteStartStop` and `Availability` for one charging point.

    Commands wait for the charger's answer, at most `timeout_s`, and report it as a CommandResult
    (ACCEPTED, REJECTED, TIMEOUT, OFFLINE, NOT_SUPPORTED); they never raise for a charger's behaviour.

    Leases: `set_current(a, lease_s=...)` installs a limit that lapses on the charger after `lease_s`
    (back to the safe current). The driver does not refresh it: the caller must call `set_current`
    again before the lease runs out, typically every lease_s / 3.
    """

    def __init__(
        self, charger_id: str, station: Station, connector_id: int, default_timeout_s: float
    ) -> None:
        self.charger_id = charger_id
        self.identity = station.identity
        self.connector_id = connector_id
        self._station = station
        self._timeout_s = default_timeout_s

    def status(self) -> ChargerStatus:
        return self._station.status(self._station.connectors[self.connector_id])

    @property
    def ocpp_version(self) -> str | None:
        return self._station.version()

    @property
    def provisioned(self) -> bool:
        return self._station.provisioned

    async def set_current(
        self, current_a: float, *, lease_s: float, phases: int | None = None, timeout_s: float = 10.0
    ) -> CommandResult:
        """0 A pauses; amps per phase, capped at the charger's max_current_a; 1.6 rounds down to 0.1 A."""
        return await commands.set_current(
            self._station, self.connector_id, current_a, lease_s=lease_s, phases=phases, timeout_s=timeout_s
        )

    async def pause(self, *, lease_s: float, timeout_s: float = 10.0) -> CommandResult:
        return await self.set_current(0.0, lease_s=lease_s, timeout_s=timeout_s)

    async def resume(
        self, current_a: float, *, lease_s: float, phases: int | None = None, timeout_s: float = 10.0
    ) -> CommandResult:
        return await self.set_current(current_a, lease_s=lease_s, phases=phases, timeout_s=timeout_s)

    async def install_safe_limit(self, safe_current_a: float, *, timeout_s: float = 10.0) -> CommandResult:
        """Replace the permanent stack-level-0 profile. It covers the whole charger (all connectors)."""
        return await self._station.install_safe_limit(safe_current_a, timeout_s=timeout_s)

    async def remote_start(self, id_tag: str, *, timeout_s: float = 10.0) -> CommandResult:
        return await commands.remote_start(self._station, self.connector_id, id_tag, timeout_s=timeout_s)

    async def remote_stop(self, *, timeout_s: float = 10.0) -> CommandResult:
        return await commands.remote_stop(self._station, self.connector_id, timeout_s=timeout_s)

    async def set_available(self, available: bool, *, timeout_s: float = 10.0) -> CommandResult:
        return await commands.set_available(self._station, self.connector_id, available, timeout_s=timeout_s)

    async def reset(self, *, hard: bool = False, timeout_s: float = 10.0) -> CommandResult:
        """Resets the whole charger (every connector of this identity)."""
        return await commands.reset(self._station, hard=hard, timeout_s=timeout_s)

    async def trigger(self, message: str, *, timeout_s: float = 10.0) -> CommandResult:
        """TriggerMessage for this connector, e.g. "MeterValues", "StatusNotification"."""
        return await commands.trigger(self._station, message, self.connector_id, timeout_s=timeout_s)

    async def configure(self, key: str, value: str, *, timeout_s: float = 10.0) -> CommandResult:
        """1.6 ChangeConfiguration(key); 2.0.1 SetVariables with key "Component.Variable"."""
        return await commands.configure(self._station, key, value, timeout_s=timeout_s)

    async def read_configuration(self, *keys: str, timeout_s: float = 10.0) -> Mapping[str, str | None]:
        """1.6 GetConfiguration; 2.0.1 GetVariables ("Component.Variable"). Raises CallFailed."""
        return await commands.read_configuration(self._station, keys, timeout_s=timeout_s)
