"""The session state machine, table-driven: events in, final sessions and outcomes out."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime

import pytest

from controller.sessions.machine import Outcome, apply
from controller.sessions.model import (
    EnergyStatus,
    InferredStop,
    Session,
    SessionFlag,
    StopSource,
    session_from_json,
    session_to_json,
)
from drivers.contracts import ChargerEvent, ConnectorState
from tests.support.charger_events import at, charging, idle, sample, sequential_ids, start, stop
from tests.support.session_book import MemoryBook


@dataclass(frozen=True)
class Expect:
    """What one session looks like at the end: None fields are not checked."""

    transaction_id: str
    active: bool
    energy_wh: int | None
    version: int
    stop_reason: str | None = None
    periods: dict[float, int] | None = None  # minutes after T0 → Wh
    charger_id: str = "CP-01"
    status: EnergyStatus | None = None
    flags: tuple[SessionFlag, ...] | None = None


MEASURED, PARTIAL, UNKNOWN = EnergyStatus.MEASURED, EnergyStatus.PARTIAL, EnergyStatus.UNKNOWN

CASES: list[tuple[str, list[ChargerEvent], Outcome, list[Expect]]] = [
    ("start opens a session", [start("1", 0, 1000)], Outcome.STARTED, [Expect("1", True, 0, 1)]),
    (
        "start, samples, stop",
        [start("1", 10, 1000), sample("1", 20, 1600), stop("1", 40, 3100)],
        Outcome.STOPPED,
        # 10→20: 600 Wh (5 min in 16:00, 5 min in 16:15); 20→40: 1500 Wh over 16:15 (10 min), 16:30 (10 min).
        [
            Expect(
                "1",
                False,
                2100,
                3,
                "EVDisconnected",
                {0: 300, 15: 300 + 750, 30: 750},
                status=MEASURED,
                flags=(),
            )
        ],
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
        "a stop with a register below the last sample stops at the last good register",
        [start("1", 0, 1000), sample("1", 10, 1200), stop("1", 20, 1100, reason="PowerLoss")],
        Outcome.REGISTER_BACKWARDS,
        [
            Expect(
                "1", False, 200, 3, "PowerLoss", status=PARTIAL, flags=(SessionFlag.STOP_REGISTER_BACKWARDS,)
            )
        ],
    ),
    (
        "a stop register below the start register is rejected, not negative energy",
        [start("1", 0, 1000), sample("1", 10, 1200), stop("1", 20, 50, reason="PowerLoss")],
        Outcome.STOP_BELOW_START,
        [
            Expect(
                "1",
                False,
                200,
                3,
                "PowerLoss",
                status=PARTIAL,
                flags=(SessionFlag.STOP_REGISTER_BELOW_START,),
            )
        ],
    ),
    (
        "a stop register below the start with no sample in between leaves the energy unknown",
        [start("1", 0, 1000), stop("1", 20, 50)],
        Outcome.ENERGY_UNKNOWN,
        [Expect("1", False, None, 2, status=UNKNOWN, flags=(SessionFlag.STOP_REGISTER_BELOW_START,))],
    ),
    (
        "a bare start takes the first sample as its start register",
        [start("1", 0, None), sample("1", 10, 1_234_567), sample("1", 20, 1_235_067)],
        Outcome.SAMPLE_APPLIED,
        [Expect("1", True, 500, 3, periods={0: 250, 15: 250}, flags=(SessionFlag.START_REGISTER_MISSING,))],
    ),
    (
        "a bare start and a bare stop: the energy between the first and the last sample",
        [start("1", 0, None), sample("1", 10, 1_234_567), sample("1", 20, 1_235_067), stop("1", 25, None)],
        Outcome.STOPPED,
        [
            Expect(
                "1",
                False,
                500,
                4,
                status=PARTIAL,
                flags=(SessionFlag.START_REGISTER_MISSING, SessionFlag.STOP_REGISTER_MISSING),
            )
        ],
    ),
    (
        "a bare start, samples and a stop register",
        [start("1", 0, None), sample("1", 10, 1_234_567), stop("1", 40, 1_236_067)],
        Outcome.STOPPED,
        [Expect("1", False, 1500, 3, status=PARTIAL, flags=(SessionFlag.START_REGISTER_MISSING,))],
    ),
    (
        "a start register and a bare stop: the energy up to the last sample",
        [start("1", 0, 1000), sample("1", 10, 1600), stop("1", 20, None)],
        Outcome.STOPPED,
        [Expect("1", False, 600, 3, status=PARTIAL, flags=(SessionFlag.STOP_REGISTER_MISSING,))],
    ),
    (
        "a start register, no sample, a bare stop: unknown, not 0",
        [start("1", 0, 1000), stop("1", 20, None)],
        Outcome.ENERGY_UNKNOWN,
        [Expect("1", False, None, 2, status=UNKNOWN, flags=(SessionFlag.STOP_REGISTER_MISSING,))],
    ),
    (
        "a bare start and only a stop register: unknown",
        [start("1", 0, None), stop("1", 20, 1_234_567)],
        Outcome.ENERGY_UNKNOWN,
        [Expect("1", False, None, 2, status=UNKNOWN, flags=(SessionFlag.START_REGISTER_MISSING,))],
    ),
    (
        "a bare start whose only register comes with the stop (2.0.1 Ended: sample, then stop)",
        [start("1", 0, None), sample("1", 20, 1_234_567), stop("1", 20, 1_234_567)],
        Outcome.ENERGY_UNKNOWN,
        [Expect("1", False, None, 3, status=UNKNOWN)],
    ),
    (
        "no register at all",
        [start("1", 0, None), stop("1", 20, None)],
        Outcome.ENERGY_UNKNOWN,
        [Expect("1", False, None, 2, status=UNKNOWN)],
    ),
    (
        "a bare start replayed after its first sample is still the same start",
        [start("1", 0, None), sample("1", 10, 1_234_567), start("1", 0, None)],
        Outcome.DUPLICATE_START,
        [Expect("1", True, 0, 2)],
    ),
    (
        "a sample older than a bare start is not its start register",
        [start("1", 10, None), sample("1", 5, 1_234_000), sample("1", 12, 1_234_567)],
        Outcome.SAMPLE_APPLIED,
        [Expect("1", True, 0, 2)],
    ),
    (
        "an inferred stop without any sample after the start register: unknown",
        [start("1", 0, 1000), idle(30)],
        Outcome.TRANSACTION_LOST,
        [Expect("1", False, None, 2, InferredStop.TRANSACTION_LOST.value, status=UNKNOWN)],
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
        [Expect("1", False, 400, 3, InferredStop.TRANSACTION_LOST.value, status=PARTIAL)],
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
        "a charger that has reported nothing yet has lost nothing",
        [start("1", 0, 1000), sample("1", 10, 1400), idle(30, state=ConnectorState.UNKNOWN)],
        Outcome.NO_CHANGE,
        [Expect("1", True, 400, 2)],
    ),
    (
        "a reading of a transaction inferred lost opens its session again",
        [start("1", 0, 1000), sample("1", 10, 1400), idle(30), sample("1", 40, 2400)],
        Outcome.REOPENED,
        [
            Expect(
                "1",
                True,
                1400,
                4,
                None,
                {0: 567, 15: 500, 30: 333},
                status=MEASURED,
                flags=(SessionFlag.REOPENED,),
            )
        ],
    ),
    (
        "and it ends with its real stop",
        [start("1", 0, 1000), idle(30), sample("1", 40, 2400), stop("1", 50, 2600)],
        Outcome.STOPPED,
        [Expect("1", False, 1600, 4, "EVDisconnected", status=MEASURED, flags=(SessionFlag.REOPENED,))],
    ),
    (
        "a late reading from before the inferred stop is its energy; the session stays stopped",
        [start("1", 0, 1000), sample("1", 10, 1400), idle(30), sample("1", 20, 1700)],
        Outcome.SAMPLE_APPLIED,
        [
            Expect(
                "1",
                False,
                700,
                4,
                InferredStop.TRANSACTION_LOST.value,
                {0: 550, 15: 150},
                status=PARTIAL,
                flags=(),
            )
        ],
    ),
    (
        "a reading of a lost transaction reopens nothing while another session is open there",
        [start("1", 0, 1000), idle(30), start("2", 35, 5000), sample("1", 40, 2400)],
        Outcome.SAMPLE_AFTER_STOP,
        [Expect("1", False, None, 2), Expect("2", True, 0, 1)],
    ),
    (
        "a superseded session is not opened again",
        [
            start("1", 0, 1000),
            sample("1", 10, 1100),
            start("2", 30, 1200),
            stop("2", 35, 1300),
            sample("1", 40, 1500),
        ],
        Outcome.SAMPLE_AFTER_STOP,
        [Expect("1", False, 100, 3, InferredStop.SUPERSEDED.value), Expect("2", False, 100, 2)],
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
        assert_periods_add_up(session)
        if want.stop_reason is not None:
            assert session.stop_reason == want.stop_reason
        if want.periods is not None:
            assert {(p.start_utc - at(0)).total_seconds() / 60: p.energy_wh for p in session.periods} == (
                want.periods
            )
        if want.status is not None:
            assert session.energy_status is want.status
        if want.flags is not None:
            assert session.flags == want.flags
        if not session.active and session.energy_wh is not None:
            assert session.meter_stop_wh == session.last_register_wh


def assert_periods_add_up(session: Session) -> None:
    """Periods sum to the energy; an unknown energy has no periods (and is never reported as 0)."""
    if session.energy_wh is None:
        assert session.periods == ()
        assert session.energy_status is EnergyStatus.UNKNOWN
    else:
        assert sum(p.energy_wh for p in session.periods) == session.energy_wh
        assert session.energy_wh >= 0


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


def test_the_billing_disaster_cannot_happen() -> None:
    # A 2.0.1 Started without a register, then samples of a register that has run for years. Taking
    # 0 as the start register would bill 1.2 MWh; the session is the energy between the samples.
    book = MemoryBook(sequential_ids())
    book.feed_all(
        [
            start("1", 0, None),
            sample("1", 1, 1_234_567),
            sample("1", 16, 1_239_067),
            sample("1", 31, 1_243_567),
            stop("1", 32, None),
        ]
    )
    (session,) = book.final()
    assert (session.meter_start_wh, session.meter_stop_wh, session.energy_wh) == (1_234_567, 1_243_567, 9000)
    assert session.meter_start_utc == at(1)
    assert session.energy_status is EnergyStatus.PARTIAL
    assert sum(p.energy_wh for p in session.periods) == 9000
    assert book.outcomes[Outcome.START_REGISTER_FROM_SAMPLE] == 1


def test_the_session_message_of_an_unknown_energy_says_so() -> None:
    book = MemoryBook(sequential_ids())
    book.feed_all([start("1", 0, None), stop("1", 20, None, reason="EVDisconnected")])
    (session,) = book.final()
    message = session_to_json(session)
    assert message["energy_wh"] is None
    assert message["meter_start_wh"] is None
    assert message["meter_stop_wh"] is None
    assert message["energy_status"] == "unknown"
    assert message["flags"] == ["start_register_missing", "stop_register_missing"]
    assert message["periods"] == []
    assert session_from_json(message) == session


def test_a_schema_1_record_reads_as_a_measured_session() -> None:
    book = MemoryBook(sequential_ids())
    book.feed_all([start("1", 0, 1000), sample("1", 10, 1400), stop("1", 20, 1500)])
    (session,) = book.final()
    old = session_to_json(session)
    for key in ("meter_start_utc", "flags", "energy_status"):
        del old[key]
    assert session_from_json(old) == session
