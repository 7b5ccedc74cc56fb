"""The session record: one car's charge on one charging point, as billing data."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

# Version 2: meter_start_wh, meter_stop_wh and energy_wh may be null (a register the charger did not
# send); meter_start_utc, flags and energy_status are new.
SESSION_SCHEMA = "garage.session/2"


class StopSource(enum.StrEnum):
    CHARGER = "charger"  # the charger said the transaction stopped (OCPP StopTransaction / Ended)
    INFERRED = "inferred"  # the ledger concluded it, see InferredStop


class InferredStop(enum.StrEnum):
    """Stop reasons the ledger gives when the charger never reported the stop.

    A later real stop for the same transaction still completes such a session once (its energy
    and reason replace the inferred ones), because a charger that rebooted often delivers its
    queued StopTransaction after it reports being idle.
    """

    # The charger is online, idle, without a vehicle and without a transaction while the ledger has
    # one open on it: it rebooted or lost the transaction.
    TRANSACTION_LOST = "inferred:transaction_lost"
    # A new transaction started on the same charging point without a stop for the previous one.
    SUPERSEDED = "inferred:superseded"


class SessionFlag(enum.StrEnum):
    """Why a session's registers are not simply the charger's start and stop registers."""

    # The start carried no register: meter_start_wh is the first sample's (the energy before that
    # sample is not counted), or null while there was none.
    START_REGISTER_MISSING = "start_register_missing"
    # The stop carried no register: meter_stop_wh is the last sample's (the energy after it is not
    # counted), or null when there was no reading after the start register.
    STOP_REGISTER_MISSING = "stop_register_missing"
    # The stop register was below the last applied reading (but not below the start): not used,
    # the stop takes the last reading as for a missing register.
    STOP_REGISTER_BACKWARDS = "stop_register_backwards"
    # The stop register was below the start register (the meter was reset or replaced, or the
    # start belongs to another meter): not used, the stop takes the last reading.
    STOP_REGISTER_BELOW_START = "stop_register_below_start"
    # The ledger had inferred the transaction lost, and then the charger reported it running: the
    # session was opened again and goes on from the register the charger reported.
    REOPENED = "reopened"


# Flags meaning that one end of the session's energy is a substitute reading, not the charger's.
SUBSTITUTE_FLAGS = frozenset(SessionFlag) - {SessionFlag.REOPENED}


class EnergyStatus(enum.StrEnum):
    MEASURED = "measured"  # from the charger's own start and stop registers (or running, so far)
    PARTIAL = "partial"  # one end is a substitute reading (see SessionFlag, inferred stops)
    UNKNOWN = "unknown"  # energy_wh is null: fewer than two register readings bracket the session


@dataclass(frozen=True, slots=True)
class EnergyPeriod:
    start_utc: datetime
    energy_wh: int


@dataclass(frozen=True, slots=True)
class Session:
    """One version of a session. Frozen: every change is a new value with `version + 1`.

    `charger_id` names one charging point (connector/EVSE), as in drivers.contracts. Registers are
    whole Wh. `meter_start_wh` is the start register and `meter_start_utc` when it was read (the
    start time, or the first sample's time when the start carried none); both None while no
    register is known. `last_sample_utc`/`last_register_wh` are the newest applied reading (the start
    reading until the first sample; `last_sample_utc` is the start time while there is none).
    `periods` always sum to `energy_wh`, and are empty while it is None.
    """

    session_id: UUID
    charger_id: str
    transaction_id: str
    id_tag: str | None
    started_utc: datetime
    meter_start_wh: int | None
    last_sample_utc: datetime
    last_register_wh: int | None
    periods: tuple[EnergyPeriod, ...]
    version: int
    stopped_utc: datetime | None = None
    meter_stop_wh: int | None = None
    stop_reason: str | None = None
    stop_source: StopSource | None = None
    meter_start_utc: datetime | None = None
    flags: tuple[SessionFlag, ...] = ()

    @property
    def active(self) -> bool:
        return self.stopped_utc is None

    @property
    def energy_wh(self) -> int | None:
        """The session's energy: last (stop) register - start register; None when unknown.

        Unknown while no register is known, and for a stopped session whose stop register is
        unknown or is the start reading itself (a charger whose only register came with the stop).
        Never 0 in place of unknown.
        """
        if self.meter_start_wh is None or self.last_register_wh is None:
            return None
        if not self.active:
            if self.meter_stop_wh is None:
                return None
            if (
                SessionFlag.START_REGISTER_MISSING in self.flags
                and self.last_sample_utc == self.meter_start_utc
            ):
                return None
        return self.last_register_wh - self.meter_start_wh

    @property
    def energy_status(self) -> EnergyStatus:
        if self.energy_wh is None:
            return EnergyStatus.UNKNOWN
        if SUBSTITUTE_FLAGS.intersection(self.flags) or self.stop_source is StopSource.INFERRED:
            return EnergyStatus.PARTIAL
        return EnergyStatus.MEASURED

    def with_flag(self, flag: SessionFlag) -> tuple[SessionFlag, ...]:
        """The flags with `flag` added (sorted, each once)."""
        return tuple(sorted({*self.flags, flag}))


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, to the second unless there are fractions."""
    text = moment.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def parse_utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a timezone: {text!r}")
    return moment.astimezone(UTC)


def session_to_json(session: Session) -> dict[str, Any]:
    """The session as the JSON object used in outbox payloads and `sitectl sessions --json`."""
    return {
        "session_id": str(session.session_id),
        "seq": session.version,
        "charger_id": session.charger_id,
        "transaction_id": session.transaction_id,
        "id_tag": session.id_tag,
        "state": "active" if session.active else "stopped",
        "started_utc": iso_utc(session.started_utc),
        "stopped_utc": None if session.stopped_utc is None else iso_utc(session.stopped_utc),
        "meter_start_wh": session.meter_start_wh,
        "meter_start_utc": None if session.meter_start_utc is None else iso_utc(session.meter_start_utc),
        "meter_stop_wh": session.meter_stop_wh,
        "last_sample_utc": iso_utc(session.last_sample_utc),
        "last_register_wh": session.last_register_wh,
        "energy_wh": session.energy_wh,
        "energy_status": session.energy_status.value,
        "flags": [f.value for f in session.flags],
        "periods": [{"start_utc": iso_utc(p.start_utc), "energy_wh": p.energy_wh} for p in session.periods],
        "stop_reason": session.stop_reason,
        "stop_source": None if session.stop_source is None else session.stop_source.value,
    }


def session_from_json(data: dict[str, Any]) -> Session:
    """Inverse of session_to_json (the ledger stores exactly this). Reads records of schema 1 too:
    they always had a start register, read at the start."""
    stopped = data["stopped_utc"]
    source = data["stop_source"]
    start_wh = data["meter_start_wh"]
    start_utc = data.get("meter_start_utc", data["started_utc"] if start_wh is not None else None)
    register = data["last_register_wh"]
    return Session(
        session_id=UUID(data["session_id"]),
        charger_id=data["charger_id"],
        transaction_id=data["transaction_id"],
        id_tag=data["id_tag"],
        started_utc=parse_utc(data["started_utc"]),
        meter_start_wh=None if start_wh is None else int(start_wh),
        last_sample_utc=parse_utc(data["last_sample_utc"]),
        last_register_wh=None if register is None else int(register),
        periods=tuple(EnergyPeriod(parse_utc(p["start_utc"]), int(p["energy_wh"])) for p in data["periods"]),
        version=int(data["seq"]),
        stopped_utc=None if stopped is None else parse_utc(stopped),
        meter_stop_wh=None if data["meter_stop_wh"] is None else int(data["meter_stop_wh"]),
        stop_reason=data["stop_reason"],
        stop_source=None if source is None else StopSource(source),
        meter_start_utc=None if start_utc is None else parse_utc(start_utc),
        flags=tuple(SessionFlag(f) for f in data.get("flags", ())),
    )
