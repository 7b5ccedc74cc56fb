from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from drivers.han.meter_time import METER_TIMEZONE, cosem_datetime


def cosem(
    year: int, month: int, day: int, hour: int, minute: int, second: int, *, deviation: int, status: int
) -> bytes:
    return (
        year.to_bytes(2, "big")
        + bytes([month, day, 0xFF, hour, minute, second, 0xFF])
        + deviation.to_bytes(2, "big", signed=True)
        + bytes([status])
    )


def test_plain_time() -> None:
    stated = cosem_datetime(cosem(2024, 10, 30, 17, 32, 0, deviation=-0x8000, status=0))
    assert stated == datetime(2024, 10, 30, 17, 32, tzinfo=METER_TIMEZONE)
    assert stated is not None
    assert stated.utcoffset() == timedelta(hours=1)


def test_hundredths() -> None:
    raw = bytearray(cosem(2024, 1, 1, 0, 0, 1, deviation=-60, status=0))
    raw[8] = 25
    stated = cosem_datetime(bytes(raw))
    assert stated is not None
    assert stated.microsecond == 250_000


@pytest.mark.parametrize(
    ("deviation", "status", "offset_h"),
    [
        (-120, 0x00, 2),  # deviation names summer time
        (-60, 0x80, 1),  # deviation names winter time, it wins over the status bit
        (-0x8000, 0x80, 2),  # deviation unspecified: the daylight-saving bit decides
        (-0x8000, 0x00, 1),
        (0, 0x00, 2),  # Aidon's meaningless deviation 0: the first instant
        (-0x8000, 0xFF, 2),  # nothing known: the first instant
    ],
)
def test_repeated_autumn_hour(deviation: int, status: int, offset_h: int) -> None:
    stated = cosem_datetime(cosem(2023, 10, 29, 2, 30, 0, deviation=deviation, status=status))
    assert stated is not None
    assert stated.replace(tzinfo=None) == datetime(2023, 10, 29, 2, 30)
    assert stated.utcoffset() == timedelta(hours=offset_h)


@pytest.mark.parametrize(
    "raw",
    [
        cosem(0xFFFF, 1, 1, 0, 0, 0, deviation=0, status=0),
        cosem(2024, 0xFF, 1, 0, 0, 0, deviation=0, status=0),
        cosem(2024, 13, 1, 0, 0, 0, deviation=0, status=0),
        cosem(2024, 2, 30, 0, 0, 0, deviation=0, status=0),
        cosem(2024, 2, 1, 24, 0, 0, deviation=0, status=0),
        b"\x07\xe8\x01",
    ],
)
def test_unspecified_or_invalid_is_none(raw: bytes) -> None:
    assert cosem_datetime(raw) is None
