"""CRC-16/X.25, the HDLC header check (HCS) and frame check (FCS) of IEC 62056-46.

Polynomial 0x1021 reflected, init 0xFFFF, xorout 0xFFFF, sent LSB first. `binascii.crc_hqx` computes
the non-reflected CRC-16/CCITT in C; feeding it bit-reversed bytes and bit-reversing the result gives
the reflected CRC, about fifty times faster than a table loop in Python - the framer checks every byte
it accepts, so this is on the hot path.
"""

from __future__ import annotations

import binascii

_REVERSED_BYTES = bytes(int(f"{value:08b}"[::-1], 2) for value in range(256))


def _reverse16(value: int) -> int:
    return (_REVERSED_BYTES[value & 0xFF] << 8) | _REVERSED_BYTES[value >> 8]


def crc16_x25(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/X.25 of `data` (check value of b"123456789" is 0x906E)."""
    return _reverse16(binascii.crc_hqx(bytes(data).translate(_REVERSED_BYTES), 0xFFFF)) ^ 0xFFFF


def crc_matches(data: bytes | bytearray | memoryview, low: int, high: int) -> bool:
    """True when the check sent as bytes `low`, `high` (LSB first) is the CRC of `data`."""
    crc = crc16_x25(data)
    return (crc & 0xFF) == low and (crc >> 8) == high
