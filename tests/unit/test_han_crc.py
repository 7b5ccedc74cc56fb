from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from drivers.han.crc import crc16_x25, crc_matches
from tests.support.han import crc16_x25_bitwise, valid_frames


def test_check_value() -> None:
    assert crc16_x25(b"123456789") == 0x906E


def test_empty_input() -> None:
    assert crc16_x25(b"") == crc16_x25_bitwise(b"") == 0x0000


@given(st.binary(max_size=600))
def test_matches_bitwise_reference(data: bytes) -> None:
    assert crc16_x25(data) == crc16_x25_bitwise(data)
    assert crc16_x25(bytearray(data)) == crc16_x25(memoryview(data)) == crc16_x25(data)


def test_fcs_of_every_valid_corpus_frame() -> None:
    for frame in valid_frames():
        body = frame.raw[1:-3]
        assert crc_matches(body, frame.raw[-3], frame.raw[-2]), frame.id
        assert not crc_matches(body, frame.raw[-3] ^ 0x01, frame.raw[-2]), frame.id
