"""Commands from the backend on `<prefix>/<site>/cmd/<name>`, answered on `cmd-result`.

Every command is validated (size, JSON, schema, id, expiry, arguments), turned into a typed value
and handed to an injected `CommandHandler`; malformed or hostile input is rejected with a reason
and changes nothing. A command id seen before gets its stored result again without running twice.
Every command received is audit-logged (structlog and the ledger's `command_audit` table).

No `from __future__ import annotations` here: pydantic reads these annotations at runtime.
"""

import asyncio
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Annotated, Any, Literal, Protocol

import structlog
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
    model_validator,
)

from controller.sessions.ledger import Ledger
from drivers.contracts import Clock, CommandOutcome, CommandResult

from .config import UplinkConfig
from .connection import Publisher, dumps
from .topics import COMMAND_RESULT_SCHEMA, COMMAND_SCHEMA, Topics

log = structlog.get_logger(__name__)

CommandId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
ChargerId = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,64}$")]
IdTag = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,36}$")]
FuseId = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,64}$")]
UpdateType = Literal["full", "differential"]
TagKind = Literal["resident", "ev_association"]
TagStatus = Literal["accepted", "blocked", "expired", "invalid"]

MAX_AUTH_ENTRIES = 20_000
_AUDIT_EXCERPT_CHARS = 2000


# ------------------------------------------------------------------------ typed command values


@dataclass(frozen=True, slots=True)
class AuthListEntry:
    id_tag: str
    kind: TagKind
    status: TagStatus | None  # None only in a differential update: remove the tag from the list
    expiry_utc: datetime | None


@dataclass(frozen=True, slots=True)
class AuthListUpdate:
    command_id: str
    list_version: int
    update_type: UpdateType
    entries: tuple[AuthListEntry, ...]


@dataclass(frozen=True, slots=True)
class SiteLimitChange:
    """`limit_a` is what to apply: the request clamped to the fuse rating (or the rating itself)."""

    command_id: str
    fuse_id: str
    limit_a: float
    requested_a: float | None  # None: back to the rating
    rating_a: float

    @property
    def clamped(self) -> bool:
        return self.requested_a is not None and self.requested_a > self.rating_a


@dataclass(frozen=True, slots=True)
class RemoteStart:
    command_id: str
    charger_id: str
    id_tag: str


@dataclass(frozen=True, slots=True)
class RemoteStop:
    command_id: str
    charger_id: str


@dataclass(frozen=True, slots=True)
class ChargerAvailability:
    command_id: str
    charger_id: str
    available: bool


SiteCommand = AuthListUpdate | SiteLimitChange | RemoteStart | RemoteStop | ChargerAvailability


class CommandHandler(Protocol):
    """Carries out a validated command (the daemon wires it to the drivers and the allocator)."""

    async def handle(self, cmd: SiteCommand) -> CommandResult: ...


# ---------------------------------------------------------------------------- wire models


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Envelope(_Strict):
    schema_: str = Field(alias="schema", pattern=f"^{re.escape(COMMAND_SCHEMA)}$")
    id: CommandId
    expires_utc: AwareDatetime
    issued_utc: AwareDatetime | None = None


class _IdOnly(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: CommandId


class _AuthEntry(_Strict):
    id_tag: IdTag
    kind: TagKind
    status: TagStatus | None = None
    expiry_utc: AwareDatetime | None = None


class _AuthListArgs(_Strict):
    list_version: int = Field(ge=1, le=2**31 - 1)
    update_type: UpdateType
    entries: list[_AuthEntry] = Field(max_length=MAX_AUTH_ENTRIES)

    @model_validator(mode="after")
    def _consistent(self) -> "_AuthListArgs":
        tags = [e.id_tag for e in self.entries]
        if len(set(tags)) != len(tags):
            raise ValueError("an id_tag appears more than once")
        if self.update_type == "full" and any(e.status is None for e in self.entries):
            raise ValueError("a full update needs a status for every entry")
        return self


class _SiteLimitArgs(_Strict):
    fuse_id: FuseId
    limit_a: float | None = Field(ge=0)

    @model_validator(mode="after")
    def _finite(self) -> "_SiteLimitArgs":
        if self.limit_a is not None and not math.isfinite(self.limit_a):
            raise ValueError("limit_a must be a finite number")
        return self


class _RemoteStartArgs(_Strict):
    charger_id: ChargerId
    id_tag: IdTag


class _ChargerArgs(_Strict):
    charger_id: ChargerId


class _AvailabilityArgs(_Strict):
    charger_id: ChargerId
    available: StrictBool


class _AuthListCommand(_Envelope):
    args: _AuthListArgs


class _SiteLimitCommand(_Envelope):
    args: _SiteLimitArgs


class _RemoteStartCommand(_Envelope):
    args: _RemoteStartArgs


class _RemoteStopCommand(_Envelope):
    args: _ChargerArgs


class _AvailabilityCommand(_Envelope):
    args: _AvailabilityArgs


COMMANDS: Mapping[str, type[_Envelope]] = MappingProxyType(
    {
        "auth-list": _AuthListCommand,
        "site-limit": _SiteLimitCommand,
        "remote-start": _RemoteStartCommand,
        "remote-stop": _RemoteStopCommand,
        "charger-availability": _AvailabilityCommand,
    }
)


# ---------------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class CommandReply:
    """What goes back on `cmd-result` (and into the ledger for the command id)."""

    command_id: str | None
    name: str
    status: Literal["accepted", "rejected", "failed"]
    reason: str | None = None
    detail: str = ""
    result: Mapping[str, Any] | None = None

    def payload(self, processed_utc: datetime) -> dict[str, Any]:
        return {
            "schema": COMMAND_RESULT_SCHEMA,
            "id": self.command_id,
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "detail": self.detail,
            "result": None if self.result is None else dict(self.result),
            "processed_utc": processed_utc.isoformat().replace("+00:00", "Z"),
        }


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


class CommandProcessor:
    """Validates, de-duplicates, expires, audits and executes commands; one at a time, in order."""

    def __init__(
        self,
        handler: CommandHandler,
        ledger: Ledger,
        topics: Topics,
        clock: Clock,
        config: UplinkConfig,
    ) -> None:
        self._handler = handler
        self._ledger = ledger
        self._topics = topics
        self._clock = clock
        self._config = config
        self._inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(maxsize=config.command_queue)
        self._outbox: list[bytes] = []
        self._outbox_ready = asyncio.Event()
        self.counters: dict[str, int] = {}

    def submit(self, name: str, payload: bytes) -> None:
        """From the receive loop; never blocks. A full queue rejects the command as `busy`."""
        try:
            self._inbox.put_nowait((name, payload))
        except asyncio.QueueFull:
            self._count("busy")
            reply = CommandReply(self._peek_id(payload), name, "rejected", "busy", "too many commands queued")
            self._queue_reply(reply)
            log.warning("command_rejected", name=name, reason="busy")

    async def run_worker(self) -> None:
        """Executes queued commands for the whole life of the uplink (not per connection)."""
        while True:
            name, payload = await self._inbox.get()
            reply = await self.process(name, payload)
            self._queue_reply(reply)

    async def run_replies(self, pub: Publisher) -> None:
        """Per connection: publish results; a result is dropped once PUBACKed (the id keeps it)."""
        while True:
            self._outbox_ready.clear()
            while self._outbox:
                await pub.publish(self._topics.command_result, self._outbox[0], qos=1)
                self._outbox.pop(0)
            await self._outbox_ready.wait()

    def _queue_reply(self, reply: CommandReply) -> None:
        self._outbox.append(dumps(reply.payload(self._clock.utc_now())))
        del self._outbox[: -self._config.command_queue]
        self._outbox_ready.set()

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def _peek_id(self, payload: bytes) -> str | None:
        try:
            return _IdOnly.model_validate_json(payload).id
        except ValidationError:
            return None

    async def process(self, name: str, payload: bytes) -> CommandReply:
        """One command from receipt to reply, audit included. Never raises for bad input."""
        received = self._clock.utc_now()
        command_id = self._peek_id(payload) if len(payload) <= self._config.max_command_bytes else None
        if command_id is not None:
            stored = await self._ledger.command_result(command_id)
            if stored is not None:
                self._count("replayed")
                log.info("command_replayed", name=name, command_id=command_id)
                await self._ledger.record_command(
                    received_utc=received,
                    name=name[:64],
                    command_id=command_id,
                    status="replayed",
                    reason=None,
                    payload_excerpt=payload[:_AUDIT_EXCERPT_CHARS].decode("utf-8", errors="replace"),
                    result_json=None,
                )
                data = json.loads(stored)
                return CommandReply(
                    command_id, data["name"], data["status"], data["reason"], data["detail"], data["result"]
                )
        try:
            command = self._validate(name, payload, received)
        except _Rejected as rejected:
            reply = CommandReply(command_id, name, "rejected", rejected.reason, rejected.detail)
        else:
            reply = await self._execute(name, command)
        self._count(reply.status if reply.reason is None else f"{reply.status}:{reply.reason}")
        log.info(
            "command_processed",
            name=name,
            command_id=command_id,
            status=reply.status,
            reason=reply.reason,
            detail=reply.detail or None,
        )
        excerpt = payload[:_AUDIT_EXCERPT_CHARS].decode("utf-8", errors="replace")
        stored_reply = json.dumps(
            {
                "name": reply.name,
                "status": reply.status,
                "reason": reply.reason,
                "detail": reply.detail,
                "result": None if reply.result is None else dict(reply.result),
            }
        )
        await self._ledger.record_command(
            received_utc=received,
            name=name[:64],
            command_id=command_id,
            status=reply.status,
            reason=reply.reason,
            payload_excerpt=excerpt,
            result_json=stored_reply,
        )
        return reply

    def _validate(self, name: str, payload: bytes, now: datetime) -> SiteCommand:
        model = COMMANDS.get(name)
        if model is None:
            raise _Rejected("unknown_command", f"no command {name[:64]!r}; known: {', '.join(COMMANDS)}")
        if len(payload) > self._config.max_command_bytes:
            raise _Rejected("too_large", f"{len(payload)} bytes > {self._config.max_command_bytes}")
        try:
            envelope = model.model_validate_json(payload)
        except ValidationError as exc:
            raise _Rejected("invalid", _errors(exc)) from exc
        if envelope.expires_utc <= now:
            raise _Rejected("expired", f"expired at {envelope.expires_utc.isoformat()}")
        return self._typed(envelope)

    def _typed(self, env: _Envelope) -> SiteCommand:
        cfg = self._config
        if isinstance(env, _AuthListCommand):
            a = env.args
            entries = tuple(AuthListEntry(e.id_tag, e.kind, e.status, e.expiry_utc) for e in a.entries)
            return AuthListUpdate(env.id, a.list_version, a.update_type, entries)
        if isinstance(env, _SiteLimitCommand):
            rating = cfg.fuse_ratings_a.get(env.args.fuse_id)
            if rating is None:
                raise _Rejected("unknown_fuse", f"no fuse {env.args.fuse_id!r} in the site configuration")
            requested = env.args.limit_a
            applied = rating if requested is None else min(requested, rating)
            return SiteLimitChange(env.id, env.args.fuse_id, applied, requested, rating)
        charger_id = env.args.charger_id  # type: ignore[attr-defined]
        if cfg.charger_ids and charger_id not in cfg.charger_ids:
            raise _Rejected("unknown_charger", f"no charger {charger_id!r} at this site")
        if isinstance(env, _RemoteStartCommand):
            return RemoteStart(env.id, charger_id, env.args.id_tag)
        if isinstance(env, _RemoteStopCommand):
            return RemoteStop(env.id, charger_id)
        assert isinstance(env, _AvailabilityCommand)
        return ChargerAvailability(env.id, charger_id, env.args.available)

    async def _execute(self, name: str, command: SiteCommand) -> CommandReply:
        extra: dict[str, Any] = {}
        if isinstance(command, SiteLimitChange):
            extra = {
                "applied_limit_a": command.limit_a,
                "rating_a": command.rating_a,
                "clamped": command.clamped,
            }
        try:
            async with asyncio.timeout(self._clock.loop_seconds(self._config.command_timeout_s)):
                outcome = await self._handler.handle(command)
        except TimeoutError:
            return CommandReply(
                command.command_id, name, "failed", "timeout", "the site did not finish in time"
            )
        except Exception as exc:  # a handler bug must not take the uplink down
            log.exception("command_handler_error", name=name, command_id=command.command_id)
            return CommandReply(command.command_id, name, "failed", "handler_error", type(exc).__name__)
        if outcome.ok:
            return CommandReply(command.command_id, name, "accepted", None, outcome.detail, extra or None)
        status: Literal["rejected", "failed"] = (
            "rejected"
            if outcome.outcome in (CommandOutcome.REJECTED, CommandOutcome.NOT_SUPPORTED)
            else "failed"
        )
        return CommandReply(
            command.command_id, name, status, outcome.outcome.value, outcome.detail, extra or None
        )
