"""The session record: one car's charge on one charging point, as billing data."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

SESSION_SCHEMA = "garage.session/1"


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


@dataclass(frozen=True, slots=True)
class EnergyPeriod:
    start_utc: datetime
    energy_wh: int


@dataclass(frozen=True, slots=True)
class Session:
    """One version of a session. Frozen: every change is a new value with `version + 1`.

    `charger_id` names one charging point (connector/EVSE), as in drivers.contracts. Registers are
    whole Wh. `last_sample_utc`/`last_register_wh` are the newest applied energy reading (the start
    reading until the first sample); `periods` always sum to `last_register_wh - meter_start_wh`.
    """

    session_id: UUID
    charger_id: str
    transaction_id: str
    id_tag: str | None
    started_utc: datetime
    meter_start_wh: int
    last_sample_utc: datetime
    last_register_wh: int
    periods: tuple[EnergyPeriod, ...]
    version: int
    stopped_utc: datetime | None = None
    meter_stop_wh: int | None = None
    stop_reason: str | None = None
    stop_source: StopSource | None = None

    @property
    def active(self) -> bool:
        return self.stopped_utc is None

    @property
    def energy_wh(self) -> int:
        return self.last_register_wh - self.meter_start_wh


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
        "meter_stop_wh": session.meter_stop_wh,
        "last_sample_utc": iso_utc(session.last_sample_utc),
        "last_register_wh": session.last_register_wh,
        "energy_wh": session.energy_wh,
        "periods": [{"start_utc": iso_utc(p.start_utc), "energy_wh": p.energy_wh} for p in session.periods],
        "stop_reason": session.stop_reason,
        "stop_source": None if session.stop_source is None else session.stop_source.value,
    }


def session_from_json(data: dict[str, Any]) -> Session:
    """Inverse of session_to_json (the ledger stores exactly this)."""
    stopped = data["stopped_utc"]
    source = data["stop_source"]
    return Session(
        session_id=UUID(data["session_id"]),
        charger_id=data["charger_id"],
        transaction_id=data["transaction_id"],
        id_tag=data["id_tag"],
        started_utc=parse_utc(data["started_utc"]),
        meter_start_wh=int(data["meter_start_wh"]),
        last_sample_utc=parse_utc(data["last_sample_utc"]),
        last_register_wh=int(data["last_register_wh"]),
        periods=tuple(EnergyPeriod(parse_utc(p["start_utc"]), int(p["energy_wh"])) for p in data["periods"]),
        version=int(data["seq"]),
        stopped_utc=None if stopped is None else parse_utc(stopped),
        meter_stop_wh=None if data["meter_stop_wh"] is None else int(data["meter_stop_wh"]),
        stop_reason=data["stop_reason"],
        stop_source=None if source is None else StopSource(source),
    )
