"""Meter estimates between full lists: rises act at once, falls wait, absent lines stay absent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.site.meter import MeterTracker
from drivers.contracts import MeterList, MeterReading, MeterVendor, ReceiveTime

T0 = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)


def reading(
    mono_s: float,
    power_w: float,
    currents: tuple[float | None, float | None, float | None] | None = None,
    *,
    export_w: float = 0.0,
) -> MeterReading:
    received = ReceiveTime(mono_s, T0)
    if currents is None:
        return MeterReading(MeterVendor.AIDON, MeterList.POWER_ONLY, received, active_power_import_w=power_w)
    return MeterReading(
        MeterVendor.AIDON,
        MeterList.FULL,
        received,
        active_power_import_w=power_w,
        active_power_export_w=export_w,
        current_l1_a=currents[0],
        current_l2_a=currents[1],
        current_l3_a=currents[2],
    )


def test_no_full_list_yet_means_nothing_known() -> None:
    tracker = MeterTracker(phase_voltage_v=230.0)
    tracker.ingest(reading(1.0, 5000.0))
    view = tracker.view(2.0)
    assert view.currents_a == (None, None, None)
    assert view.age_s is None


def test_power_rise_is_added_to_every_line_until_the_next_full_list() -> None:
    tracker = MeterTracker(phase_voltage_v=230.0)
    tracker.ingest(reading(0.0, 20_000.0, (40.0, 30.0, 35.0)))
    tracker.ingest(reading(2.5, 20_000.0 + 4600.0))
    view = tracker.view(3.0)
    assert view.currents_a == pytest.approx((60.0, 50.0, 55.0))
    assert view.age_s == pytest.approx(3.0)
    tracker.ingest(reading(10.0, 24_600.0, (60.0, 30.0, 35.0)))
    assert tracker.view(10.0).currents_a == pytest.approx((60.0, 30.0, 35.0))


def test_power_fall_does_not_release_current_before_the_full_list() -> None:
    tracker = MeterTracker(phase_voltage_v=230.0)
    tracker.ingest(reading(0.0, 20_000.0, (40.0, 30.0, 35.0)))
    tracker.ingest(reading(2.5, 5_000.0))
    assert tracker.view(2.5).currents_a == pytest.approx((40.0, 30.0, 35.0))


def test_absent_line_stays_absent_and_export_currents_count_by_magnitude() -> None:
    tracker = MeterTracker(phase_voltage_v=230.0)
    tracker.ingest(reading(0.0, 0.0, (-12.0, None, 8.0), export_w=1500.0))
    assert tracker.view(1.0).currents_a == (12.0, None, 8.0)


def test_age_counts_from_the_last_full_list_not_the_power_frames() -> None:
    tracker = MeterTracker(phase_voltage_v=230.0)
    tracker.ingest(reading(0.0, 1000.0, (5.0, 5.0, 5.0)))
    for t in (2.5, 5.0, 7.5, 10.0, 12.5):
        tracker.ingest(reading(t, 1000.0))
    assert tracker.view(12.5).age_s == pytest.approx(12.5)
    assert tracker.last_reading_mono == 12.5


def test_a_rise_the_controllers_own_increases_explain_is_not_new_base_load() -> None:
    tracker = MeterTracker(phase_voltage_v=230.0)
    tracker.ingest(reading(0.0, 20_000.0, (40.0, 30.0, 35.0)))
    tracker.ingest(reading(2.5, 20_000.0 + 4600.0))
    # The cars were allowed 3450 W more since the full list: only the other 1150 W is unexplained.
    view = tracker.view(3.0, explained_rise_w=3450.0)
    assert view.currents_a == pytest.approx((45.0, 35.0, 40.0))
    assert tracker.view(3.0, explained_rise_w=10_000.0).currents_a == pytest.approx((40.0, 30.0, 35.0))
