"""Local authorization of RFID tags: a versioned list from the cloud plus a cache of recent decisions.

The list holds residents' tags and tags from the national EV association, each with an optional expiry.
The cloud sends full and differential updates (later via MQTT); Authorize, StartTransaction and
TransactionEvent are decided here, locally, so charging works while the cloud is unreachable. The cache
holds decisions made elsewhere (for example by the cloud for a tag not on the list) for a limited time.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

MAX_ID_TAG_CHARS = 36  # 2.0.1 idToken; 1.6 idTag is 20


class TagKind(enum.StrEnum):
    RESIDENT = "resident"
    EV_ASSOCIATION = "ev_association"


class AuthStatus(enum.StrEnum):
    """OCPP AuthorizationStatus values (the common subset of 1.6 and 2.0.1)."""

    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"


class UpdateResult(enum.StrEnum):
    ACCEPTED = "accepted"
    VERSION_MISMATCH = "version_mismatch"  # a differential update that does not follow the current version
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class AuthEntry:
    kind: TagKind
    status: AuthStatus = AuthStatus.ACCEPTED
    expiry_utc: datetime | None = None
    group_id: str | None = None


@dataclass(frozen=True, slots=True)
class AuthDecision:
    status: AuthStatus
    expiry_utc: datetime | None = None
    kind: TagKind | None = None
    group_id: str | None = None
    source: str = "list"  # list | cache | none

    @property
    def accepted(self) -> bool:
        return self.status is AuthStatus.ACCEPTED


class Authorizer(Protocol):
    """What the CSMS asks for every idTag; must be fast (no I/O)."""

    def authorize(self, id_tag: str, now_utc: datetime) -> AuthDecision: ...


def normalize_tag(id_tag: str) -> str:
    # RFID UIDs arrive in either case depending on the reader firmware.
    return id_tag.strip().upper()


class LocalAuthList:
    """The versioned list plus an LRU cache of recent decisions with a time to live."""

    def __init__(self, *, cache_ttl_s: float = 7 * 24 * 3600, cache_size: int = 1000) -> None:
        self._entries: dict[str, AuthEntry] = {}
        self._version = 0
        self._cache: OrderedDict[str, tuple[AuthDecision, datetime]] = OrderedDict()
        self._cache_ttl = timedelta(seconds=cache_ttl_s)
        self._cache_size = cache_size

    @property
    def version(self) -> int:
        return self._version

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> Mapping[str, AuthEntry]:
        return dict(self._entries)

    def apply_full(self, version: int, entries: Mapping[str, AuthEntry]) -> UpdateResult:
        """Replace the whole list. Any version > 0 is taken: a full update is the cloud's reset."""
        if version <= 0 or any(not _valid_tag(t) for t in entries):
            return UpdateResult.INVALID
        self._entries = {normalize_tag(t): e for t, e in entries.items()}
        self._version = version
        self._cache.clear()
        return UpdateResult.ACCEPTED

    def apply_differential(self, version: int, changes: Mapping[str, AuthEntry | None]) -> UpdateResult:
        """Add, replace (entry) or remove (None) tags. Only a version newer than the current one is
        taken; an older or equal one is a replay and changes nothing."""
        if version <= 0 or any(not _valid_tag(t) for t in changes):
            return UpdateResult.INVALID
        if version <= self._version:
            return UpdateResult.VERSION_MISMATCH
        for tag, entry in changes.items():
            key = normalize_tag(tag)
            self._cache.pop(key, None)
            if entry is None:
                self._entries.pop(key, None)
            else:
                self._entries[key] = entry
        self._version = version
        return UpdateResult.ACCEPTED

    def remember(self, id_tag: str, decision: AuthDecision, now_utc: datetime) -> None:
        """Cache a decision made elsewhere (e.g. by the cloud) for a tag that is not on the list."""
        key = normalize_tag(id_tag)
        self._cache[key] = (decision, now_utc + self._cache_ttl)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def forget(self, ids: Iterable[str]) -> None:
        for tag in ids:
            self._cache.pop(normalize_tag(tag), None)

    def authorize(self, id_tag: str, now_utc: datetime) -> AuthDecision:
        if not _valid_tag(id_tag):
            return AuthDecision(AuthStatus.INVALID, source="none")
        key = normalize_tag(id_tag)
        entry = self._entries.get(key)
        if entry is not None:
            if entry.expiry_utc is not None and entry.expiry_utc <= now_utc:
                return AuthDecision(AuthStatus.EXPIRED, entry.expiry_utc, entry.kind, entry.group_id)
            return AuthDecision(entry.status, entry.expiry_utc, entry.kind, entry.group_id)
        cached = self._cache.get(key)
        if cached is not None:
            decision, cached_until = cached
            if cached_until <= now_utc or (
                decision.expiry_utc is not None and decision.expiry_utc <= now_utc
            ):
                del self._cache[key]
            else:
                self._cache.move_to_end(key)
                return AuthDecision(
                    decision.status, decision.expiry_utc, decision.kind, decision.group_id, "cache"
                )
        return AuthDecision(AuthStatus.INVALID, source="none")


def _valid_tag(id_tag: str) -> bool:
    return 0 < len(id_tag.strip()) <= MAX_ID_TAG_CHARS and id_tag.isprintable()
