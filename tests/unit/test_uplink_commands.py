"""Commands: validation into typed values, clamping, idempotency, expiry, audit; hostile input refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.sessions.ledger import Ledger
from controller.uplink.commands import (
    AuthListEntry,
    AuthListUpdate,
    ChargerAvailability,
    CommandProcessor,
    RemoteStart,
    RemoteStop,
    SiteCommand,
    SiteLimitChange,
)
from controller.uplink.topics import Topics
from drivers.clock import SystemClock
from drivers.contracts import CommandOutcome, CommandResult
from tests.support.uplink_harness import RecordingHandler, fast_config

NOW = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)


class FixedClock(SystemClock):
    def utc_now(self) -> datetime:
        return NOW


def cmd(command_id: str = "c-1", expires: datetime | None = None, **args: Any) -> bytes:
    expiry = (expires or NOW + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    return json.dumps(
        {"schema": "garage.cmd/1", "id": command_id, "expires_utc": expiry, "args": args}
    ).encode()


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    async with await Ledger.open(tmp_path / "l.sqlite") as opened:
        yield opened


def processor(ledger: Ledger, handler: Any, **config: Any) -> CommandProcessor:
    return CommandProcessor(
        handler, ledger, Topics("garage/v1", "test-site"), FixedClock(), fast_config("mqtt://h", **config)
    )


ENTRY = {"id_tag": "04A1B2C3", "kind": "resident", "status": "accepted"}

VALID: list[tuple[str, bytes, SiteCommand]] = [
    (
        "auth-list",
        cmd(
            list_version=3,
            update_type="full",
            entries=[
                ENTRY,
                {
                    **ENTRY,
                    "id_tag": "EV-9",
                    "kind": "ev_association",
                    "status": "blocked",
                    "expiry_utc": "2027-01-01T00:00:00Z",
                },
            ],
        ),
        AuthListUpdate(
            "c-1",
            3,
            "full",
            (
                AuthListEntry("04A1B2C3", "resident", "accepted", None),
                AuthListEntry("EV-9", "ev_association", "blocked", datetime(2027, 1, 1, tzinfo=UTC)),
            ),
        ),
    ),
    (
        "auth-list",
        cmd(list_version=4, update_type="differential", entries=[{"id_tag": "X1", "kind": "resident"}]),
        AuthListUpdate("c-1", 4, "differential", (AuthListEntry("X1", "resident", None, None),)),
    ),
    ("site-limit", cmd(fuse_id="main", limit_a=100), SiteLimitChange("c-1", "main", 100.0, 100.0, 125.0)),
    (
        "site-limit",
        cmd(fuse_id="board-1", limit_a=500.5),
        SiteLimitChange("c-1", "board-1", 80.0, 500.5, 80.0),
    ),
    ("site-limit", cmd(fuse_id="main", limit_a=None), SiteLimitChange("c-1", "main", 125.0, None, 125.0)),
    ("site-limit", cmd(fuse_id="main", limit_a=0), SiteLimitChange("c-1", "main", 0.0, 0.0, 125.0)),
    ("remote-start", cmd(charger_id="CP-01", id_tag="AB12"), RemoteStart("c-1", "CP-01", "AB12")),
    ("remote-stop", cmd(charger_id="CP-02"), RemoteStop("c-1", "CP-02")),
    (
        "charger-availability",
        cmd(charger_id="CP-01", available=False),
        ChargerAvailability("c-1", "CP-01", False),
    ),
]


@pytest.mark.parametrize(
    ("name", "payload", "expected"), VALID, ids=[f"{v[0]}-{i}" for i, v in enumerate(VALID)]
)
async def test_valid_commands_become_typed_values(
    ledger: Ledger, name: str, payload: bytes, expected: SiteCommand
) -> None:
    handler = RecordingHandler()
    reply = await processor(ledger, handler).process(name, payload)
    assert (reply.status, reply.reason) == ("accepted", None)
    assert handler.commands == [expected]


def test_clamping_is_visible_on_the_value() -> None:
    assert SiteLimitChange("c", "main", 80.0, 500.0, 80.0).clamped
    assert not SiteLimitChange("c", "main", 60.0, 60.0, 80.0).clamped
    assert not SiteLimitChange("c", "main", 80.0, None, 80.0).clamped


HOSTILE: list[tuple[str, str, bytes, str]] = [
    ("unknown command", "firmware-update", cmd(), "unknown_command"),
    ("not JSON", "remote-stop", b"{nope", "invalid"),
    ("not UTF-8", "remote-stop", b"\xff\xfe\xfd", "invalid"),
    ("a JSON array", "remote-stop", b"[1, 2]", "invalid"),
    ("deeply nested", "remote-stop", b"[" * 100_000 + b"]" * 100_000, "invalid"),
    ("too large", "auth-list", b" " * 2_000_001, "too_large"),
    (
        "wrong schema",
        "remote-stop",
        cmd(charger_id="CP-01").replace(b"garage.cmd/1", b"garage.cmd/9"),
        "invalid",
    ),
    (
        "no expiry",
        "remote-stop",
        json.dumps({"schema": "garage.cmd/1", "id": "c-1", "args": {}}).encode(),
        "invalid",
    ),
    ("naive expiry", "remote-stop", cmd(charger_id="CP-01").replace(b'Z"', b'"'), "invalid"),
    ("expired", "remote-stop", cmd(charger_id="CP-01", expires=NOW - timedelta(seconds=1)), "expired"),
    ("bad id", "remote-stop", cmd("id with spaces", charger_id="CP-01"), "invalid"),
    ("extra field", "remote-stop", cmd(charger_id="CP-01", force=True), "invalid"),
    ("string for a bool", "charger-availability", cmd(charger_id="CP-01", available="false"), "invalid"),
    ("string for a number", "site-limit", cmd(fuse_id="main", limit_a="80"), "invalid"),
    ("negative limit", "site-limit", cmd(fuse_id="main", limit_a=-1), "invalid"),
    ("infinite limit", "site-limit", cmd(fuse_id="main", limit_a=1e400), "invalid"),
    ("unknown fuse", "site-limit", cmd(fuse_id="board-9", limit_a=10), "unknown_fuse"),
    ("unknown charger", "remote-stop", cmd(charger_id="CP-77"), "unknown_charger"),
    ("control chars in a tag", "remote-start", cmd(charger_id="CP-01", id_tag="A\nB"), "invalid"),
    ("tag too long", "remote-start", cmd(charger_id="CP-01", id_tag="A" * 37), "invalid"),
    (
        "full list without status",
        "auth-list",
        cmd(list_version=1, update_type="full", entries=[{"id_tag": "A", "kind": "resident"}]),
        "invalid",
    ),
    (
        "duplicate tags",
        "auth-list",
        cmd(list_version=1, update_type="full", entries=[ENTRY, ENTRY]),
        "invalid",
    ),
    ("list version 0", "auth-list", cmd(list_version=0, update_type="full", entries=[]), "invalid"),
    (
        "unknown tag kind",
        "auth-list",
        cmd(list_version=1, update_type="full", entries=[{**ENTRY, "kind": "admin"}]),
        "invalid",
    ),
    (
        "too many entries",
        "auth-list",
        cmd(
            list_version=1, update_type="full", entries=[{**ENTRY, "id_tag": f"T{i}"} for i in range(20_001)]
        ),
        "invalid",
    ),
]


@pytest.mark.parametrize(("name", "payload", "reason"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
async def test_bad_commands_are_refused_with_a_reason_and_change_nothing(
    ledger: Ledger, name: str, payload: bytes, reason: str
) -> None:
    handler = RecordingHandler()
    proc = processor(ledger, handler, max_command_bytes=2_000_000)
    reply = await proc.process(name, payload)
    assert (reply.status, reply.reason) == ("rejected", reason)
    assert reply.detail
    assert handler.commands == []
    (audit,) = await ledger.command_audit()
    assert (audit["status"], audit["reason"]) == ("rejected", reason)
    assert proc.counters == {f"rejected:{reason}": 1}


async def test_a_command_id_seen_before_returns_the_stored_result(ledger: Ledger) -> None:
    handler = RecordingHandler()
    proc = processor(ledger, handler)
    first = await proc.process("site-limit", cmd("L-1", fuse_id="main", limit_a=90))
    again = await proc.process("site-limit", cmd("L-1", fuse_id="main", limit_a=10))
    assert first == again
    assert len(handler.commands) == 1
    # Also after a restart: the result is in the ledger, not in memory.
    fresh = processor(ledger, RecordingHandler())
    assert await fresh.process("site-limit", cmd("L-1", fuse_id="main", limit_a=10)) == first
    # A rejected command keeps its answer too: the same id is not re-judged.
    late = await proc.process("remote-stop", cmd("S-1", charger_id="CP-01", expires=NOW - timedelta(hours=1)))
    retry = await proc.process("remote-stop", cmd("S-1", charger_id="CP-01"))
    assert (late.reason, retry.reason) == ("expired", "expired")
    assert [a["status"] for a in await ledger.command_audit()] == [
        "replayed",
        "rejected",
        "replayed",
        "replayed",
        "accepted",
    ]


class FailingHandler:
    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour

    async def handle(self, cmd: SiteCommand) -> CommandResult:
        if self.behaviour == "raise":
            raise RuntimeError("bug")
        if self.behaviour == "hang":
            await asyncio.sleep(3600)
        return CommandResult(CommandOutcome(self.behaviour), "charger says no")


@pytest.mark.parametrize(
    ("behaviour", "status", "reason"),
    [
        ("raise", "failed", "handler_error"),
        ("hang", "failed", "timeout"),
        ("offline", "failed", "offline"),
        ("rejected", "rejected", "rejected"),
        ("not_supported", "rejected", "not_supported"),
    ],
)
async def test_handler_failures_are_answered_not_raised(
    ledger: Ledger, behaviour: str, status: str, reason: str
) -> None:
    proc = processor(ledger, FailingHandler(behaviour), command_timeout_s=0.05)
    reply = await proc.process("remote-stop", cmd(charger_id="CP-01"))
    assert (reply.status, reply.reason) == (status, reason)


async def test_replies_carry_the_result_schema(ledger: Ledger) -> None:
    reply = await processor(ledger, RecordingHandler()).process(
        "site-limit", cmd(fuse_id="main", limit_a=200)
    )
    payload = reply.payload(NOW)
    assert payload["schema"] == "garage.cmd-result/1"
    assert payload["result"] == {"applied_limit_a": 125.0, "rating_a": 125.0, "clamped": True}
    assert payload["processed_utc"] == "2026-11-22T17:00:00Z"


async def test_a_full_queue_refuses_as_busy(ledger: Ledger) -> None:
    proc = processor(ledger, RecordingHandler(), command_queue=2)
    for n in range(3):
        proc.submit("remote-stop", cmd(f"q-{n}", charger_id="CP-01"))
    assert proc.counters == {"busy": 1}
