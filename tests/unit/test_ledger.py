"""The SQLite ledger: settings, integrity check, migrations, atomic session+outbox writes, queries."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from controller.sessions.ledger import Ledger, LedgerCorruptError, LedgerError, OutboxKind
from controller.sessions.migrations import MIGRATIONS, SCHEMA_VERSION
from controller.sessions.model import SESSION_SCHEMA
from controller.sessions.recorder import SessionRecorder
from controller.sessions.report import format_csv, format_json_lines, parse_since
from controller.sessions.transaction_ids import OcppTransactionIds
from drivers.clock import SystemClock
from tests.support.charger_events import T0, at, sample, sequential_ids, start, stop


class FixedClock(SystemClock):
    def __init__(self, now: datetime) -> None:
        self.now = now

    def utc_now(self) -> datetime:
        return self.now


async def test_opens_in_wal_with_full_sync_at_the_latest_schema(tmp_path: Path) -> None:
    async with await Ledger.open(tmp_path / "l.sqlite") as ledger:
        assert await ledger.pragma("journal_mode") == "wal"
        assert await ledger.pragma("synchronous") == "2"  # FULL
        assert await ledger.user_version() == SCHEMA_VERSION


async def test_a_corrupted_file_fails_the_integrity_check(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    async with await Ledger.open(path) as ledger:
        recorder = SessionRecorder(ledger, SystemClock())
        await recorder.handle_many([start(str(n), n, 1000, charger=f"CP-{n}") for n in range(300)])
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096
    # Scribble over a few pages in the middle, keeping the header so SQLite still opens the file.
    for offset in range(3 * 4096 + 100, 6 * 4096, 97):
        data[offset] = (data[offset] + 0x5A) % 256
    path.write_bytes(bytes(data))
    with pytest.raises(LedgerCorruptError, match="integrity"):
        await Ledger.open(path)


async def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    path.write_bytes(b"this is not sqlite" * 500)
    with pytest.raises(LedgerCorruptError, match="not a readable SQLite database"):
        await Ledger.open(path)


async def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="does not exist"):
        await Ledger.open(tmp_path / "nope" / "l.sqlite")


def _make_v1(path: Path) -> None:
    """A ledger as the first released schema wrote it, with one session and its outbox row."""
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(f"BEGIN; {MIGRATIONS[0]} PRAGMA user_version = 1; COMMIT;")
    record = {
        "session_id": "00000000-0000-0000-0000-000000000001",
        "seq": 2,
        "charger_id": "CP-01",
        "transaction_id": "7",
        "id_tag": "TAG",
        "state": "stopped",
        "started_utc": "2026-11-22T16:00:00Z",
        "stopped_utc": "2026-11-22T16:20:00Z",
        "meter_start_wh": 100,
        "meter_stop_wh": 400,
        "last_sample_utc": "2026-11-22T16:20:00Z",
        "last_register_wh": 400,
        "energy_wh": 300,
        "periods": [
            {"start_utc": "2026-11-22T16:00:00Z", "energy_wh": 225},
            {"start_utc": "2026-11-22T16:15:00Z", "energy_wh": 75},
        ],
        "stop_reason": "Local",
        "stop_source": "charger",
    }
    db.execute(
        "INSERT INTO sessions VALUES (?, 'CP-01', '7', 'TAG', '2026-11-22T16:00:00.000000Z', "
        "'2026-11-22T16:20:00.000000Z', 100, 400, 300, 'Local', 2, ?)",
        (record["session_id"], json.dumps(record)),
    )
    db.execute(
        "INSERT INTO outbox (msg_id, kind, payload, created_utc) VALUES ('m1', 'session', '{}', "
        "'2026-11-22T16:20:00.000000Z')"
    )
    db.close()


async def test_migrates_an_older_schema_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    _make_v1(path)
    async with await Ledger.open(path) as ledger:
        assert await ledger.user_version() == SCHEMA_VERSION
        (session,) = await ledger.list_sessions()
        assert (session.transaction_id, session.energy_wh, session.version) == ("7", 300, 2)
        assert [r.msg_id for r in await ledger.pending()] == ["m1"]
        # The tables the later migrations added work.
        ids = OcppTransactionIds(ledger)
        assert await ids.id_for_start("CP-01", "TAG", 400.0, T0) == 1
        assert await ledger.command_result("nope") is None


async def test_a_newer_schema_than_the_software_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(LedgerError, match="newer than this software"):
        await Ledger.open(path)


async def test_each_session_change_writes_one_outbox_row_in_the_same_transaction(tmp_path: Path) -> None:
    clock = FixedClock(T0 + timedelta(hours=1))
    async with await Ledger.open(tmp_path / "l.sqlite") as ledger:
        recorder = SessionRecorder(ledger, clock, new_session_id=sequential_ids())
        await recorder.handle(start("1", 0, 1000))
        await recorder.handle(sample("1", 20, 1500))
        await recorder.handle(sample("1", 10, 1200))  # stale: no change, no message
        await recorder.handle(stop("1", 30, 1800))
        rows = await ledger.pending()
        assert [r.kind for r in rows] == [OutboxKind.SESSION] * 3
        payloads = [json.loads(r.payload) for r in rows]
        assert [p["seq"] for p in payloads] == [1, 2, 3]
        assert {p["schema"] for p in payloads} == {SESSION_SCHEMA}
        assert [p["msg_id"] for p in payloads] == [r.msg_id for r in rows]
        assert payloads[-1]["session_id"] == "00000000-0000-0000-0000-000000000001"
        assert payloads[-1]["energy_wh"] == 800
        assert payloads[-1]["created_utc"] == "2026-11-22T17:00:00Z"
        assert sum(p["energy_wh"] for p in payloads[-1]["periods"]) == 800
        assert recorder.counters["stale_sample"] == 1  # type: ignore[index]


async def test_a_failed_transaction_leaves_neither_session_nor_outbox_row(tmp_path: Path) -> None:
    async with await Ledger.open(tmp_path / "l.sqlite") as ledger:
        recorder = SessionRecorder(ledger, SystemClock())
        await recorder.handle(start("1", 0, 1000))

        def boom() -> object:
            raise RuntimeError("disk on fire")

        failing = SessionRecorder(ledger, SystemClock(), new_msg_id=boom)  # type: ignore[arg-type]
        with pytest.raises(RuntimeError, match="disk on fire"):
            await failing.handle(start("2", 0, 5000, charger="CP-02"))
        assert [s.transaction_id for s in await ledger.list_sessions()] == ["1"]
        assert await ledger.backlog() == 1


async def test_outbox_is_acknowledged_not_deleted_and_pruned_by_age(tmp_path: Path) -> None:
    async with await Ledger.open(tmp_path / "l.sqlite") as ledger:
        recorder = SessionRecorder(ledger, SystemClock())
        await recorder.handle_many([start(str(n), n, 0, charger=f"CP-{n}") for n in range(5)])
        rows = await ledger.pending()
        assert len(rows) == 5
        assert await ledger.backlog() == 5
        now = datetime.now(UTC)
        # Unacknowledged rows survive any pruning.
        assert await ledger.prune_acked(now + timedelta(days=365)) == 0
        assert await ledger.ack([rows[1].msg_id, rows[3].msg_id, "unknown"], now) == 2
        assert await ledger.ack([rows[1].msg_id], now) == 0  # already acknowledged
        assert [r.id for r in await ledger.pending()] == [rows[0].id, rows[2].id, rows[4].id]
        assert [r.id for r in await ledger.pending(after_id=rows[2].id)] == [rows[4].id]
        assert await ledger.prune_acked(now) == 0  # acknowledged, but not old enough
        assert await ledger.prune_acked(now + timedelta(seconds=1)) == 2
        assert await ledger.backlog() == 3


async def test_outbox_listeners_are_called_after_commit(tmp_path: Path) -> None:
    async with await Ledger.open(tmp_path / "l.sqlite") as ledger:
        calls: list[int] = []
        unsubscribe = ledger.on_outbox_rows(lambda: calls.append(1))
        await ledger.add_event("e1", {"schema": "x"}, T0)
        assert calls == [1]
        assert await ledger.ack(["nothing"], T0) == 0  # no outbox rows added: no call
        assert calls == [1]
        unsubscribe()
        await ledger.add_event("e2", {"schema": "x"}, T0)
        assert calls == [1]
        assert [r.kind for r in await ledger.pending()] == [OutboxKind.EVENT] * 2


async def test_sessions_query_since(tmp_path: Path) -> None:
    async with await Ledger.open(tmp_path / "l.sqlite") as ledger:
        recorder = SessionRecorder(ledger, SystemClock(), new_session_id=sequential_ids())
        await recorder.handle_many(
            [
                start("1", 0, 0),
                stop("1", 30, 1000),
                start("2", 24 * 60, 1000),
                stop("2", 24 * 60 + 30, 3000),
                start("3", 2 * 24 * 60, 3000),
            ]
        )
        assert [s.transaction_id for s in await ledger.list_sessions()] == ["1", "2", "3"]
        assert [s.transaction_id for s in await ledger.list_sessions(since=at(24 * 60))] == ["2", "3"]
        assert [s.transaction_id for s in await ledger.list_sessions(since=at(20))] == ["1", "2", "3"]
        assert [s.transaction_id for s in await ledger.list_sessions(until=at(60))] == ["1"]
        assert [s.transaction_id for s in await ledger.open_sessions()] == ["3"]
        sessions = await ledger.list_sessions()
    csv_text = format_csv(sessions)
    lines = csv_text.splitlines()
    assert lines[0].startswith("session_id,charger_id,transaction_id")
    assert lines[1].split(",")[4:10] == [
        "2026-11-22T16:00:00Z",
        "2026-11-22T16:30:00Z",
        "0",
        "1000",
        "1000",
        "EVDisconnected",
    ]
    assert lines[3].split(",")[5] == ""  # still running: no stop time
    objects = [json.loads(line) for line in format_json_lines(sessions).splitlines()]
    assert [o["energy_wh"] for o in objects] == [1000, 2000, 0]
    assert objects[0]["periods"] == [
        {"start_utc": "2026-11-22T16:00:00Z", "energy_wh": 500},
        {"start_utc": "2026-11-22T16:15:00Z", "energy_wh": 500},
    ]


def test_since_is_local_midnight_for_a_date() -> None:
    assert parse_since("2026-11-01") == datetime(2026, 10, 31, 23, 0, tzinfo=UTC)
    assert parse_since("2026-07-01") == datetime(2026, 6, 30, 22, 0, tzinfo=UTC)
    assert parse_since("2026-07-01T12:00:00Z") == datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert parse_since("2026-07-01T12:00") == datetime(2026, 7, 1, 10, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a date"):
        parse_since("yesterday")


async def test_transaction_ids_are_stable_for_a_start_and_new_for_new_starts(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    async with await Ledger.open(path) as ledger:
        ids = OcppTransactionIds(ledger)
        first = await ids.id_for_start("CP-01", "TAG", 1000.0, T0)
        assert await ids.id_for_start("CP-01", "TAG", 1000.0, T0) == first
        second = await ids.id_for_start("CP-01", "TAG", 1000.0, T0 + timedelta(seconds=1))
        third = await ids.id_for_start("CP-02", None, 0.0, T0)
        assert len({first, second, third}) == 3
        assert await ids.stop(first, 1500.0, T0 + timedelta(minutes=5)) is True
        assert await ids.stop(first, 1500.0, T0 + timedelta(minutes=5)) is False
    async with await Ledger.open(path) as ledger:
        ids = OcppTransactionIds(ledger)
        # Survives a restart: the same start still has its id, a new one gets an unused one.
        assert await ids.id_for_start("CP-01", "TAG", 1000.0, T0) == first
        assert await ids.stop(first, 1500.0, T0 + timedelta(minutes=5)) is False
        fourth = await ids.id_for_start("CP-03", "X", 1.0, T0)
        assert fourth not in {first, second, third}
        # A stop for an id never handed out is reported once, and its id is never handed out later.
        assert await ids.stop(fourth + 10, 10.0, T0) is True
        assert await ids.stop(fourth + 10, 10.0, T0) is False
        fifth = await ids.id_for_start("CP-03", "X", 2.0, T0)
        assert fifth > fourth + 10


async def test_command_results_and_audit(tmp_path: Path) -> None:
    async with await Ledger.open(tmp_path / "l.sqlite") as ledger:
        await ledger.record_command(
            received_utc=T0,
            name="site-limit",
            command_id="c1",
            status="accepted",
            reason=None,
            payload_excerpt="{}",
            result_json='{"status":"accepted"}',
        )
        await ledger.record_command(
            received_utc=T0,
            name="bogus",
            command_id=None,
            status="rejected",
            reason="unknown_command",
            payload_excerpt="x",
            result_json=None,
        )
        assert await ledger.command_result("c1") == '{"status":"accepted"}'
        audit = await ledger.command_audit()
        assert [a["status"] for a in audit] == ["rejected", "accepted"]


async def test_a_session_without_registers_is_stored_with_null_energy_never_0(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    _make_v1(path)  # migrated through every schema, with a stored session
    async with await Ledger.open(path) as ledger:
        recorder = SessionRecorder(ledger, FixedClock(T0))  # random ids: the stored one is ...0001
        await recorder.handle_many([start("bare", 0, None), stop("bare", 20, None)])
        rows = await ledger._fetchall(
            "SELECT meter_start_wh, meter_stop_wh, energy_wh FROM sessions WHERE transaction_id = 'bare'"
        )
        assert [tuple(r) for r in rows] == [(None, None, None)]
        payload = json.loads((await ledger.pending())[-1].payload)
        assert (payload["energy_wh"], payload["energy_status"]) == (None, "unknown")
        sessions = await ledger.list_sessions()
    assert [s.energy_wh for s in sessions] == [300, None]
    lines = format_csv(sessions).splitlines()
    assert lines[0].endswith(",energy_status,flags")
    assert lines[2].split(",")[6:9] == ["", "", ""]
    assert lines[2].split(",")[-2:] == ["unknown", "start_register_missing stop_register_missing"]
    assert lines[1].split(",")[-2:] == ["measured", ""]


@pytest.mark.parametrize("pending", [0, 1, 2, 3])
async def test_a_writer_cancelled_inside_a_transaction_leaves_the_ledger_usable(
    tmp_path: Path, pending: int
) -> None:
    # The daemon's session writer is cancelled at shutdown wherever it is, and the shutdown drain
    # then writes the events still queued. A cancel while BEGIN ran in the connection's thread left
    # that transaction open, so the drain failed ("cannot start a transaction within a transaction")
    # and the last charger events were lost (found by tests/hil). `pending` is how many loop turns
    # the writer gets before the cancel: it lands in BEGIN, in the body, or around the COMMIT.
    import asyncio

    async with await Ledger.open(tmp_path / "l.sqlite") as ledger:
        recorder = SessionRecorder(ledger, SystemClock())
        writer = asyncio.create_task(recorder.handle_many([start("1", 1, 1000, charger="CP-1")]))
        for _ in range(pending):
            await asyncio.sleep(0)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        await recorder.handle_many([start("2", 2, 2000, charger="CP-2")])
        chargers = sorted(s.charger_id for s in await ledger.list_sessions())
    assert chargers in (["CP-2"], ["CP-1", "CP-2"])
