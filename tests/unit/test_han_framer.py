"""The HDLC framer on captured frames: lengths not flags, resynchronisation, drop reasons."""

from __future__ import annotations

import pytest

from drivers.han.framer import MAX_FRAME_LENGTH, HdlcFrame, HdlcFramer
from drivers.han.reasons import DropReason
from tests.support.han import (
    CorpusFrame,
    build_frame,
    corpus,
    crc16_x25_bitwise,
    frame,
    information_field,
    rejected_frames,
    valid_frames,
)

# Why each known-bad capture must be dropped (see each frame's `note` in the corpus).
BAD_FRAME_REASONS = {
    "aidon_6525_it_list3_missing_il2_redacted": DropReason.BAD_FCS,  # meter id edited by the publisher
    "aidon_6525_it_list2_oss_brikken_crlf_corrupted": DropReason.MISSING_END_FLAG,  # 0x0D inserted
    "kaifa_list1_lost_bytes_bad": DropReason.TRUNCATED,  # FCS lost on the wire
    "kamstrup_6841131_list1_crc_error_bad": DropReason.BAD_FCS,  # bit errors
    "kamstrup_list1_truncated_bad": DropReason.TRUNCATED,  # cut after 125 of 228 bytes
    "kamstrup_list1_fcs_altered_synthetic_bad": DropReason.BAD_FCS,
}


def run(data: bytes, *, chunk: int | None = None) -> tuple[list[HdlcFrame], HdlcFramer]:
    framer = HdlcFramer()
    frames: list[HdlcFrame] = []
    if chunk is None:
        frames += framer.feed(data)
    else:
        for i in range(0, len(data), chunk):
            frames += framer.feed(data[i : i + chunk])
    frames += framer.flush()
    return frames, framer


def dropped(framer: HdlcFramer) -> dict[DropReason, int]:
    return {reason: count for reason, count in framer.dropped.items() if count}


def test_every_bad_capture_has_a_reason() -> None:
    assert set(BAD_FRAME_REASONS) == {f.id for f in rejected_frames()}


@pytest.mark.parametrize("item", valid_frames(), ids=lambda f: f.id)
def test_valid_frame_yields_its_information_field(item: CorpusFrame) -> None:
    frames, framer = run(item.raw)
    assert [f.info for f in frames] == [information_field(item.raw)]
    assert not frames[0].segmented
    assert framer.garbage_bytes == 0
    assert dropped(framer) == {}


@pytest.mark.parametrize("item", rejected_frames(), ids=lambda f: f.id)
def test_bad_capture_is_dropped_with_its_reason(item: CorpusFrame) -> None:
    reason = BAD_FRAME_REASONS[item.id]
    alone, framer = run(item.raw)
    assert alone == []
    assert dropped(framer) == {reason: 1}
    assert framer.garbage_bytes == len(item.raw)
    # Followed by a good frame: still dropped for the same reason, and the good frame is found.
    good = frame("kaifa_ma304h3e_list1_2017").raw
    frames, framer = run(item.raw + good)
    assert [f.info for f in frames] == [information_field(good)]
    assert dropped(framer) == {reason: 1}


@pytest.mark.parametrize(
    "frame_id",
    [
        "kaifa_list1_raw_7e_in_payload",
        "aidon_list1_raw_7d_in_payload",
        "kaifa_ma304h3e_it_list2_fcs_ends_7d",
        "kaifa_list1_fcs_7d7d",
        "kamstrup_6841121_it_list1_fcs_ends_7d",
    ],
)
def test_raw_flag_and_escape_bytes_inside_frames_are_data(frame_id: str) -> None:
    raw = frame(frame_id).raw
    assert b"\x7e" in raw[1:-1] or b"\x7d" in raw
    for chunk in (None, 1, 7):
        frames, framer = run(raw, chunk=chunk)
        assert [f.info for f in frames] == [information_field(raw)]
        assert dropped(framer) == {}


def test_whole_corpus_in_one_stream() -> None:
    stream = b"".join(f.raw for f in corpus())
    frames, framer = run(stream)
    assert [f.info for f in frames] == [information_field(f.raw) for f in valid_frames()]
    expected: dict[DropReason, int] = {}
    for reason in BAD_FRAME_REASONS.values():
        expected[reason] = expected.get(reason, 0) + 1
    assert dropped(framer) == expected
    assert framer.garbage_bytes == sum(len(f.raw) for f in rejected_frames())


def test_one_byte_at_a_time_equals_all_at_once() -> None:
    stream = b"\x00\x7e\x7e" + b"".join(f.raw + b"\x7e\xa0\x01" for f in corpus())
    at_once, framer_a = run(stream)
    bytewise, framer_b = run(stream, chunk=1)
    assert at_once == bytewise
    assert framer_a.dropped == framer_b.dropped
    assert framer_a.garbage_bytes == framer_b.garbage_bytes


def test_frames_sharing_a_flag() -> None:
    a, b, c = (f.raw for f in valid_frames()[:3])
    frames, framer = run(a + b[1:] + c[1:])
    assert len(frames) == 3
    assert framer.garbage_bytes == 0


def test_idle_flags_and_noise_between_frames_count_as_garbage() -> None:
    a, b = (f.raw for f in valid_frames()[:2])
    frames, framer = run(b"\x7e\x7e" + a + b"\x7e\x00\xffnoise" + b)
    assert len(frames) == 2
    assert framer.garbage_bytes == 2 + 8
    assert dropped(framer) == {}


def test_frame_starting_inside_a_false_header_is_found() -> None:
    good = frame("aidon_list1_b").raw
    # A flag and format byte followed by rubbish, then the real frame within its claimed length.
    frames, framer = run(b"\x7e\xa0\x80\x41\x08\x83\x13\x00\x00" + good)
    assert [f.info for f in frames] == [information_field(good)]
    assert dropped(framer) == {DropReason.BAD_HCS: 1}


def test_header_failures() -> None:
    info = b"\xe6\xe7\x00\x0f\x00\x00\x00\x00\x00\x02\x01\x06\x00\x00\x00\x01"
    good = build_frame(info)
    bad_hcs = good[:4] + bytes([good[4] ^ 0x04]) + good[5:]
    assert dropped(run(bad_hcs)[1]) == {DropReason.BAD_HCS: 1}
    short = b"\x7e\xa0\x05\x41\x08\x83\x13\x00\x00\x7e"
    assert dropped(run(short)[1]) == {DropReason.BAD_LENGTH: 1}
    unterminated_address = b"\x7e\xa0\x30\x40\x40\x40\x40\x40\x13\x00\x00" + bytes(40) + b"\x7e"
    assert dropped(run(unterminated_address)[1]) == {DropReason.BAD_ADDRESS: 1}


def test_corrupted_frame_is_counted_once_not_per_inner_flag() -> None:
    raw = bytearray(frame("kaifa_list1_raw_7e_in_payload").raw)
    raw[20] ^= 0x10
    frames, framer = run(bytes(raw) + frame("aidon_list1_b").raw)
    assert len(frames) == 1
    assert dropped(framer) == {DropReason.BAD_FCS: 1}


def test_truncated_frame_followed_by_bad_frame_counts_both() -> None:
    truncated = frame("kamstrup_list1_truncated_bad").raw
    bad = frame("kamstrup_list1_fcs_altered_synthetic_bad").raw
    frames, framer = run(truncated + bad)
    assert frames == []
    assert dropped(framer) == {DropReason.TRUNCATED: 1, DropReason.BAD_FCS: 1}


def test_incomplete_frame_waits_then_completes() -> None:
    raw = frame("kamstrup_6841131_tn_list1").raw
    framer = HdlcFramer()
    assert framer.feed(raw[:100]) == []
    assert framer.buffered == 100
    assert len(framer.feed(raw[100:])) == 1
    assert framer.buffered == 1  # the closing flag, which may open the next frame


def test_buffer_stays_bounded() -> None:
    framer = HdlcFramer()
    # A header with a valid HCS that claims the maximum length, then endless noise without flags.
    fields = bytes([0xA7, 0xFF, 0x41, 0x08, 0x83, 0x13])
    framer.feed(b"\x7e" + fields + crc16_x25_bitwise(fields).to_bytes(2, "little"))
    noise = bytes(range(0x80)) * 8  # no 0x7E
    for _ in range(50):
        framer.feed(noise)
        assert framer.buffered <= MAX_FRAME_LENGTH + 2 + 16
    framer.flush()
    assert framer.dropped[DropReason.MISSING_END_FLAG] == 1
    assert framer.buffered == 0


def test_segmented_flag_is_reported() -> None:
    frames, _ = run(build_frame(b"\xe6\xe7\x00\x0f", segmented=True))
    assert [f.segmented for f in frames] == [True]


def test_flush_drops_a_half_frame_and_resets() -> None:
    raw = frame("aidon_6534_tn_list2").raw
    framer = HdlcFramer()
    framer.feed(raw[:50])
    assert framer.flush() == []
    assert framer.dropped[DropReason.TRUNCATED] == 1
    assert len(framer.feed(raw)) == 1
