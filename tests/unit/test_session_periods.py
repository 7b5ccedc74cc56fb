"""15-minute billing periods: alignment to the local wall clock, DST days, exact integer sums."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.sessions.periods import PERIOD, period_start, split_energy

OSLO = ZoneInfo("Europe/Oslo")
KOLKATA = ZoneInfo("Asia/Kolkata")  # +05:30: local quarter-hours are not UTC quarter-hours
UTC_ZONE = ZoneInfo("UTC")


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 11, 22, 16, 7, 30, tzinfo=UTC), datetime(2026, 11, 22, 16, 0, tzinfo=UTC)),
        (datetime(2026, 11, 22, 16, 15, tzinfo=UTC), datetime(2026, 11, 22, 16, 15, tzinfo=UTC)),
        (datetime(2026, 11, 22, 16, 14, 59, 999999, tzinfo=UTC), datetime(2026, 11, 22, 16, 0, tzinfo=UTC)),
        # Local time input is converted: 17:29 Oslo (winter, +01:00) is 16:29 UTC.
        (datetime(2026, 11, 22, 17, 29, tzinfo=OSLO), datetime(2026, 11, 22, 16, 15, tzinfo=UTC)),
        # The repeated hour on 2026-10-25: 02:40 local happens twice, 00:40 and 01:40 UTC.
        (datetime(2026, 10, 25, 0, 40, tzinfo=UTC), datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
        (datetime(2026, 10, 25, 1, 40, tzinfo=UTC), datetime(2026, 10, 25, 1, 30, tzinfo=UTC)),
    ],
)
def test_period_start_in_oslo(moment: datetime, expected: datetime) -> None:
    assert period_start(moment, OSLO) == expected


def test_period_start_follows_the_local_clock_for_half_hour_offsets() -> None:
    # 10:07 UTC is 15:37 in Kolkata; that local quarter-hour began 15:30 local = 10:00 UTC.
    assert period_start(datetime(2026, 1, 1, 10, 7, tzinfo=UTC), KOLKATA) == datetime(
        2026, 1, 1, 10, 0, tzinfo=UTC
    )
    # 10:16 UTC = 15:46 local → 15:45 local = 10:15 UTC.
    assert period_start(datetime(2026, 1, 1, 10, 16, tzinfo=UTC), KOLKATA) == datetime(
        2026, 1, 1, 10, 15, tzinfo=UTC
    )


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        period_start(datetime(2026, 1, 1, 10, 7))


def test_split_proportional_to_time_across_a_boundary() -> None:
    # 16:10 → 16:25: 5 min in the 16:00 period, 10 min in the 16:15 period.
    parts = split_energy(
        datetime(2026, 11, 22, 16, 10, tzinfo=UTC), datetime(2026, 11, 22, 16, 25, tzinfo=UTC), 3000, OSLO
    )
    assert parts == {
        datetime(2026, 11, 22, 16, 0, tzinfo=UTC): 1000,
        datetime(2026, 11, 22, 16, 15, tzinfo=UTC): 2000,
    }


def test_split_rounds_so_that_parts_sum_exactly() -> None:
    # 1 Wh over 30 minutes spanning three periods: rounding must not create or lose a watt-hour.
    t0 = datetime(2026, 11, 22, 16, 10, tzinfo=UTC)
    parts = split_energy(t0, t0 + timedelta(minutes=30), 1, OSLO)
    assert sum(parts.values()) == 1
    assert all(v > 0 for v in parts.values())


def test_split_of_an_empty_or_backwards_interval_goes_to_the_first_period() -> None:
    t0 = datetime(2026, 11, 22, 16, 10, tzinfo=UTC)
    assert split_energy(t0, t0, 7, OSLO) == {datetime(2026, 11, 22, 16, 0, tzinfo=UTC): 7}
    assert split_energy(t0, t0 - timedelta(minutes=1), 7, OSLO) == {
        datetime(2026, 11, 22, 16, 0, tzinfo=UTC): 7
    }
    assert split_energy(t0, t0 + timedelta(hours=1), 0, OSLO) == {}
    with pytest.raises(ValueError, match="negative"):
        split_energy(t0, t0 + timedelta(hours=1), -1, OSLO)


@pytest.mark.parametrize(
    ("day", "expected_periods"),
    [
        (datetime(2026, 3, 29, tzinfo=OSLO), 92),  # spring forward: a 23-hour local day
        (datetime(2026, 10, 25, tzinfo=OSLO), 100),  # fall back: a 25-hour local day
        (datetime(2026, 11, 22, tzinfo=OSLO), 96),
    ],
)
def test_a_local_day_has_the_right_number_of_periods(day: datetime, expected_periods: int) -> None:
    start = day.astimezone(UTC)
    end = (day.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=OSLO).astimezone(UTC)
    parts = split_energy(start, end, 1_000_000, OSLO)
    assert len(parts) == expected_periods
    assert sum(parts.values()) == 1_000_000
    starts = sorted(parts)
    assert all(b - a == PERIOD for a, b in itertools.pairwise(starts))
    # Each period has the same length, so the energy is spread evenly (±1 Wh of rounding).
    assert max(parts.values()) - min(parts.values()) <= 1


def test_the_repeated_autumn_hour_gives_eight_distinct_utc_periods() -> None:
    # 02:00-03:00 local happens twice on 2026-10-25 (00:00-02:00 UTC).
    parts = split_energy(
        datetime(2026, 10, 25, 0, 0, tzinfo=UTC), datetime(2026, 10, 25, 2, 0, tzinfo=UTC), 800, OSLO
    )
    assert len(parts) == 8
    assert set(parts.values()) == {100}
    local_labels = [s.astimezone(OSLO).strftime("%H:%M") for s in sorted(parts)]
    assert local_labels == ["02:00", "02:15", "02:30", "02:45"] * 2


aware_times = st.datetimes(
    min_value=datetime(2020, 1, 1),
    max_value=datetime(2035, 1, 1),
    timezones=st.just(UTC),
)


@given(
    t0=aware_times,
    duration_s=st.floats(min_value=0, max_value=3 * 86400),
    energy_wh=st.integers(min_value=0, max_value=10_000_000),
    zone=st.sampled_from([OSLO, KOLKATA, UTC_ZONE]),
)
def test_split_sums_exactly_and_stays_inside_the_interval(
    t0: datetime, duration_s: float, energy_wh: int, zone: ZoneInfo
) -> None:
    t1 = t0 + timedelta(seconds=duration_s)
    parts = split_energy(t0, t1, energy_wh, zone)
    assert sum(parts.values()) == energy_wh
    assert all(v > 0 for v in parts.values())
    for start in parts:
        assert start == period_start(start, zone)
        assert period_start(t0, zone) <= start <= max(t0, t1)
