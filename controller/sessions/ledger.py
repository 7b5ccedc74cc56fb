"""The SQLite ledger: sessions, the outbox, OCPP transaction ids and the command audit log.

Durability settings are fixed, not configurable: WAL with `synchronous=FULL`, so a transaction that
COMMIT returned for is on disk before the caller hears about it, and a power cut or SIGKILL loses at
most transactions that never returned. The file is checked with `PRAGMA integrity_check` before
anything else; a failed check raises LedgerCorruptError and the daemon must not report READY.

One aiosqlite connection (one worker thread) serves the whole daemon; an asyncio lock makes each
read or transaction exclusive, so a relay reading the outbox never sees a recorder's half-written
transaction. Every session change is written together with its outbox row in one transaction: a
session version exists on disk if and only if the message announcing it does.
"""

from __future__ import annotations

import asyncio
import enum
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import aiosqlite
import structlog

from .migrations import MIGRATIONS, SCHEMA_VERSION
from .model import SESSION_SCHEMA, Session, iso_utc, session_from_json, session_to_json

log = structlog.get_logger(__name__)

_MAX_SQL_PARAMS = 500


class LedgerError(Exception):
    """The ledger cannot be used; the message says why and where."""


class LedgerCorruptError(LedgerError):
    pass


class OutboxKind(enum.StrEnum):
    SESSION = "session"
    EVENT = "event"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    msg_id: str
    kind: OutboxKind
    payload: str
    created_utc: datetime


def db_time(moment: datetime) -> str:
    """Fixed-width UTC text, so that SQL string comparison orders times correctly."""
    if moment.tzinfo is None:
        raise ValueError("ledger times must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _from_db_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def session_message(session: Session, msg_id: UUID, created_utc: datetime) -> dict[str, Any]:
    """The outbox payload announcing one session version (DESIGN §7.3, docs/sessions.md)."""
    return {
        "schema": SESSION_SCHEMA,
        "msg_id": str(msg_id),
        "created_utc": iso_utc(created_utc),
        **session_to_json(session),
    }


class LedgerTx:
    """Reads and writes inside one ledger transaction (see Ledger.transaction)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self.outbox_rows_written = 0

    @property
    def db(self) -> aiosqlite.Connection:
        return self._db

    async def lookup(
        self, transactions: set[tuple[str, str]], chargers: set[str]
    ) -> tuple[dict[tuple[str, str], Session], dict[str, Session]]:
        """The sessions a batch of events can concern, in two queries per 250 keys.

        Returns the newest session per (charger_id, transaction_id) (a charger that reuses a
        transaction id later starts a new session) and the open session per charger.
        """
        by_transaction: dict[tuple[str, str], Session] = {}
        keys = sorted(transactions)
        for i in range(0, len(keys), _MAX_SQL_PARAMS // 2):
            chunk = keys[i : i + _MAX_SQL_PARAMS // 2]
            values = ",".join("(?, ?)" for _ in chunk)
            params = [p for key in chunk for p in key]
            sql = (
                "SELECT record FROM sessions WHERE (charger_id, transaction_id) IN "
                f"(VALUES {values}) ORDER BY started_utc, rowid"
            )
            for session in await self._sessions(sql, params):
                by_transaction[(session.charger_id, session.transaction_id)] = session
        open_on_charger: dict[str, Session] = {}
        names = sorted(chargers)
        for i in range(0, len(names), _MAX_SQL_PARAMS):
            some = names[i : i + _MAX_SQL_PARAMS]
            sql = (
                "SELECT record FROM sessions WHERE stopped_utc IS NULL AND charger_id IN "
                f"({','.join('?' * len(some))}) ORDER BY started_utc, rowid"
            )
            for session in await self._sessions(sql, some):
                open_on_charger[session.charger_id] = session
        return by_transaction, open_on_charger

    async def _sessions(self, sql: str, params: Sequence[Any]) -> list[Session]:
        async with self._db.execute(sql, tuple(params)) as cursor:
            rows = await cursor.fetchall()
        return [session_from_json(json.loads(r[0])) for r in rows]

    async def write_versions(self, versions: Sequence[tuple[Session, UUID]], created_utc: datetime) -> None:
        """Store session versions, each with the outbox row (msg_id) announcing it.

        Versions of one session must come in order; the sessions table keeps the last one.
        """
        if not versions:
            return
        latest = {session.session_id: session for session, _ in versions}
        await self._db.executemany(
            """
            INSERT INTO sessions (session_id, charger_id, transaction_id, id_tag, started_utc,
                stopped_utc, meter_start_wh, meter_stop_wh, energy_wh, stop_reason, version, record)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (session_id) DO UPDATE SET
                stopped_utc = excluded.stopped_utc, meter_stop_wh = excluded.meter_stop_wh,
                energy_wh = excluded.energy_wh, stop_reason = excluded.stop_reason,
                version = excluded.version, record = excluded.record
            """,
            [
                (
                    str(s.session_id),
                    s.charger_id,
                    s.transaction_id,
                    s.id_tag,
                    db_time(s.started_utc),
                    None if s.stopped_utc is None else db_time(s.stopped_utc),
                    s.meter_start_wh,
                    s.meter_stop_wh,
                    s.energy_wh,
                    s.stop_reason,
                    s.version,
                    json.dumps(session_to_json(s), separators=(",", ":")),
                )
                for s in latest.values()
            ],
        )
        created = db_time(created_utc)
        await self._db.executemany(
            "INSERT INTO outbox (msg_id, kind, payload, created_utc) VALUES (?, ?, ?, ?)",
            [
                (
                    str(msg_id),
                    OutboxKind.SESSION.value,
                    json.dumps(session_message(session, msg_id, created_utc), separators=(",", ":")),
                    created,
                )
                for session, msg_id in versions
            ],
        )
        self.outbox_rows_written += len(versions)

    async def add_outbox(
        self, kind: OutboxKind, msg_id: str, payload: dict[str, Any], created_utc: datetime
    ) -> None:
        await self._db.execute(
            "INSERT INTO outbox (msg_id, kind, payload, created_utc) VALUES (?, ?, ?, ?)",
            (msg_id, kind.value, json.dumps(payload, separators=(",", ":")), db_time(created_utc)),
        )
        self.outbox_rows_written += 1


class Ledger:
    """The ledger file. Use as `async with await Ledger.open(path) as ledger:` or call close()."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self._lock = asyncio.Lock()
        self._outbox_listeners: list[Callable[[], None]] = []

    @classmethod
    async def open(cls, path: str | Path) -> Ledger:
        path = Path(path)
        if not path.parent.is_dir():
            raise LedgerError(f"ledger directory {path.parent} does not exist")
        db = await aiosqlite.connect(str(path), isolation_level=None)
        try:
            await _check_integrity(db, path)
            await _configure(db, path)
            await _migrate(db, path)
        except BaseException:
            await db.close()
            raise
        return cls(db, path)

    async def close(self) -> None:
        async with self._lock:
            await self._db.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[LedgerTx]:
        """One write transaction (BEGIN IMMEDIATE … COMMIT); rolled back if the body raises."""
        async with self._lock:
            committed = False
            try:
                await self._db.execute("BEGIN IMMEDIATE")
                tx = LedgerTx(self._db)
                yield tx
                await self._db.execute("COMMIT")
                committed = True
            finally:
                if not committed:
                    await self._roll_back()
        if tx.outbox_rows_written:
            for listener in list(self._outbox_listeners):
                listener()

    async def _roll_back(self) -> None:
        """End the transaction the connection's thread may have open, whatever left it so.

        A statement runs to its end in that thread even when the task awaiting it is cancelled (the
        daemon cancels its session writer at shutdown): a cancel during BEGIN left the transaction
        open, and every later BEGIN failed. The ROLLBACK is queued after whatever statement is still
        running, and shielded so that a second cancel cannot leave it unsent. A failed COMMIT (disk
        full, I/O error) leaves the transaction open too; a COMMIT that ran after all, or a BEGIN that
        failed, leaves none, and then there is nothing to roll back.
        """
        try:
            await asyncio.shield(self._db.execute("ROLLBACK"))
        except sqlite3.OperationalError:
            if self._db.in_transaction:
                raise

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            yield self._db

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        async with self._read() as db, db.execute(sql, tuple(params)) as cursor:
            return list(await cursor.fetchall())

    # ------------------------------------------------------------------------------------ schema

    async def user_version(self) -> int:
        rows = await self._fetchall("PRAGMA user_version")
        return int(rows[0][0])

    async def pragma(self, name: str) -> str:
        if not name.isidentifier():
            raise ValueError(f"not a pragma name: {name!r}")
        rows = await self._fetchall(f"PRAGMA {name}")
        return str(rows[0][0])

    # ------------------------------------------------------------------------------------ outbox

    def on_outbox_rows(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` after each commit that added outbox rows; returns the unsubscribe call."""
        self._outbox_listeners.append(listener)
        return lambda: self._outbox_listeners.remove(listener)

    async def add_event(self, msg_id: str, payload: dict[str, Any], created_utc: datetime) -> None:
        """Queue an event message (topic `events`) that must survive restarts."""
        async with self.transaction() as tx:
            await tx.add_outbox(OutboxKind.EVENT, msg_id, payload, created_utc)

    async def pending(self, after_id: int = 0, limit: int = 100) -> list[OutboxRow]:
        """Unacknowledged outbox rows with id > after_id, oldest first."""
        rows = await self._fetchall(
            "SELECT id, msg_id, kind, payload, created_utc FROM outbox "
            "WHERE acked_utc IS NULL AND id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        )
        return [OutboxRow(r[0], r[1], OutboxKind(r[2]), r[3], _from_db_time(r[4])) for r in rows]

    async def ack(self, msg_ids: Sequence[str], acked_utc: datetime) -> int:
        """Mark rows acknowledged by the backend; returns how many were newly acknowledged."""
        done = 0
        if not msg_ids:
            return done
        async with self.transaction() as tx:
            for i in range(0, len(msg_ids), _MAX_SQL_PARAMS):
                chunk = list(msg_ids[i : i + _MAX_SQL_PARAMS])
                marks = ",".join("?" * len(chunk))
                cursor = await tx.db.execute(
                    f"UPDATE outbox SET acked_utc = ? WHERE acked_utc IS NULL AND msg_id IN ({marks})",
                    (db_time(acked_utc), *chunk),
                )
                done += cursor.rowcount
        return done

    async def backlog(self) -> int:
        rows = await self._fetchall("SELECT count(*) FROM outbox WHERE acked_utc IS NULL")
        return int(rows[0][0])

    async def prune_acked(self, acked_before: datetime) -> int:
        """Delete acknowledged outbox rows acknowledged before `acked_before`; never unacknowledged ones."""
        async with self.transaction() as tx:
            cursor = await tx.db.execute(
                "DELETE FROM outbox WHERE acked_utc IS NOT NULL AND acked_utc < ?", (db_time(acked_before),)
            )
            return cursor.rowcount

    # ---------------------------------------------------------------------------------- sessions

    async def get_session(self, session_id: UUID) -> Session | None:
        rows = await self._fetchall("SELECT record FROM sessions WHERE session_id = ?", (str(session_id),))
        return session_from_json(json.loads(rows[0][0])) if rows else None

    async def list_sessions(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[Session]:
        """Sessions that were running at some moment in [since, until), ordered by start.

        `since=None` means from the beginning, `until=None` up to now (active sessions included).
        """
        clauses: list[str] = []
        params: list[str] = []
        if since is not None:
            clauses.append("(stopped_utc IS NULL OR stopped_utc >= ?)")
            params.append(db_time(since))
        if until is not None:
            clauses.append("started_utc < ?")
            params.append(db_time(until))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self._fetchall(
            f"SELECT record FROM sessions {where} ORDER BY started_utc, rowid", params
        )
        return [session_from_json(json.loads(r[0])) for r in rows]

    async def open_sessions(self) -> list[Session]:
        rows = await self._fetchall(
            "SELECT record FROM sessions WHERE stopped_utc IS NULL ORDER BY started_utc, rowid"
        )
        return [session_from_json(json.loads(r[0])) for r in rows]

    # ---------------------------------------------------------------------------------- commands

    async def command_result(self, command_id: str) -> str | None:
        rows = await self._fetchall("SELECT result FROM command_results WHERE command_id = ?", (command_id,))
        return str(rows[0][0]) if rows else None

    async def record_command(
        self,
        *,
        received_utc: datetime,
        name: str,
        command_id: str | None,
        status: str,
        reason: str | None,
        payload_excerpt: str | None,
        result_json: str | None,
    ) -> None:
        """Append to the audit log and, for a command with an id, keep its result for replays."""
        async with self.transaction() as tx:
            await tx.db.execute(
                "INSERT INTO command_audit (received_utc, name, command_id, status, reason, payload) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (db_time(received_utc), name, command_id, status, reason, payload_excerpt),
            )
            if command_id is not None and result_json is not None:
                await tx.db.execute(
                    "INSERT OR IGNORE INTO command_results (command_id, name, received_utc, result) "
                    "VALUES (?, ?, ?, ?)",
                    (command_id, name, db_time(received_utc), result_json),
                )

    async def command_audit(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self._fetchall(
            "SELECT received_utc, name, command_id, status, reason FROM command_audit "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            {"received_utc": r[0], "name": r[1], "command_id": r[2], "status": r[3], "reason": r[4]}
            for r in rows
        ]


async def _check_integrity(db: aiosqlite.Connection, path: Path) -> None:
    try:
        async with db.execute("PRAGMA integrity_check") as cursor:
            rows = await cursor.fetchall()
    except sqlite3.DatabaseError as exc:
        raise LedgerCorruptError(
            f"ledger {path} failed its integrity check: not a readable SQLite database ({exc})"
        ) from exc
    problems = [str(r[0]) for r in rows]
    if problems != ["ok"]:
        raise LedgerCorruptError(f"ledger {path} failed its integrity check: {'; '.join(problems[:5])}")


async def _configure(db: aiosqlite.Connection, path: Path) -> None:
    async with db.execute("PRAGMA journal_mode=WAL") as cursor:
        row = await cursor.fetchone()
    if row is None or str(row[0]).lower() != "wal":
        raise LedgerError(f"ledger {path}: could not switch to WAL (got {row!r})")
    await db.execute("PRAGMA synchronous=FULL")
    await db.execute("PRAGMA foreign_keys=ON")
    await db.execute("PRAGMA busy_timeout=5000")


async def _migrate(db: aiosqlite.Connection, path: Path) -> None:
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    current = int(row[0]) if row else 0
    if current > SCHEMA_VERSION:
        raise LedgerError(
            f"ledger {path} has schema version {current}, newer than this software ({SCHEMA_VERSION})"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        try:
            await db.executescript(
                f"BEGIN IMMEDIATE;\n{MIGRATIONS[version - 1]}\nPRAGMA user_version = {version};\nCOMMIT;"
            )
        except sqlite3.Error as exc:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise LedgerError(f"ledger {path}: migration to schema {version} failed: {exc}") from exc
        log.info("ledger_migrated", path=str(path), schema_version=version)
