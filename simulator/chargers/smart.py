"""Smart charging as a charger evaluates it (OCPP 1.6 section 3.13 / 2.0.1 functional block K).

Profiles are kept by purpose and stack level. At any instant, for one connector:
- the transaction limit comes from the TxProfile of the running transaction if one has a period
  that covers now, else from the TxDefaultProfile (connector-specific before connector 0); within
  a purpose the highest stack level whose profile is valid (validFrom/validTo) and whose schedule
  covers now (start + duration) wins, so an expired lease falls through to the level below;
- the charge-point/station maximum profile caps that (min), and caps the sum over connectors;
- with no applicable profile the charger uses its own default limit.
Limits in W are converted to A with the power one ampere draws for the phases in use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from simulator.chargers.rpc import OcppError, Payload, Version, format_error

Purpose = Literal["max", "tx_default", "tx"]
Kind = Literal["Absolute", "Recurring", "Relative"]

PURPOSE_NAMES: dict[Version, dict[str, Purpose]] = {
    "1.6": {"ChargePointMaxProfile": "max", "TxDefaultProfile": "tx_default", "TxProfile": "tx"},
    "2.0.1": {"ChargingStationMaxProfile": "max", "TxDefaultProfile": "tx_default", "TxProfile": "tx"},
}


@dataclass(frozen=True, slots=True)
class Period:
    start_s: float
    limit: float
    number_phases: int | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    id: int
    connector: int
    stack_level: int
    purpose: Purpose
    kind: Kind
    rate_unit: Literal["A", "W"]
    periods: tuple[Period, ...]
    received_utc: datetime
    start_utc: datetime | None = None
    duration_s: float | None = None
    recurrency: Literal["Daily", "Weekly"] | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    transaction_id: str | None = None

    def active_period(self, now: datetime, tx_start: datetime | None) -> Period | None:
        """The schedule period covering `now`, or None when the profile does not apply now."""
        if self.valid_from is not None and now < self.valid_from:
            return None
        if self.valid_to is not None and now >= self.valid_to:
            return None
        if self.kind == "Relative":
            if tx_start is None:
                return None
            start = tx_start
        elif self.kind == "Recurring":
            anchor = self.start_utc or self.received_utc
            if now < anchor:
                return None
            cycle = timedelta(days=1 if self.recurrency == "Daily" else 7)
            start = anchor + cycle * ((now - anchor) // cycle)
        else:
            start = self.start_utc or self.received_utc
        offset_s = (now - start).total_seconds()
        if offset_s < 0:
            return None
        if self.duration_s is not None and offset_s >= self.duration_s:
            return None
        current: Period | None = None
        for period in self.periods:
            if period.start_s <= offset_s:
                current = period
            else:
                break
        return current


PowerPerAmp = Callable[[int | None], float]


def _to_amps(profile: Profile, period: Period, power_per_amp_w: PowerPerAmp) -> float:
    if profile.rate_unit == "A":
        return period.limit
    # Chargers resolve current to 0.1 A; round down (never offer more than the power allows).
    amps = period.limit / power_per_amp_w(period.number_phases)
    return math.floor(amps * 10.0 + 1e-6) / 10.0


class ProfileStore:
    def __init__(self, max_stack_level: int = 8, max_profiles: int = 32) -> None:
        self.profiles: list[Profile] = []
        self.max_stack_level = max_stack_level
        self.max_profiles = max_profiles

    def install(self, profile: Profile) -> None:
        """Store, replacing a profile with the same id, or the same purpose, stack level and connector."""
        self.profiles = [
            p
            for p in self.profiles
            if p.id != profile.id
            and not (
                p.purpose == profile.purpose
                and p.stack_level == profile.stack_level
                and p.connector == profile.connector
            )
        ]
        self.profiles.append(profile)

    @staticmethod
    def _matcher(
        profile_id: int | None, connector: int | None, purpose: Purpose | None, stack_level: int | None
    ) -> Callable[[Profile], bool]:
        def matches(p: Profile) -> bool:
            if profile_id is not None:
                return p.id == profile_id
            return (
                (connector is None or p.connector == connector)
                and (purpose is None or p.purpose == purpose)
                and (stack_level is None or p.stack_level == stack_level)
            )

        return matches

    def count(
        self,
        *,
        profile_id: int | None = None,
        connector: int | None = None,
        purpose: Purpose | None = None,
        stack_level: int | None = None,
    ) -> int:
        """How many profiles a ClearChargingProfile with these criteria would remove."""
        matches = self._matcher(profile_id, connector, purpose, stack_level)
        return sum(1 for p in self.profiles if matches(p))

    def discard(
        self,
        *,
        profile_id: int | None = None,
        connector: int | None = None,
        purpose: Purpose | None = None,
        stack_level: int | None = None,
    ) -> None:
        matches = self._matcher(profile_id, connector, purpose, stack_level)
        self.profiles = [p for p in self.profiles if not matches(p)]

    def end_transaction(self, connector: int) -> None:
        """A TxProfile lives only as long as its transaction."""
        self.profiles = [p for p in self.profiles if not (p.purpose == "tx" and p.connector == connector)]

    def _best(
        self,
        candidates: Iterable[Profile],
        now: datetime,
        tx_start: datetime | None,
        power_per_amp_w: PowerPerAmp,
    ) -> float | None:
        # Highest stack level first; at equal levels a connector-specific profile before connector 0.
        ordered = sorted(candidates, key=lambda p: (p.stack_level, p.connector != 0), reverse=True)
        for profile in ordered:
            period = profile.active_period(now, tx_start)
            if period is not None:
                return _to_amps(profile, period, power_per_amp_w)
        return None

    def transaction_limit_a(
        self,
        connector: int,
        now: datetime,
        tx_start: datetime | None,
        tx_id: str | None,
        power_per_amp_w: PowerPerAmp,
    ) -> float | None:
        """TxProfile of the running transaction, else TxDefaultProfile; None if neither applies."""
        if tx_id is not None:
            tx_profiles = [
                p
                for p in self.profiles
                if p.purpose == "tx"
                and p.connector == connector
                and (p.transaction_id is None or p.transaction_id == tx_id)
            ]
            limit = self._best(tx_profiles, now, tx_start, power_per_amp_w)
            if limit is not None:
                return limit
        defaults = [p for p in self.profiles if p.purpose == "tx_default" and p.connector in (0, connector)]
        return self._best(defaults, now, tx_start, power_per_amp_w)

    def max_limit_a(self, now: datetime, power_per_amp_w: PowerPerAmp) -> float | None:
        return self._best((p for p in self.profiles if p.purpose == "max"), now, None, power_per_amp_w)


# ------------------------------------------------------------------------------------ parsing


def _time(value: Any, version: Version, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise OcppError(format_error(version), f"{name} must be a date-time string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise OcppError(format_error(version), f"{name}: bad date-time {value!r}") from None
    if parsed.tzinfo is None:
        raise OcppError(format_error(version), f"{name}: date-time without a time zone")
    return parsed


def _number(value: Any, version: Version, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise OcppError("TypeConstraintViolation", f"{name} must be a number")
    return float(value)


def _int(value: Any, version: Version, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OcppError("TypeConstraintViolation", f"{name} must be an integer")
    return value


def parse_profile(
    raw: Payload, connector: int, version: Version, received_utc: datetime, max_stack_level: int
) -> Profile:
    """A csChargingProfiles (1.6) / chargingProfile (2.0.1) object; raises OcppError when malformed."""
    if not isinstance(raw, dict):
        raise OcppError(format_error(version), "charging profile must be an object")
    try:
        if version == "1.6":
            profile_id = _int(raw["chargingProfileId"], version, "chargingProfileId")
            schedule = raw["chargingSchedule"]
            tx = raw.get("transactionId")
            transaction_id = None if tx is None else str(_int(tx, version, "transactionId"))
        else:
            profile_id = _int(raw["id"], version, "id")
            schedules = raw["chargingSchedule"]
            if not isinstance(schedules, list) or not schedules:
                raise OcppError(format_error(version), "chargingSchedule must be a non-empty array")
            schedule = schedules[0]
            tx = raw.get("transactionId")
            transaction_id = None if tx is None else str(tx)
        stack_level = _int(raw["stackLevel"], version, "stackLevel")
        purpose_name = raw["chargingProfilePurpose"]
        kind = raw["chargingProfileKind"]
        if not isinstance(schedule, dict):
            raise OcppError(format_error(version), "chargingSchedule must be an object")
        unit = schedule["chargingRateUnit"]
        raw_periods = schedule["chargingSchedulePeriod"]
    except KeyError as missing:
        raise OcppError(format_error(version), f"charging profile lacks {missing}") from None
    purpose = PURPOSE_NAMES[version].get(purpose_name) if isinstance(purpose_name, str) else None
    if purpose is None:
        raise OcppError("PropertyConstraintViolation", f"unsupported purpose {purpose_name!r}")
    if kind not in ("Absolute", "Recurring", "Relative"):
        raise OcppError("PropertyConstraintViolation", f"unknown chargingProfileKind {kind!r}")
    if unit not in ("A", "W"):
        raise OcppError("PropertyConstraintViolation", f"unknown chargingRateUnit {unit!r}")
    if not 0 <= stack_level <= max_stack_level:
        raise OcppError(
            "PropertyConstraintViolation", f"stackLevel {stack_level} outside 0..{max_stack_level}"
        )
    if not isinstance(raw_periods, list) or not raw_periods:
        raise OcppError(format_error(version), "chargingSchedulePeriod must be a non-empty array")
    periods = []
    for item in raw_periods:
        if not isinstance(item, dict) or "startPeriod" not in item or "limit" not in item:
            raise OcppError(format_error(version), "a period needs startPeriod and limit")
        phases = item.get("numberPhases")
        periods.append(
            Period(
                start_s=float(_int(item["startPeriod"], version, "startPeriod")),
                limit=max(0.0, _number(item["limit"], version, "limit")),
                number_phases=None if phases is None else _int(phases, version, "numberPhases"),
            )
        )
    periods.sort(key=lambda p: p.start_s)
    if periods[0].start_s != 0:
        raise OcppError("PropertyConstraintViolation", "the first period must start at 0")
    recurrency = raw.get("recurrencyKind")
    if kind == "Recurring" and recurrency not in ("Daily", "Weekly"):
        raise OcppError(
            "OccurenceConstraintViolation" if version == "1.6" else "OccurrenceConstraintViolation",
            "a Recurring profile needs recurrencyKind Daily or Weekly",
        )
    duration = schedule.get("duration")
    return Profile(
        id=profile_id,
        connector=connector,
        stack_level=stack_level,
        purpose=purpose,
        kind=kind,
        rate_unit=unit,
        periods=tuple(periods),
        received_utc=received_utc,
        start_utc=_time(schedule.get("startSchedule"), version, "startSchedule"),
        duration_s=None if duration is None else float(_int(duration, version, "duration")),
        recurrency=recurrency if kind == "Recurring" else None,
        valid_from=_time(raw.get("validFrom"), version, "validFrom"),
        valid_to=_time(raw.get("validTo"), version, "validTo"),
        transaction_id=transaction_id,
    )
