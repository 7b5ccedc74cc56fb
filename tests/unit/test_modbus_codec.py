"""The register codec: values in 16-bit registers as the vendors' documents lay them out."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.codec import (
    BadRegisterValue,
    RegisterSpec,
    ValueType,
    WordOrder,
    decode,
    decode_raw,
    decode_string,
    encode,
)


def spec(
    kind: ValueType, order: WordOrder = WordOrder.BIG, scale: float = 1.0, length: int | None = None
) -> RegisterSpec:
    return RegisterSpec("x", 100, kind, word_order=order, scale=scale, length=length)


def test_an_ieee_float_high_word_first() -> None:
    # 230.0 is 0x43660000: the high word 0x4366 comes first on a big-word-order device.
    assert decode(spec(ValueType.F32), [0x4366, 0x0000]) == 230.0
    assert decode(spec(ValueType.F32, WordOrder.LITTLE), [0x0000, 0x4366]) == 230.0
    assert encode(spec(ValueType.F32), 16.0) == [0x4180, 0x0000]


def test_signed_and_scaled_integers() -> None:
    assert decode(spec(ValueType.S16), [0xFFFF]) == -1.0
    assert decode(spec(ValueType.U16), [0xFFFF]) == 65535.0
    # 16 A in mA, low word first (a Carlo Gavazzi-style s32).
    assert decode(spec(ValueType.S32, WordOrder.LITTLE, 0.001), [16000, 0]) == pytest.approx(16.0)
    assert encode(spec(ValueType.U32, scale=0.001), 16.0) == [0, 16000]
    assert decode_raw(spec(ValueType.U32), [0x0001, 0x0400]) == 0x00010400


def test_a_double_energy_register() -> None:
    words = [int.from_bytes(struct.pack(">d", 1_234_567.5)[k : k + 2], "big") for k in range(0, 8, 2)]
    assert decode(spec(ValueType.F64), words) == 1_234_567.5


def test_strings_stop_at_nul_and_drop_padding() -> None:
    s = spec(ValueType.STRING, length=3)
    assert decode_string(s, [0x4232, 0x0000, 0x0000]) == "B2"
    assert decode_string(s, [0x4331, 0x2020, 0x2020]) == "C1"


@pytest.mark.parametrize(
    ("kind", "words", "why"),
    [
        (ValueType.F32, [0x7FC0, 0x0000], "not a reading"),  # NaN
        (ValueType.F32, [0x7F80, 0x0000], "not a reading"),  # +inf
        (ValueType.U32, [0x0001], "spans 2"),
        (ValueType.U16, [0x1_0000], "outside 0..65535"),
    ],
)
def test_registers_that_hold_no_usable_value_are_refused(kind: ValueType, words: list[int], why: str) -> None:
    with pytest.raises(BadRegisterValue, match=why):
        decode(spec(kind), words)


def test_a_value_outside_the_type_is_not_written() -> None:
    with pytest.raises(BadRegisterValue, match="outside u16"):
        encode(spec(ValueType.U16), 70_000)
    with pytest.raises(BadRegisterValue, match="outside u16"):
        encode(spec(ValueType.U16), -1)
    with pytest.raises(BadRegisterValue):
        encode(spec(ValueType.F32), math.nan)


_INT_RANGES = {
    ValueType.U16: (0, 2**16 - 1),
    ValueType.S16: (-(2**15), 2**15 - 1),
    ValueType.U32: (0, 2**32 - 1),
    ValueType.S32: (-(2**31), 2**31 - 1),
    ValueType.U64: (0, 2**53),  # exact in a float
}


@given(
    kind=st.sampled_from(sorted(_INT_RANGES)),
    order=st.sampled_from(list(WordOrder)),
    data=st.data(),
)
def test_integers_round_trip(kind: ValueType, order: WordOrder, data: st.DataObject) -> None:
    low, high = _INT_RANGES[kind]
    value = data.draw(st.integers(low, high))
    s = spec(kind, order)
    words = encode(s, value)
    assert len(words) == s.count
    assert all(0 <= w <= 0xFFFF for w in words)
    assert decode(s, words) == value


@given(
    value=st.floats(allow_nan=False, allow_infinity=False, width=32), order=st.sampled_from(list(WordOrder))
)
def test_floats_round_trip(value: float, order: WordOrder) -> None:
    s = spec(ValueType.F32, order)
    assert decode(s, encode(s, value)) == value


@given(words=st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=2))
def test_any_two_registers_decode_or_are_refused_as_a_float(words: list[int]) -> None:
    try:
        value = decode(spec(ValueType.F32), words)
    except BadRegisterValue:
        return
    assert math.isfinite(value)
