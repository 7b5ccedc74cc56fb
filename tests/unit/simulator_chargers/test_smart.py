"""Smart-charging evaluation as a charger does it: stack levels, validity, duration, recurrence, units."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from simulator.chargers.rpc import OcppError
from simulator.chargers.smart import ProfileStore, parse_profile

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def ppa(phases: int | None) -> float:
    return 230.0 * (phases or 1)


def profile16(
    pid: int, level: int, purpose: str, limit: float, *, connector: int = 1, **schedule: Any
) -> dict[str, Any]:
    extra: dict[str, Any] = {
        k: schedule.pop(k)
        for k in ("validFrom", "validTo", "recurrencyKind", "transactionId")
        if k in schedule
    }
    kind = schedule.pop("kind", "Absolute")
    periods = schedule.pop("periods", [{"startPeriod": 0, "limit": limit}])
    return {
        "chargingProfileId": pid,
        "stackLevel": level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": {
            "chargingRateUnit": schedule.pop("unit", "A"),
            "chargingSchedulePeriod": periods,
            **schedule,
        },
        **extra,
    }


def store_with(*raws: tuple[dict[str, Any], int]) -> ProfileStore:
    store = ProfileStore()
    for raw, connector in raws:
        store.install(parse_profile(raw, connector, "1.6", T0, store.max_stack_level))
    return store


def tx_limit(store: ProfileStore, at: datetime, tx_id: str | None = "7") -> float | None:
    return store.transaction_limit_a(1, at, T0, tx_id, ppa)


def test_highest_stack_level_wins_and_its_expiry_falls_through() -> None:
    store = store_with(
        (profile16(1, 0, "TxDefaultProfile", 6), 0),
        (profile16(2, 1, "TxDefaultProfile", 16, duration=600, startSchedule=T0.isoformat()), 0),
        (profile16(3, 2, "TxProfile", 10, duration=60, startSchedule=T0.isoformat()), 1),
    )
    assert tx_limit(store, T0 + timedelta(seconds=30)) == 10
    assert tx_limit(store, T0 + timedelta(seconds=60)) == 16
    assert tx_limit(store, T0 + timedelta(seconds=601)) == 6
    # No transaction: TxProfiles do not apply.
    assert tx_limit(store, T0 + timedelta(seconds=30), tx_id=None) == 16


def test_connector_specific_default_beats_connector_zero_at_equal_level() -> None:
    store = store_with(
        (profile16(1, 0, "TxDefaultProfile", 6), 0), (profile16(2, 0, "TxDefaultProfile", 20), 1)
    )
    assert tx_limit(store, T0) == 20
    assert store.transaction_limit_a(2, T0, T0, None, ppa) == 6


def test_valid_from_and_to() -> None:
    store = store_with(
        (
            profile16(
                1,
                3,
                "TxDefaultProfile",
                8,
                validFrom=(T0 + timedelta(hours=1)).isoformat(),
                validTo=(T0 + timedelta(hours=2)).isoformat(),
            ),
            0,
        ),
        (profile16(2, 0, "TxDefaultProfile", 30), 0),
    )
    assert tx_limit(store, T0) == 30
    assert tx_limit(store, T0 + timedelta(hours=1, minutes=5)) == 8
    assert tx_limit(store, T0 + timedelta(hours=2)) == 30


def test_periods_relative_to_the_transaction_start() -> None:
    periods = [{"startPeriod": 0, "limit": 6}, {"startPeriod": 300, "limit": 32}]
    store = store_with((profile16(1, 0, "TxDefaultProfile", 0, kind="Relative", periods=periods), 0))
    assert store.transaction_limit_a(1, T0 + timedelta(seconds=299), T0, "1", ppa) == 6
    assert store.transaction_limit_a(1, T0 + timedelta(seconds=300), T0, "1", ppa) == 32


def test_daily_recurring_profile() -> None:
    periods = [{"startPeriod": 0, "limit": 10}, {"startPeriod": 3600, "limit": 20}]
    raw = profile16(
        1,
        1,
        "TxDefaultProfile",
        0,
        kind="Recurring",
        recurrencyKind="Daily",
        startSchedule=T0.isoformat(),
        periods=periods,
        duration=7200,
    )
    store = store_with((raw, 0), (profile16(2, 0, "TxDefaultProfile", 32), 0))
    day = timedelta(days=3)
    assert tx_limit(store, T0 + day + timedelta(minutes=10)) == 10
    assert tx_limit(store, T0 + day + timedelta(minutes=70)) == 20
    assert tx_limit(store, T0 + day + timedelta(hours=3)) == 32
    # Before its first occurrence a recurring profile does not apply.
    later = profile16(
        3,
        2,
        "TxDefaultProfile",
        0,
        kind="Recurring",
        recurrencyKind="Weekly",
        startSchedule=(T0 + timedelta(days=1)).isoformat(),
        periods=periods,
    )
    store.install(parse_profile(later, 0, "1.6", T0, 8))
    assert tx_limit(store, T0 + timedelta(hours=3)) == 32
    assert tx_limit(store, T0 + timedelta(days=8, minutes=1)) == 10


def test_watts_convert_with_the_phases_and_round_down() -> None:
    store = store_with((profile16(1, 0, "TxDefaultProfile", 2300, unit="W"), 0))
    assert tx_limit(store, T0) == 10.0
    three = store_with(
        (
            profile16(
                1,
                0,
                "TxDefaultProfile",
                0,
                unit="W",
                periods=[{"startPeriod": 0, "limit": 7000, "numberPhases": 3}],
            ),
            0,
        )
    )
    assert tx_limit(three, T0) == 10.1  # 7000 / 690 = 10.14 -> 10.1


def test_max_profile_and_replacement_by_id_or_level() -> None:
    store = store_with((profile16(1, 0, "ChargePointMaxProfile", 40), 0))
    assert store.max_limit_a(T0, ppa) == 40
    store.install(parse_profile(profile16(9, 0, "ChargePointMaxProfile", 25), 0, "1.6", T0, 8))
    assert len(store.profiles) == 1
    assert store.max_limit_a(T0, ppa) == 25


def test_clear_by_criteria_and_end_of_transaction() -> None:
    store = store_with(
        (profile16(1, 0, "TxDefaultProfile", 6), 0),
        (profile16(2, 1, "TxProfile", 10), 1),
        (profile16(3, 5, "TxDefaultProfile", 7), 1),
    )
    assert store.count(purpose="tx_default") == 2
    assert store.count(stack_level=5) == 1
    store.discard(profile_id=3)
    assert store.count() == 2
    store.end_transaction(1)
    assert [p.id for p in store.profiles] == [1]


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ({"stackLevel": 0}, "FormationViolation"),
        (profile16(1, 0, "ChargingStationMaxProfile", 5), "PropertyConstraintViolation"),
        (profile16(1, 99, "TxDefaultProfile", 5), "PropertyConstraintViolation"),
        (
            profile16(1, 0, "TxDefaultProfile", 5, periods=[{"startPeriod": 10, "limit": 5}]),
            "PropertyConstraintViolation",
        ),
        (
            profile16(1, 0, "TxDefaultProfile", 5, periods=[{"startPeriod": 0, "limit": "5"}]),
            "TypeConstraintViolation",
        ),
        (profile16(1, 0, "TxDefaultProfile", 5, startSchedule="yesterday"), "FormationViolation"),
        (profile16(1, 0, "TxDefaultProfile", 5, kind="Recurring"), "OccurenceConstraintViolation"),
    ],
)
def test_malformed_profiles_are_refused_with_the_right_code(raw: dict[str, Any], code: str) -> None:
    with pytest.raises(OcppError) as info:
        parse_profile(raw, 0, "1.6", T0, 8)
    assert info.value.code == code


def test_201_profile_parses_its_first_schedule() -> None:
    raw = {
        "id": 4,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "transactionId": "abc",
        "chargingSchedule": [
            {"id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 12.5}]}
        ],
    }
    p = parse_profile(raw, 1, "2.0.1", T0, 8)
    assert (p.id, p.purpose, p.transaction_id, p.periods[0].limit) == (4, "tx", "abc", 12.5)
