"""Charging profiles: the permanent safe profile and the short-lived dynamic limit (the lease).

At every boot the charger gets a permanent TxDefaultProfile at stack level 0 with its safe current.
A dynamic limit is a profile at a higher stack level with `duration = lease_s`: when nobody refreshes
it (the controller died) it expires and the charger falls back to the safe profile by itself. This
module does not refresh anything: the daemon's dispatcher calls `set_current` again before expiry.

Pure functions building the SetChargingProfile request payloads for OCPP 1.6 and 2.0.1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from drivers.ocpp.config import Quirks
from drivers.ocpp.rpc import Version

SAFE_PROFILE_ID = 1
STATION_MAX_PROFILE_ID = 2
LEASE_PROFILE_ID_BASE = 100  # + connector/EVSE id, so a refresh replaces the previous lease
SAFE_STACK_LEVEL = 0
LEASE_STACK_LEVEL = 1


def ocpp_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def floor_tenth(value: float) -> float:
    """Round down to 0.1 (1.6 schemas: multipleOf 0.1). Down, because less current is the safe side."""
    # The epsilon keeps 16.3 (16.299999...) at 16.3 instead of 16.2.
    return math.floor(value * 10 + 1e-6) / 10


@dataclass(frozen=True, slots=True)
class Limit:
    unit: str  # "A" or "W"
    value: float
    phases: int


def to_limit(current_a: float, phases: int, quirks: Quirks) -> Limit:
    """Amps per phase as the charger wants them: A rounded down to 0.1, or W (voltage x phases)."""
    if not math.isfinite(current_a) or current_a < 0:
        raise ValueError(f"current must be a finite value >= 0, got {current_a}")
    if quirks.limit_in_watts:
        return Limit("W", floor_tenth(current_a * quirks.nominal_voltage_v * phases), phases)
    return Limit("A", floor_tenth(current_a), phases)


def _period(limit: Limit, version: Version, quirks: Quirks) -> dict[str, Any]:
    period: dict[str, Any] = {"startPeriod": 0, "limit": limit.value, "numberPhases": limit.phases}
    if version == "2.0.1" and limit.phases == 1 and quirks.phase_to_use is not None:
        period["phaseToUse"] = quirks.phase_to_use
    return period


def safe_profile_request(
    version: Version, safe_current_a: float, phases: int, quirks: Quirks
) -> dict[str, Any]:
    """The permanent stack-level-0 TxDefaultProfile for the whole charger (connector 0 / EVSE 0).

    Relative with no duration: it holds for every transaction, independent of the charger's clock.
    """
    limit = to_limit(safe_current_a, phases, quirks)
    if version == "1.6":
        return {
            "connectorId": 0,
            "csChargingProfiles": {
                "chargingProfileId": SAFE_PROFILE_ID,
                "stackLevel": SAFE_STACK_LEVEL,
                "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Relative",
                "chargingSchedule": {
                    "chargingRateUnit": limit.unit,
                    "chargingSchedulePeriod": [_period(limit, version, quirks)],
                },
            },
        }
    return {
        "evseId": 0,
        "chargingProfile": {
            "id": SAFE_PROFILE_ID,
            "stackLevel": SAFE_STACK_LEVEL,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": [
                {
                    "id": SAFE_PROFILE_ID,
                    "chargingRateUnit": limit.unit,
                    "chargingSchedulePeriod": [_period(limit, version, quirks)],
                }
            ],
        },
    }


def station_max_profile_request(
    max_current_a: float, phases: int, quirks: Quirks, now_utc: datetime
) -> dict[str, Any]:
    """2.0.1 ChargingStationMaxProfile: the station's own ceiling, EVSE 0, permanent."""
    limit = to_limit(max_current_a, phases, quirks)
    return {
        "evseId": 0,
        "chargingProfile": {
            "id": STATION_MAX_PROFILE_ID,
            "stackLevel": SAFE_STACK_LEVEL,
            "chargingProfilePurpose": "ChargingStationMaxProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": [
                {
                    "id": STATION_MAX_PROFILE_ID,
                    "startSchedule": ocpp_time(now_utc),
                    "chargingRateUnit": limit.unit,
                    "chargingSchedulePeriod": [_period(limit, "2.0.1", quirks)],
                }
            ],
        },
    }


def lease_profile_request(
    version: Version,
    connector_id: int,
    current_a: float,
    *,
    lease_s: float,
    phases: int,
    quirks: Quirks,
    now_utc: datetime,
    transaction_id: str | None,
) -> dict[str, Any]:
    """A dynamic limit that lapses after `lease_s` unless replaced.

    With a transaction running it is a TxProfile for that transaction; without one, a TxDefaultProfile
    on the connector so the next transaction starts at it. Stack level 1 sits over the safe profile;
    with the stack-level-0 quirk it stays at 0 and still wins, because a connector-specific profile
    overrides the connector-0 one and a TxProfile overrides any TxDefaultProfile.
    """
    limit = to_limit(current_a, phases, quirks)
    stack = SAFE_STACK_LEVEL if quirks.stack_level_zero_only else LEASE_STACK_LEVEL
    purpose = "TxProfile" if transaction_id is not None else "TxDefaultProfile"
    duration = max(1, math.ceil(lease_s))
    profile_id = LEASE_PROFILE_ID_BASE + connector_id
    if version == "1.6":
        profile: dict[str, Any] = {
            "chargingProfileId": profile_id,
            "stackLevel": stack,
            "chargingProfilePurpose": purpose,
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "duration": duration,
                "startSchedule": ocpp_time(now_utc),
                "chargingRateUnit": limit.unit,
                "chargingSchedulePeriod": [_period(limit, version, quirks)],
            },
        }
        if transaction_id is not None:
            profile["transactionId"] = int(transaction_id)
        return {"connectorId": connector_id, "csChargingProfiles": profile}
    profile = {
        "id": profile_id,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Absolute",
        "chargingSchedule": [
            {
                "id": profile_id,
                "duration": duration,
                "startSchedule": ocpp_time(now_utc),
                "chargingRateUnit": limit.unit,
                "chargingSchedulePeriod": [_period(limit, version, quirks)],
            }
        ],
    }
    if transaction_id is not None:
        profile["transactionId"] = transaction_id
    return {"evseId": connector_id, "chargingProfile": profile}


def limit_as_amps(limit: Limit, quirks: Quirks) -> float:
    """The per-phase current a limit stands for (for ChargerStatus.applied_limit_a)."""
    if limit.unit == "W":
        return limit.value / (quirks.nominal_voltage_v * limit.phases)
    return limit.value
