"""The session state machine, table-driven: events in, final sessions and outcomes out."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime

import pytest

from controller.sessions.machine import Outcome, apply
from controller.sessions.model import InferredStop, Session, StopSource
from drivers.contracts import ChargerEvent
from tests.support.charger_events import at, charging, idle, sample, sequential_ids, start, stop
from tests.support.session_book import MemoryBook


@dataclass(frozen=True)
class Expect:
    """What one session looks like at the end: None fields are not checked."""

    transaction_id: str
    active: bool
    energy_wh: int
    version: int
    stop_reason: str | None = None
    periods: dict[float, int] | None = None  # minutes after T0 → Wh
    charger_id: str = "CP-01"


CASES: list[tuple[str, list[ChargerEvent], Outcome, list[Expect]]] = [
    ("start opens a session", [start("1", 0, 1000)], Outcome.STARTED, [Expect("1", True, 0, 1)]),
    (
        "start, samples, stop",
        [start("1", 10, 1000), sample("1", 20, 1600), stop("1", 40, 3100)],
        Outcome.STOPPED,
        # 10→20: 600 Wh (5 min in 16:00, 5 min in 16:15); 20→40: 1500 Wh over 16:15 (10 min), 16:30 (10 min).
        [Expect("1", False, 2100, 3, "EVDisconnected", {0: 300, 15: 300 + 750, 30: 750})],
    ),
    (
        "the same start twice",
        [start("1", 0, 1000), start("1", 0, 1000)],
        Outcome.DUPLICATE_START,
        [Expect("1", True, 0, 1)],
    ),
    (
        "a stop replayed",
        [start("1", 0, 1000), stop("1", 10, 1500), stop("1", 10, 1500)],
        Outcome.DUPLICATE_STOP,
        [Expect("1", False, 500, 2, "EVDisconnected")],
    ),
    (
        "a sample older than the last",
        [start("1", 0, 1000), sample("1", 10, 1200), sample("1", 5, 1100)],
        Outcome.STALE_SAMPLE,
        [Expect("1", True, 200, 2, periods={0: 200})],
    ),
    (
        "the same sample twice",
        [start("1", 0, 1000), sample("1", 10, 1200), sample("1", 10, 1200)],
        Outcome.STALE_SAMPLE,
        [Expect("1", True, 200, 2)],
    ),
    (
        "a register going backwards is not applied",
        [start("1", 0, 1000), sample("1", 10, 1200), sample("1", 12, 900)],
        Outcome.REGISTER_BACKWARDS,
        [Expect("1", True, 200, 2)],
    ),
    (
        "after a backwards register the next good sample counts from the last good one",
        [start("1", 0, 1000), sample("1", 10, 1200), sample("1", 12, 900), sample("1", 20, 1500)],
        Outcome.SAMPLE_APPLIED,
        [Expect("1", True, 500, 3, periods={0: 200 + 150, 15: 150})],
    ),
    (
        "a stop with a backwards register stops at the last good register",
        [start("1", 0, 1000), sample("1", 10, 1200), stop("1", 20, 50, reason="PowerLoss")],
        Outcome.STOPPED,
        [Expect("1", False, 200, 3, "PowerLoss")],
    ),
    ("a sample with no session", [sample("1", 5, 100)], Outcome.SAMPLE_WITHOUT_SESSION, []),
    (
        "a sample after the stop",
        [start("1", 0, 1000), stop("1", 10, 1500), sample("1", 12, 1600)],
        Outcome.SAMPLE_AFTER_STOP,
        [Expect("1", False, 500, 2)],
    ),
    ("a stop for an unknown transaction", [stop("9", 10, 1500)], Outcome.UNKNOWN_STOP, []),
    (
        "a sample without a transaction id goes to the open session",
        [start("1", 0, 1000), sample(None, 10, 1300)],
        Outcome.SAMPLE_APPLIED,
        [Expect("1", True, 300, 2)],
    ),
    (
        "an idle charger without a transaction lost it",
        [start("1", 0, 1000), sample("1", 10, 1400), idle(30)],
        Outcome.TRANSACTION_LOST,
        [Expect("1", False, 400, 3, InferredStop.TRANSACTION_LOST.value)],
    ),
    (
        "a late real stop completes an inferred one once",
        [start("1", 0, 1000), sample("1", 10, 1400), idle(30), stop("1", 20, 1600, reason="Reboot")],
        Outcome.INFERRED_STOP_COMPLETED,
        [Expect("1", False, 600, 4, "Reboot", {0: 400 + 100, 15: 100})],
    ),
    (
        "and a replay of that stop changes nothing",
        [start("1", 0, 1000), idle(30), stop("1", 20, 1600, reason="Reboot"), stop("1", 20, 1600)],
        Outcome.DUPLICATE_STOP,
        [Expect("1", False, 600, 3, "Reboot")],
    ),
    (
        "a charging status changes nothing",
        [start("1", 0, 1000), charging(5, "1")],
        Outcome.NO_CHANGE,
        [Expect("1", True, 0, 1)],
    ),
    (
        "an offline charger does not lose its transaction",
        [start("1", 0, 1000), idle(5, online=False)],
        Outcome.NO_CHANGE,
        [Expect("1", True, 0, 1)],
    ),
    (
        "a new start on the same charger supersedes the open session",
        [start("1", 0, 1000), sample("1", 10, 1100), start("2", 30, 1200)],
        Outcome.STARTED,
        [Expect("1", False, 100, 3, InferredStop.SUPERSEDED.value), Expect("2", True, 0, 1)],
    ),
    (
        "a reused transaction id with another start is a new session",
        [start("1", 0, 1000), stop("1", 10, 1500), start("1", 60, 2000), stop("1", 70, 2100)],
        Outcome.STOPPED,
        [Expect("1", False, 500, 2), Expect("1", False, 100, 2)],
    ),
    (
        "chargers are independent",
        [
            start("1", 0, 1000, charger="A"),
            start("1", 0, 5000, charger="B"),
            stop("1", 10, 1100, charger="A"),
        ],
        Outcome.STOPPED,
        [Expect("1", False, 100, 2, charger_id="A"), Expect("1", True, 0, 1, charger_id="B")],
    ),
    (
        "a NaN register is a bad event",
        [start("1", 0, 1000), sample("1", 10, math.nan)],
        Outcome.BAD_EVENT,
        [Expect("1", True, 0, 1)],
    ),
    (
        "a negative start register is a bad event",
        [start("1", 0, -5)],
        Outcome.BAD_EVENT,
        [],
    ),
]


@pytest.mark.parametrize(
    ("events", "last_outcome", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_state_machine(events: list[ChargerEvent], last_outcome: Outcome, expected: list[Expect]) -> None:
    book = MemoryBook(sequential_ids())
    steps = [book.feed(e) for e in events]
    assert last_outcome in steps[-1].outcomes
    final = book.final()
    assert len(final) == len(expected)
    for session, want in zip(final, expected, strict=True):
        assert session.transaction_id == want.transaction_id
        assert session.charger_id == want.charger_id
        assert session.active is want.active
        assert session.energy_wh == want.energy_wh
        assert session.version == want.version
        assert sum(p.energy_wh for p in session.periods) == session.energy_wh
        if want.stop_reason is not None:
            assert session.stop_reason == want.stop_reason
        if want.periods is not None:
            assert {(p.start_utc - at(0)).total_seconds() / 60: p.energy_wh for p in session.periods} == (
                want.periods
            )
        if not session.active:
            assert session.meter_stop_wh == session.last_register_wh


def test_registers_are_rounded_to_whole_watt_hours() -> None:
    book = MemoryBook(sequential_ids())
    book.feed(start("1", 0, 1000.5))
    book.feed(stop("1", 10, 1500.49))
    (session,) = book.final()
    assert (session.meter_start_wh, session.meter_stop_wh, session.energy_wh) == (1001, 1500, 499)


def test_session_ids_come_from_the_injected_generator() -> None:
    book = MemoryBook(sequential_ids())
    book.feed(start("1", 0, 0))
    book.feed(start("2", 0, 0, charger="B"))
    assert [s.session_id.int for s in book.final()] == [1, 2]


def test_inferred_stop_records_the_status_time_and_the_source() -> None:
    book = MemoryBook(sequential_ids())
    book.feed_all([start("1", 0, 1000), sample("1", 10, 1400), idle(30)])
    (session,) = book.final()
    assert session.stop_source is StopSource.INFERRED
    assert session.stopped_utc == at(30)
    assert session.meter_stop_wh == 1400


def test_a_naive_timestamp_is_a_bad_event_not_a_crash() -> None:
    event = replace(start("1", 0, 1000), started_utc=datetime(2026, 1, 1))
    step = apply(event, by_transaction=None, open_on_charger=None, new_id=sequential_ids())
    assert step.outcomes == (Outcome.BAD_EVENT,)
    assert step.changes == ()
    assert "timezone" in step.detail


def test_changes_are_new_values_and_versions_grow_by_one() -> None:
    book = MemoryBook(sequential_ids())
    book.feed_all([start("1", 0, 1000), sample("1", 5, 1100), sample("1", 20, 1300), stop("1", 25, 1400)])
    versions = [s.version for s in book.history]
    assert versions == [1, 2, 3, 4]
    first: Session = book.history[0]
    assert first.active
    assert first.energy_wh == 0
