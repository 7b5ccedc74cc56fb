"""Ground truth in, a vendor's HDLC frame out: `encode(profile, list_type, state, local_time)`."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from . import axdr, lists_kaifa, lists_kamstrup, lists_obis
from .cosem_time import STATUS_DAYLIGHT_SAVING, cosem_date_time, is_daylight_saving
from .hdlc import build_frame
from .model import ListType, MeterProfile, MeterState, Vendor
from .vendors import SPECS, DateTimeField


def secondary_side(state: MeterState, ct_ratio: float) -> MeterState:
    """What a CT meter measures: currents, powers and energies divided by the CT ratio."""
    if ct_ratio == 1.0:
        return state
    k = 1.0 / ct_ratio
    i1, i2, i3 = state.current_a
    return replace(
        state,
        current_a=(i1 * k, i2 * k, i3 * k),
        active_power_import_w=state.active_power_import_w * k,
        active_power_export_w=state.active_power_export_w * k,
        reactive_power_import_var=state.reactive_power_import_var * k,
        reactive_power_export_var=state.reactive_power_export_var * k,
        energy_import_wh=state.energy_import_wh * k,
        energy_export_wh=state.energy_export_wh * k,
        reactive_energy_import_varh=state.reactive_energy_import_varh * k,
        reactive_energy_export_varh=state.reactive_energy_export_varh * k,
    )


def clock_bytes(
    profile: MeterProfile,
    local_time: datetime,
    clock_status: int | None = None,
    day_of_week: int | None = None,
) -> bytes:
    """The 12-byte COSEM date-time as this vendor writes it for an Oslo wall-clock time."""
    spec = SPECS[profile.vendor]
    if clock_status is None:
        dst_flag = (
            spec.flags_daylight_saving and not profile.legacy_firmware and is_daylight_saving(local_time)
        )
        clock_status = STATUS_DAYLIGHT_SAVING if dst_flag else 0
    return cosem_date_time(
        local_time,
        sunday_is_zero=spec.sunday_is_zero,
        deviation_min=spec.deviation_min,
        status=clock_status,
        day_of_week=day_of_week,
    )


def supported_lists(vendor: Vendor) -> tuple[ListType, ...]:
    if SPECS[vendor].power_period_s is None:
        return (ListType.FULL, ListType.HOURLY)
    return (ListType.POWER, ListType.FULL, ListType.HOURLY)


def encode(
    profile: MeterProfile,
    list_type: ListType,
    state: MeterState,
    local_time: datetime,
    *,
    invoke_id: int | None = None,
    dest_address: bytes | None = None,
    src_address: bytes | None = None,
    clock_status: int | None = None,
    day_of_week: int | None = None,
) -> bytes:
    """One complete HDLC frame, flags included, as the profile's meter sends `list_type`.

    `state` is primary-side truth; `local_time` is the meter's clock (aware, or naive Oslo wall
    time), used for the APDU date-time (Kaifa, Kamstrup) and the clock object of hourly lists.
    The keyword arguments override header details that vary between installations (invoke id,
    HDLC addresses), the clock status byte (documentation examples mark it invalid) and the
    day of week (a Kaifa was caught still naming the previous day ten seconds after midnight).
    """
    if list_type not in supported_lists(profile.vendor):
        raise ValueError(f"{profile.vendor} meters have no list {int(list_type)}")
    spec = SPECS[profile.vendor]
    measured = secondary_side(state, profile.ct_ratio)
    clock = clock_bytes(profile, local_time, clock_status, day_of_week)

    if profile.vendor is Vendor.AIDON:
        body = lists_obis.body(lists_obis.AIDON, profile, list_type, measured, clock)
    elif profile.vendor is Vendor.LANDIS_GYR:
        body = lists_obis.body(lists_obis.LANDIS_GYR, profile, list_type, measured, clock)
    elif profile.vendor is Vendor.KAIFA:
        body = lists_kaifa.body(profile, list_type, measured, clock)
    else:
        body = lists_kamstrup.body(profile, list_type, measured, clock)

    date_time_field = spec.date_time_field
    if profile.vendor is Vendor.KAMSTRUP and profile.legacy_firmware:
        date_time_field = DateTimeField.TAGGED
    header_time = b"" if date_time_field is DateTimeField.ABSENT else clock
    apdu = axdr.data_notification(
        spec.invoke_id if invoke_id is None else invoke_id,
        date_time_field.value + header_time,
        body,
    )
    return build_frame(
        apdu,
        dest=spec.dest if dest_address is None else dest_address,
        src=spec.src if src_address is None else src_address,
        control=spec.control,
    )
