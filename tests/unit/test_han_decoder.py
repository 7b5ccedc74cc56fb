"""Decoding the captured lists: every value, vendor quirks, CT ratio, rejections, segments."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from drivers.contracts import MeterList, MeterReading, MeterVendor, ReceiveTime
from drivers.han.decoder import HanStreamDecoder, decode_payload
from drivers.han.lists import parse_vendor
from drivers.han.meter_time import METER_TIMEZONE
from drivers.han.reasons import DropReason, FrameRejected
from drivers.han.records import RECORD_FIELDS, reading_record
from tests.support.han import (
    RECEIVED_UTC,
    CorpusFrame,
    build_frame,
    frame,
    information_field,
    valid_frames,
    values_match,
)

RECEIVED = ReceiveTime(monotonic_s=123.0, utc=RECEIVED_UTC)
# A power-only list in the Aidon layout does not say who made the meter; alone it reads as Aidon.
NEEDS_STREAM_CONTEXT = {"lg_e350_embriq_list1"}


def decode(raw: bytes, *, ct_ratio: float = 1.0, vendor: MeterVendor | None = None) -> MeterReading:
    return decode_payload(information_field(raw), RECEIVED, ct_ratio=ct_ratio, vendor=vendor)


def corpus_values(reading: MeterReading) -> dict[str, object]:
    record = reading_record(reading)
    del record["vendor"], record["list"]
    return record


@pytest.mark.parametrize("item", valid_frames(), ids=lambda f: f.id)
def test_every_valid_frame_decodes_to_its_expected_values(item: CorpusFrame) -> None:
    decoder = HanStreamDecoder()
    readings = decoder.feed(item.raw, RECEIVED)
    assert len(readings) == 1, decoder.counters
    reading = readings[0]
    values = corpus_values(reading)
    assert values_match(values, item.expected) == []
    # ints where the corpus has ints (W, Wh, Kamstrup volts), floats where it has floats.
    for key, expected in item.expected.items():
        assert type(values[key]) is type(expected), key
    for absent in item.absent_in_frame:
        assert getattr(reading, absent) is None
    assert reading.list_type == MeterList(item.list or 3)  # the Swedish Aidon variant has list 2 + energy
    if item.id not in NEEDS_STREAM_CONTEXT:
        assert reading_record(reading)["vendor"] == item.vendor
    assert reading.received is RECEIVED


def test_no_value_is_invented() -> None:
    """A field the frame does not carry stays None: never 0."""
    for item in valid_frames():
        reading = decode(item.raw)
        present = {name for name in RECORD_FIELDS if getattr(reading, name) is not None}
        assert present == set(item.expected) - {"timestamp"}, item.id


def test_meter_time_is_oslo_wall_clock() -> None:
    summer = decode(frame("aidon_6534_tn_list3_a").raw).meter_time
    winter = decode(frame("aidon_6534_tn_list3_1600").raw).meter_time
    assert summer is not None
    assert winter is not None
    assert summer.tzinfo is METER_TIMEZONE
    assert summer.utcoffset() == timedelta(hours=2)
    assert winter.utcoffset() == timedelta(hours=1)
    # Kaifa list 3: the clock object, not the header date-time.
    kaifa = decode(frame("kaifa_ma304h3e_it_list3_2017").raw).meter_time
    assert kaifa == datetime(2017, 9, 13, 0, 0, 10, tzinfo=METER_TIMEZONE)


def test_aidon_list_1_and_2_carry_no_time() -> None:
    assert decode(frame("aidon_6534_list1_a").raw).meter_time is None
    assert decode(frame("aidon_6534_tn_list2").raw).meter_time is None


@pytest.mark.parametrize(
    "frame_id", ["aidon_6540_it_ct_list2_missing_il2", "aidon_6525_it_list3_missing_il2_redacted"]
)
def test_three_wire_aidon_leaves_il2_unknown(frame_id: str) -> None:
    reading = decode(frame(frame_id).raw)
    assert reading.current_l2_a is None
    assert reading.current_a("L2") is None
    assert reading.current_l1_a is not None
    assert reading.current_l3_a is not None
    assert reading.voltage_l2_v is not None


def test_redacted_frame_decodes_when_framing_is_bypassed() -> None:
    """The publisher's edit broke its FCS, not its layout: 17 elements, no IL2."""
    item = frame("aidon_6525_it_list3_missing_il2_redacted")
    assert values_match(corpus_values(decode(item.raw)), item.expected) == []
    assert HanStreamDecoder().feed(item.raw, RECEIVED) == []


def test_oss_brikken_frame_decodes_once_the_inserted_carriage_returns_are_removed() -> None:
    item = frame("aidon_6525_it_list2_oss_brikken_crlf_corrupted")
    repaired = item.raw.replace(b"\x0d\x0a", b"\x0a")
    assert len(item.raw) - len(repaired) == 3
    # The FCS was cut off at the declared length, so the information field runs to the end.
    info = repaired[repaired.index(b"\xe6\xe7\x00") :]
    reading = decode_payload(info, RECEIVED)
    assert values_match(corpus_values(reading), item.row["expected_if_repaired"]) == []
    assert reading.current_l2_a is None


def test_landis_gyr_power_list_is_labelled_by_the_stream() -> None:
    decoder = HanStreamDecoder()
    full = decoder.feed(frame("lg_e350_embriq_it_list2").raw, RECEIVED)
    power = decoder.feed(frame("lg_e350_embriq_list1").raw, RECEIVED)
    assert [r.vendor for r in full + power] == [MeterVendor.LANDIS_GYR] * 2
    assert power[0].list_type is MeterList.POWER_ONLY


def test_forced_vendor_labels_and_guards() -> None:
    lg_power = frame("lg_e350_embriq_list1").raw
    assert decode(lg_power, vendor=MeterVendor.LANDIS_GYR).vendor is MeterVendor.LANDIS_GYR
    kamstrup = frame("kamstrup_6841131_tn_list1").raw
    assert decode(kamstrup, vendor=MeterVendor.KAMSTRUP).vendor is MeterVendor.KAMSTRUP
    with pytest.raises(FrameRejected) as rejected:
        decode(kamstrup, vendor=MeterVendor.KAIFA)
    assert rejected.value.reason is DropReason.VENDOR_MISMATCH
    assert "Kamstrup_V0001" in rejected.value.detail
    with pytest.raises(FrameRejected) as rejected:
        decode(frame("kaifa_ma304h3e_it_list2_2017").raw, vendor=MeterVendor.AIDON)
    assert rejected.value.reason is DropReason.VENDOR_MISMATCH
    decoder = HanStreamDecoder(vendor=MeterVendor.AIDON)
    assert decoder.feed(kamstrup, RECEIVED) == []
    assert decoder.counters["vendor_mismatch"] == 1


def test_vendor_names() -> None:
    assert parse_vendor("auto") is None
    assert parse_vendor("Landis+Gyr") is MeterVendor.LANDIS_GYR
    assert parse_vendor("landis_gyr") is MeterVendor.LANDIS_GYR
    assert parse_vendor(" Kamstrup ") is MeterVendor.KAMSTRUP
    with pytest.raises(ValueError, match="unknown meter vendor"):
        parse_vendor("iskra")


@pytest.mark.parametrize(
    "frame_id",
    ["aidon_6534_tn_list3_a", "kamstrup_6841121_it_list2_2022", "kaifa_ma304h3e_it_list3_2022"],
)
def test_ct_ratio_scales_current_power_and_energy_not_voltage(frame_id: str) -> None:
    raw = frame(frame_id).raw
    plain = decode(raw)
    scaled = decode(raw, ct_ratio=50.0)
    for name in RECORD_FIELDS:
        before, after = getattr(plain, name), getattr(scaled, name)
        if name.startswith(("current_", "active_power", "reactive_power", "energy_", "reactive_energy")):
            assert after == pytest.approx(before * 50.0), name
        else:
            assert after == before, name
    assert scaled.voltage_l1_v == plain.voltage_l1_v


@pytest.mark.parametrize("ratio", [0.0, -1.0, float("nan"), float("inf")])
def test_ct_ratio_must_be_positive(ratio: float) -> None:
    with pytest.raises(ValueError, match="ct_ratio"):
        HanStreamDecoder(ct_ratio=ratio)


def test_signed_current_when_exporting() -> None:
    reading = decode(frame("aidon_6515_1p_list2_export_negative_current").raw)
    assert reading.current_l1_a == pytest.approx(-5.1)
    assert reading.active_power_export_w == 1146


def test_kamstrup_null_padding_is_absent_not_zero() -> None:
    reading = decode(frame("kamstrup_6861111_1p_list1_nulldata").raw)
    assert reading.current_l1_a == pytest.approx(2.9)
    assert (reading.current_l2_a, reading.current_l3_a) == (None, None)
    assert (reading.voltage_l2_v, reading.voltage_l3_v) == (None, None)


def test_old_kamstrup_date_time_header_with_data_tag() -> None:
    reading = decode(frame("kamstrup_6841121_it_list1_old_09_header").raw)
    assert reading.meter_time == datetime(2017, 10, 20, 3, 43, 30, tzinfo=METER_TIMEZONE)


NOTIFICATION = b"\xe6\xe7\x00\x0f\x40\x00\x00\x00\x00"


def rejection(info: bytes) -> FrameRejected:
    with pytest.raises(FrameRejected) as rejected:
        decode_payload(info, RECEIVED)
    return rejected.value


def test_encrypted_push_is_rejected_with_a_clear_reason() -> None:
    ciphered = b"\xe6\xe7\x00\xdb\x08" + b"KFM\x10\x00\x00\x00\x01" + b"\x30\x30\x00\x00\x01" + bytes(48)
    found = rejection(ciphered)
    assert found.reason is DropReason.ENCRYPTED
    assert "encrypt" in found.detail
    decoder = HanStreamDecoder()
    assert decoder.feed(build_frame(ciphered), RECEIVED) == []
    assert decoder.counters["encrypted"] == 1
    assert decoder.counters["frames"] == 1


@pytest.mark.parametrize(
    ("info", "reason", "detail"),
    [
        (b"\xe6\xe7\x00\xc4\x01\x81\x00\x06\x00\x00\x00\x01", DropReason.UNSUPPORTED_APDU, "0xc4"),
        (b"", DropReason.UNDECODABLE, "empty"),
        (NOTIFICATION[:-1] + b"\x05", DropReason.UNDECODABLE, "date-time form"),
        (NOTIFICATION + b"\x02\x03\x06\x00\x00", DropReason.UNDECODABLE, "runs past"),
        (NOTIFICATION + b"\x02\x01\x06\x00\x00\x00\x01\xff", DropReason.UNDECODABLE, "after the"),
        (NOTIFICATION + b"\x02\x05" + b"\x06\x00\x00\x00\x01" * 5, DropReason.UNDECODABLE, "5 unnamed"),
        (NOTIFICATION + b"\x02\x01" * 12 + b"\x00", DropReason.UNDECODABLE, "nesting"),
        (NOTIFICATION + b"\x02\x01\x13\x00", DropReason.UNDECODABLE, "0x13"),
        (NOTIFICATION + b"\x06\x00\x00\x00\x01", DropReason.UNDECODABLE, "not a non-empty"),
        (NOTIFICATION + b"\x02\x01\x0a\x02hi", DropReason.UNDECODABLE, "number expected"),
        (
            NOTIFICATION + b"\x01\x01\x02\x02\x09\x06\x01\x00\x63\x07\x00\xff\x06\x00\x00\x00\x01",
            DropReason.UNDECODABLE,
            "no known object",
        ),
        (
            NOTIFICATION
            + b"\x01\x01\x02\x03\x09\x06\x01\x00\x01\x07\x00\xff\x06\x00\x00\x00\x01\x02\x02\x0f\x7f\x16\x1b",
            DropReason.UNDECODABLE,
            "scaler 127",
        ),
    ],
)
def test_malformed_content(info: bytes, reason: DropReason, detail: str) -> None:
    found = rejection(info)
    assert found.reason is reason
    assert detail in found.detail


def test_forced_landis_gyr_needs_scalers_in_the_frame() -> None:
    info = NOTIFICATION + b"\x01\x01\x02\x02\x09\x06\x01\x00\x01\x07\x00\xff\x06\x00\x00\x00\x01"
    assert decode_payload(info, RECEIVED, vendor=MeterVendor.AIDON).active_power_import_w == 1
    with pytest.raises(FrameRejected, match="no scaler"):
        decode_payload(info, RECEIVED, vendor=MeterVendor.LANDIS_GYR)


def split_into_segments(info: bytes, parts: int) -> list[bytes]:
    size = -(-len(info) // parts)
    pieces = [info[i : i + size] for i in range(0, len(info), size)]
    return [build_frame(piece, segmented=i < len(pieces) - 1) for i, piece in enumerate(pieces)]


def test_segmented_notification_is_reassembled() -> None:
    raw = frame("aidon_6534_tn_list3_a").raw
    segments = split_into_segments(information_field(raw), 3)
    decoder = HanStreamDecoder()
    readings = [r for segment in segments for r in decoder.feed(segment, RECEIVED)]
    assert len(readings) == 1
    assert corpus_values(readings[0]) == corpus_values(decode(raw))
    assert decoder.counters["frames"] == 3


def test_lost_segment_is_counted_and_the_stream_recovers() -> None:
    raw = frame("aidon_6534_tn_list3_a").raw
    first, _middle, last = split_into_segments(information_field(raw), 3)
    decoder = HanStreamDecoder()
    # The start arrives, then a new notification: the pending one is lost.
    assert decoder.feed(first, RECEIVED) == []
    assert len(decoder.feed(frame("aidon_list1_b").raw, RECEIVED)) == 1
    assert decoder.counters["lost_segments"] == 1
    # A last segment without its start cannot be told from an odd frame; either way it is dropped.
    assert decoder.feed(last, RECEIVED) == []
    assert decoder.rejected == 2
    # A start, then the input ends.
    decoder.feed(first, RECEIVED)
    assert decoder.flush(RECEIVED) == []
    assert decoder.counters["lost_segments"] == 2


def test_stream_counters() -> None:
    decoder = HanStreamDecoder()
    stream = (
        b"".join(f.raw for f in valid_frames()[:5]) + frame("kamstrup_list1_fcs_altered_synthetic_bad").raw
    )
    readings = decoder.feed(stream, RECEIVED) + decoder.flush(RECEIVED)
    counters = decoder.counters
    assert counters["frames"] == counters["readings"] == len(readings) == 5
    assert counters["bad_fcs"] == 1
    assert decoder.rejected == 1
    assert set(counters) >= {reason.value for reason in DropReason} | {"garbage_bytes"}
