"""A-XDR encoding of the COSEM data types the HAN lists use, and the Data-Notification APDU.

Tags (IEC 62056-6-2 / DLMS Blue Book): 00 null-data, 01 array, 02 structure, 06 double-long-unsigned
(u32), 09 octet-string, 0A visible-string, 0F integer (i8), 10 long (i16), 12 long-unsigned (u16),
16 enum. Lengths and counts below 128 are one byte, which every HAN list stays within.
"""

from __future__ import annotations

import math

DATA_NOTIFICATION = 0x0F

NULL = b"\x00"

# Units from the COSEM unit enumeration that the HAN lists carry.
UNIT_WH = 0x1E
UNIT_VARH = 0x20
UNIT_W = 0x1B
UNIT_VAR = 0x1D
UNIT_A = 0x21
UNIT_V = 0x23


def _length(n: int) -> bytes:
    if not 0 <= n < 0x80:
        raise ValueError(f"length {n} needs the long A-XDR length form, which HAN lists never use")
    return bytes((n,))


def array(count: int) -> bytes:
    return b"\x01" + _length(count)


def structure(count: int) -> bytes:
    return b"\x02" + _length(count)


def octet_string(value: bytes) -> bytes:
    return b"\x09" + _length(len(value)) + value


def visible_string(value: bytes) -> bytes:
    return b"\x0a" + _length(len(value)) + value


def obis(code: str) -> bytes:
    """An OBIS code 'A-B:C.D.E.F' (F defaults to 255) as its 6-byte octet string."""
    group_ab, _, rest = code.partition(":")
    a, b = (int(x) for x in group_ab.split("-"))
    parts = [int(x) for x in rest.split(".")]
    if len(parts) == 3:
        parts.append(255)
    raw = bytes((a, b, *parts))
    if len(raw) != 6:
        raise ValueError(f"malformed OBIS code {code!r}")
    return octet_string(raw)


def scaled(value: float, scaler: int) -> int:
    """The integer a meter sends for `value` at 10**scaler resolution (nearest, half away from 0)."""
    if not math.isfinite(value):
        raise ValueError(f"cannot encode non-finite value {value}")
    x = value / 10.0**scaler
    return math.floor(abs(x) + 0.5) * (1 if x >= 0 else -1)


def _clamp(n: int, lo: int, hi: int) -> int:
    # A meter saturates at its register's range rather than wrapping around.
    return max(lo, min(hi, n))


def u32(n: int) -> bytes:
    return b"\x06" + _clamp(n, 0, 0xFFFFFFFF).to_bytes(4, "big")


def i16(n: int) -> bytes:
    return b"\x10" + _clamp(n, -0x8000, 0x7FFF).to_bytes(2, "big", signed=True)


def u16(n: int) -> bytes:
    return b"\x12" + _clamp(n, 0, 0xFFFF).to_bytes(2, "big")


def scaler_unit(scaler: int, unit: int) -> bytes:
    return structure(2) + b"\x0f" + scaler.to_bytes(1, "big", signed=True) + b"\x16" + bytes((unit,))


def data_notification(invoke_id: int, date_time_field: bytes, body: bytes) -> bytes:
    """Data-Notification: tag, long-invoke-id-and-priority, the date-time field as the vendor
    writes it (b"\\x00" for none, b"\\x0c"+12 bytes, or b"\\x09\\x0c"+12 bytes), notification body."""
    return bytes((DATA_NOTIFICATION,)) + invoke_id.to_bytes(4, "big") + date_time_field + body
