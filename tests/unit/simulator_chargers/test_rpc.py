"""OCPP-J framing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.chargers.rpc import Call, CallError, CallResult, FrameError, decode, encode


@pytest.mark.parametrize(
    "frame",
    [
        Call("1", "Heartbeat", {}),
        CallResult("abc", {"currentTime": "2026-01-01T00:00:00Z"}),
        CallError("x", "NotImplemented", "no", {"a": 1}),
    ],
)
def test_round_trip(frame: Call | CallResult | CallError) -> None:
    assert decode(encode(frame)) == frame


def test_encoding_is_the_ocpp_j_array() -> None:
    assert encode(Call("7", "Authorize", {"idTag": "A"})) == '[2,"7","Authorize",{"idTag":"A"}]'


@pytest.mark.parametrize(
    ("text", "unique_id"),
    [
        ("not json", None),
        ('{"a": 1}', None),
        ("[2]", None),
        ('[2, 5, "Heartbeat", {}]', None),
        ('[2, "1", "Heartbeat"]', "1"),
        ('[2, "1", 3, {}]', "1"),
        ('[9, "1", {}]', "1"),
        ('[3, "1", []]', "1"),
        ('[4, "1", "GenericError"]', "1"),
        ('[2, "' + "x" * 37 + '", "Heartbeat", {}]', None),
    ],
)
def test_malformed_frames(text: str, unique_id: str | None) -> None:
    with pytest.raises(FrameError) as info:
        decode(text)
    assert info.value.unique_id == unique_id


@given(st.text(max_size=200) | st.binary(max_size=200))
def test_decode_never_raises_anything_but_frame_error(data: str | bytes) -> None:
    with contextlib.suppress(FrameError):
        decode(data)
