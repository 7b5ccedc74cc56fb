"""Carries out the backend's validated commands (controller.uplink checks schema, expiry, ids)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import structlog

from controller.authorization import AuthListStore
from controller.site.snapshot import SiteState
from controller.uplink import (
    AuthListUpdate,
    ChargerAvailability,
    RemoteStart,
    RemoteStop,
    SiteCommand,
    SiteLimitChange,
)
from drivers.contracts import Availability, CommandOutcome, CommandResult, RemoteStartStop
from drivers.ocpp import AuthEntry, AuthStatus, LocalAuthList, TagKind
from drivers.ocpp.authorization import UpdateResult

log = structlog.get_logger("commands")

_STATUS = {
    "accepted": AuthStatus.ACCEPTED,
    "blocked": AuthStatus.BLOCKED,
    "expired": AuthStatus.EXPIRED,
    "invalid": AuthStatus.INVALID,
}


class SiteCommandHandler:
    def __init__(
        self,
        *,
        site: SiteState,
        auth_list: LocalAuthList,
        auth_store: AuthListStore,
        remote: Mapping[str, RemoteStartStop],
        availability: Mapping[str, Availability],
        recompute: Callable[[], None],
    ) -> None:
        self._site = site
        self._auth_list = auth_list
        self._auth_store = auth_store
        self._remote = remote
        self._availability = availability
        self._recompute = recompute

    async def handle(self, cmd: SiteCommand) -> CommandResult:
        if isinstance(cmd, AuthListUpdate):
            return await self._auth_update(cmd)
        if isinstance(cmd, SiteLimitChange):
            applied = self._site.set_fuse_limit(cmd.fuse_id, None if cmd.requested_a is None else cmd.limit_a)
            log.info("commands.site_limit", fuse=cmd.fuse_id, limit_a=applied, clamped=cmd.clamped)
            self._recompute()  # a lower limit must act now, not at the next reading
            return CommandResult(CommandOutcome.ACCEPTED, f"fuse {cmd.fuse_id} limit {applied:g} A")
        if isinstance(cmd, RemoteStart | RemoteStop):
            charger = self._remote.get(cmd.charger_id)
            if charger is None:
                return CommandResult(CommandOutcome.NOT_SUPPORTED, f"charger {cmd.charger_id} cannot do that")
            if isinstance(cmd, RemoteStart):
                return await charger.remote_start(cmd.id_tag)
            return await charger.remote_stop()
        assert isinstance(cmd, ChargerAvailability)
        target = self._availability.get(cmd.charger_id)
        if target is None:
            return CommandResult(CommandOutcome.NOT_SUPPORTED, f"charger {cmd.charger_id} cannot do that")
        return await target.set_available(cmd.available)

    async def _auth_update(self, cmd: AuthListUpdate) -> CommandResult:
        entries: dict[str, AuthEntry | None] = {}
        for entry in cmd.entries:
            if entry.status is None:
                entries[entry.id_tag] = None
                continue
            entries[entry.id_tag] = AuthEntry(
                kind=TagKind(entry.kind), status=_STATUS[entry.status], expiry_utc=entry.expiry_utc
            )
        if cmd.update_type == "full":
            full = {tag: e for tag, e in entries.items() if e is not None}
            result = self._auth_list.apply_full(cmd.list_version, full)
        else:
            result = self._auth_list.apply_differential(cmd.list_version, entries)
        if result is not UpdateResult.ACCEPTED:
            return CommandResult(
                CommandOutcome.REJECTED, f"{result}: list is at version {self._auth_list.version}"
            )
        # Persist what the driver now holds, so a reboot without the cloud keeps the same list.
        await self._auth_store.save(self._auth_list.version, self._auth_list.entries())
        log.info(
            "commands.auth_list",
            version=self._auth_list.version,
            update_type=cmd.update_type,
            entries=len(self._auth_list),
        )
        return CommandResult(
            CommandOutcome.ACCEPTED, f"version {self._auth_list.version}, {len(self._auth_list)} tags"
        )
