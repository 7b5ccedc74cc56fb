"""The session state machine: charger events in, new session versions out. Pure: no I/O, no clock.

The caller (controller.sessions.recorder) looks up the sessions an event can concern and passes
them in; `apply` returns the changed sessions (each with its version raised) and what happened, so
the same function drives the ledger, the table-driven tests and the replay property tests.

Idempotency rules (replays are normal: chargers resend unanswered messages, drivers replay after a
restart):
- a start the ledger already has (same charger, transaction id, start time and register) changes
  nothing; the same transaction id with another start is a charger reusing ids, so a new session;
- a stop for a session the charger already stopped changes nothing;
- a sample not newer than the last applied one is ignored and counted;
- a register lower than the last applied one is counted and not applied.

Registers the charger did not send (OCPP 2.0.1 Started/Ended may carry none) are None, never 0:
- a start without a register takes the first sample's register as its start (flagged);
- a stop without a register, or with one below the start or below the last reading (rejected,
  counted), takes the last reading as its stop (flagged); when there was no reading after the
  start register, the stop register and the energy are unknown (None);
- a session with no register at all has unknown energy. See docs/sessions.md.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from uuid import UUID
from zoneinfo import ZoneInfo

from drivers.contracts import (
    ChargerEvent,
    ChargerStatus,
    ConnectorState,
    EnergySample,
    TransactionStarted,
    TransactionStopped,
)

from .model import EnergyPeriod, InferredStop, Session, SessionFlag, StopSource
from .periods import DEFAULT_ZONE, merge_periods, split_energy


class Outcome(enum.StrEnum):
    STARTED = "started"
    SUPERSEDED = "superseded"  # an open session closed because a new transaction started
    DUPLICATE_START = "duplicate_start"
    SAMPLE_APPLIED = "sample_applied"
    START_REGISTER_FROM_SAMPLE = "start_register_from_sample"  # the first reading of a bare start
    STALE_SAMPLE = "stale_sample"
    REGISTER_BACKWARDS = "register_backwards"
    SAMPLE_WITHOUT_SESSION = "sample_without_session"
    SAMPLE_AFTER_STOP = "sample_after_stop"
    REOPENED = "reopened"  # a session inferred lost whose transaction the charger reports running
    STOPPED = "stopped"
    STOP_BELOW_START = "stop_below_start"  # a stop register below the start register, not used
    ENERGY_UNKNOWN = "energy_unknown"  # a session stopped without two register readings
    INFERRED_STOP_COMPLETED = "inferred_stop_completed"
    DUPLICATE_STOP = "duplicate_stop"
    UNKNOWN_STOP = "unknown_stop"
    TRANSACTION_LOST = "transaction_lost"
    NO_CHANGE = "no_change"
    BAD_EVENT = "bad_event"


@dataclass(frozen=True, slots=True)
class Step:
    changes: tuple[Session, ...]
    outcomes: tuple[Outcome, ...]
    detail: str = ""


_IDLE_STATES = frozenset({ConnectorState.AVAILABLE, ConnectorState.UNAVAILABLE, ConnectorState.FAULTED})


def register_wh(value: float) -> int | None:
    """A register reading as whole Wh (half up), or None when it is not a usable reading."""
    if not math.isfinite(value) or value < 0:
        return None
    return math.floor(value + 0.5)


def _utc(moment: datetime) -> datetime | None:
    return None if moment.tzinfo is None else moment.astimezone(UTC)


def _bad(detail: str) -> Step:
    return Step((), (Outcome.BAD_EVENT,), detail)


def _advance(session: Session, at: datetime, reg_wh: int, zone: ZoneInfo) -> Session:
    """The session with its energy carried from the last sample to (at, reg_wh); reg_wh ≥ last.

    A session without a known register yet takes (at, reg_wh) as its start reading.
    """
    if session.last_register_wh is None or session.meter_start_wh is None:
        return replace(
            session,
            meter_start_wh=reg_wh,
            meter_start_utc=at,
            last_sample_utc=max(at, session.last_sample_utc),
            last_register_wh=reg_wh,
        )
    added = split_energy(session.last_sample_utc, at, reg_wh - session.last_register_wh, zone)
    existing = {p.start_utc: p.energy_wh for p in session.periods}
    periods = tuple(EnergyPeriod(s, wh) for s, wh in merge_periods(existing, added))
    return replace(
        session,
        periods=periods,
        last_sample_utc=max(at, session.last_sample_utc),
        last_register_wh=reg_wh,
    )


def _last_reading_after_start(session: Session) -> int | None:
    """The newest register reading if it is a reading after the start register; else None (the
    start register alone does not measure anything)."""
    if session.meter_start_utc is None or session.last_sample_utc <= session.meter_start_utc:
        return None
    return session.last_register_wh


def _close_inferred(session: Session, at: datetime, reason: InferredStop) -> Session:
    return replace(
        session,
        stopped_utc=max(at, session.last_sample_utc),
        meter_stop_wh=_last_reading_after_start(session),
        stop_reason=reason.value,
        stop_source=StopSource.INFERRED,
        version=session.version + 1,
    )


def apply(
    event: ChargerEvent,
    *,
    by_transaction: Session | None,
    open_on_charger: Session | None,
    new_id: Callable[[], UUID],
    zone: ZoneInfo = DEFAULT_ZONE,
) -> Step:
    """Apply one charger event.

    `by_transaction`: the session with the event's (charger_id, transaction_id), if the event names
    a transaction and the ledger has it. `open_on_charger`: the active session on the event's
    charging point, if any (at most one exists).
    """
    if isinstance(event, TransactionStarted):
        return _start(event, by_transaction, open_on_charger, new_id)
    if isinstance(event, EnergySample):
        if event.transaction_id is None:
            return _sample(event, open_on_charger, zone)
        if by_transaction is not None and by_transaction.stop_source is StopSource.INFERRED:
            return _late_sample(event, by_transaction, open_on_charger, zone)
        return _sample(event, by_transaction, zone)
    if isinstance(event, TransactionStopped):
        return _stop(event, by_transaction, zone)
    return _status(event, open_on_charger)


def _start(
    event: TransactionStarted,
    known: Session | None,
    open_on_charger: Session | None,
    new_id: Callable[[], UUID],
) -> Step:
    started = _utc(event.started_utc)
    if started is None:
        return _bad("start time without a timezone")
    reg = None if event.meter_start_wh is None else register_wh(event.meter_start_wh)
    if event.meter_start_wh is not None and reg is None:
        return _bad(f"unusable meter_start_wh {event.meter_start_wh!r}")
    if known is not None and known.started_utc == started:
        # The start register as the start event gave it (a bare start's is filled in later).
        known_reg = None if SessionFlag.START_REGISTER_MISSING in known.flags else known.meter_start_wh
        if known_reg == reg:
            return Step((), (Outcome.DUPLICATE_START,))
    # A known transaction id with a different start is a charger reusing its ids: a new session.
    session = Session(
        session_id=new_id(),
        charger_id=event.charger_id,
        transaction_id=event.transaction_id,
        id_tag=event.id_tag,
        started_utc=started,
        meter_start_wh=reg,
        last_sample_utc=started,
        last_register_wh=reg,
        periods=(),
        version=1,
        meter_start_utc=None if reg is None else started,
        flags=() if reg is not None else (SessionFlag.START_REGISTER_MISSING,),
    )
    if open_on_charger is not None:
        closed = _close_inferred(open_on_charger, started, InferredStop.SUPERSEDED)
        return Step((closed, session), (Outcome.SUPERSEDED, Outcome.STARTED))
    return Step((session,), (Outcome.STARTED,))


def _sample(event: EnergySample, session: Session | None, zone: ZoneInfo) -> Step:
    if session is None:
        return Step((), (Outcome.SAMPLE_WITHOUT_SESSION,))
    if not session.active:
        return Step((), (Outcome.SAMPLE_AFTER_STOP,))
    at = _utc(event.measured_utc)
    reg = register_wh(event.energy_register_wh)
    if at is None:
        return _bad("sample time without a timezone")
    if reg is None:
        return _bad(f"unusable energy_register_wh {event.energy_register_wh!r}")
    if session.last_register_wh is None:
        # The first reading of a start that carried no register: it becomes the start register.
        if at < session.last_sample_utc:
            return Step((), (Outcome.STALE_SAMPLE,))
        advanced = _advance(session, at, reg, zone)
        return Step(
            (replace(advanced, version=session.version + 1),),
            (Outcome.SAMPLE_APPLIED, Outcome.START_REGISTER_FROM_SAMPLE),
            f"start register {reg} Wh from the sample at {at.isoformat()}",
        )
    if at <= session.last_sample_utc:
        return Step((), (Outcome.STALE_SAMPLE,))
    if reg < session.last_register_wh:
        return Step(
            (), (Outcome.REGISTER_BACKWARDS,), f"register {reg} Wh < last {session.last_register_wh} Wh"
        )
    advanced = _advance(session, at, reg, zone)
    return Step((replace(advanced, version=session.version + 1),), (Outcome.SAMPLE_APPLIED,))


def _late_sample(
    event: EnergySample, session: Session, open_on_charger: Session | None, zone: ZoneInfo
) -> Step:
    """A reading of a transaction whose stop the ledger only inferred.

    Taken before the inferred stop, it is energy of the session that arrived late (a charger
    delivering its queue after it reconnected): applied, the session stays stopped at that reading.
    Taken after it, the transaction did not end: a session inferred lost is opened again and goes
    on from this reading (closing it for good would leave what the car draws from now on unbilled).
    Not while another session is open on the charging point: a connector runs one transaction.
    """
    at = _utc(event.measured_utc)
    assert session.stopped_utc is not None
    if at is None or at <= session.stopped_utc:
        step = _sample(event, replace(session, stopped_utc=None), zone)
        return replace(
            step,
            changes=tuple(
                replace(c, stopped_utc=session.stopped_utc, meter_stop_wh=c.last_register_wh)
                for c in step.changes
            ),
        )
    lost = session.stop_reason == InferredStop.TRANSACTION_LOST.value
    if not lost or open_on_charger is not None:
        return Step((), (Outcome.SAMPLE_AFTER_STOP,))
    reopened = replace(
        session,
        stopped_utc=None,
        meter_stop_wh=None,
        stop_reason=None,
        stop_source=None,
        flags=session.with_flag(SessionFlag.REOPENED),
    )
    step = _sample(event, reopened, zone)
    if not step.changes:
        return step
    return replace(step, outcomes=(Outcome.REOPENED, *step.outcomes))


def _stop(event: TransactionStopped, session: Session | None, zone: ZoneInfo) -> Step:
    if session is None:
        return Step((), (Outcome.UNKNOWN_STOP,))
    if session.stop_source is StopSource.CHARGER:
        return Step((), (Outcome.DUPLICATE_STOP,))
    at = _utc(event.stopped_utc)
    if at is None:
        return _bad("stop time without a timezone")
    reg = None if event.meter_stop_wh is None else register_wh(event.meter_stop_wh)
    if event.meter_stop_wh is not None and reg is None:
        return _bad(f"unusable meter_stop_wh {event.meter_stop_wh!r}")
    outcomes: list[Outcome] = []
    flags = session.flags
    detail = ""
    if reg is None:
        flags = session.with_flag(SessionFlag.STOP_REGISTER_MISSING)
    elif session.meter_start_wh is not None and reg < session.meter_start_wh:
        # The daemon may not have seen the start (restarted in between); the ledger has.
        outcomes.append(Outcome.STOP_BELOW_START)
        flags = session.with_flag(SessionFlag.STOP_REGISTER_BELOW_START)
        detail = f"stop register {reg} Wh < start register {session.meter_start_wh} Wh"
        reg = None
    elif session.last_register_wh is not None and reg < session.last_register_wh:
        outcomes.append(Outcome.REGISTER_BACKWARDS)
        flags = session.with_flag(SessionFlag.STOP_REGISTER_BACKWARDS)
        detail = f"stop register {reg} Wh < last {session.last_register_wh} Wh"
        reg = None
    outcomes.append(Outcome.STOPPED if session.active else Outcome.INFERRED_STOP_COMPLETED)
    if reg is None:
        # No usable stop register: the last reading stands in for it, if there is one after the start.
        stopped = replace(
            session,
            stopped_utc=max(at, session.last_sample_utc),
            meter_stop_wh=_last_reading_after_start(session),
        )
    elif session.last_register_wh is None:
        # A stop register but nothing to measure from: the energy stays unknown.
        stopped = replace(
            session,
            stopped_utc=at,
            meter_stop_wh=reg,
            last_register_wh=reg,
            last_sample_utc=max(at, session.last_sample_utc),
        )
    else:
        advanced = _advance(session, at, reg, zone)
        stopped = replace(advanced, stopped_utc=at, meter_stop_wh=reg)
    stopped = replace(
        stopped,
        stop_reason=event.reason,
        stop_source=StopSource.CHARGER,
        flags=flags,
        version=session.version + 1,
    )
    if stopped.energy_wh is None:
        outcomes.append(Outcome.ENERGY_UNKNOWN)
    return Step((stopped,), tuple(outcomes), detail)


def _status(event: ChargerStatus, session: Session | None) -> Step:
    if session is None:
        return Step((), (Outcome.NO_CHANGE,))
    lost = (
        event.online
        and event.transaction_id is None
        and not event.vehicle_connected
        and event.state in _IDLE_STATES
    )
    if not lost:
        return Step((), (Outcome.NO_CHANGE,))
    seen = None if event.last_seen is None else _utc(event.last_seen.utc)
    at = session.last_sample_utc if seen is None else seen
    return Step((_close_inferred(session, at, InferredStop.TRANSACTION_LOST),), (Outcome.TRANSACTION_LOST,))
