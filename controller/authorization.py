"""Who may charge: the backend's local authorization list, kept in the ledger, and the site's policy
for tags on no list.

The list lives in memory in the OCPP driver (`LocalAuthList`, answered without I/O inside message
handlers) and in SQLite, so that residents still charge after a reboot while the cloud is away.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import structlog

from controller.sessions import Ledger
from controller.sessions.ledger import db_time
from drivers.ocpp import AuthDecision, AuthEntry, AuthStatus, LocalAuthList, TagKind
from drivers.ocpp.authorization import UpdateResult

log = structlog.get_logger("authorization")


class SiteAuthorizer:
    """The local list first; a tag on no list is accepted only when the site says so."""

    def __init__(self, auth_list: LocalAuthList, *, accept_unknown: bool) -> None:
        self.auth_list = auth_list
        self._accept_unknown = accept_unknown
        self.unknown_accepted = 0
        self.refused = 0

    def authorize(self, id_tag: str, now_utc: datetime) -> AuthDecision:
        decision = self.auth_list.authorize(id_tag, now_utc)
        if decision.accepted:
            return decision
        if decision.source == "none" and self._accept_unknown and id_tag.strip() and id_tag.isprintable():
            self.unknown_accepted += 1
            return AuthDecision(AuthStatus.ACCEPTED, source="site_policy")
        self.refused += 1
        return decision


class AuthListStore:
    """Loads and saves the local list in the ledger's database, in one transaction per update."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def load_into(self, auth_list: LocalAuthList) -> int:
        async with self._ledger.transaction() as tx:
            async with tx.db.execute("SELECT version FROM auth_list_version WHERE singleton = 1") as cur:
                row = await cur.fetchone()
            async with tx.db.execute(
                "SELECT id_tag, kind, status, expiry_utc, group_id FROM auth_list"
            ) as cur:
                rows = await cur.fetchall()
        if row is None:
            return 0
        entries = {
            str(r[0]): AuthEntry(
                kind=TagKind(str(r[1])),
                status=AuthStatus(str(r[2])),
                expiry_utc=None if r[3] is None else datetime.fromisoformat(str(r[3])),
                group_id=None if r[4] is None else str(r[4]),
            )
            for r in rows
        }
        result = auth_list.apply_full(int(row[0]), entries)
        if result is not UpdateResult.ACCEPTED:
            log.error("authorization.stored_list_invalid", result=str(result), entries=len(entries))
            return 0
        log.info("authorization.list_loaded", version=int(row[0]), entries=len(entries))
        return len(entries)

    async def save(self, version: int, entries: Mapping[str, AuthEntry]) -> None:
        async with self._ledger.transaction() as tx:
            await tx.db.execute("DELETE FROM auth_list")
            await tx.db.executemany(
                "INSERT INTO auth_list (id_tag, kind, status, expiry_utc, group_id) VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        tag,
                        str(e.kind),
                        str(e.status),
                        None if e.expiry_utc is None else db_time(e.expiry_utc),
                        e.group_id,
                    )
                    for tag, e in entries.items()
                ],
            )
            await tx.db.execute(
                "INSERT INTO auth_list_version (singleton, version) VALUES (1, ?) "
                "ON CONFLICT (singleton) DO UPDATE SET version = excluded.version",
                (version,),
            )
