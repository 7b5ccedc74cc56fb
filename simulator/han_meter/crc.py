"""CRC-16/X.25, the check of HDLC header (HCS) and frame (FCS) on the HAN port.

IEC 62056-46 / ISO 13239: polynomial 0x1021 processed LSB first (reflected 0x8408), init 0xFFFF,
final XOR 0xFFFF, sent least significant byte first. check(b"123456789") == 0x906E.
"""

from __future__ import annotations


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc16_x25(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFF


def crc_bytes(data: bytes) -> bytes:
    """The CRC as it goes on the wire: least significant byte first."""
    return crc16_x25(data).to_bytes(2, "little")
