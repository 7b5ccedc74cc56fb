"""HDLC frame type 3 as the Norwegian AMS meters push it on the HAN port.

    7E | A0xx format+length | dest | src | control | HCS | LLC E6 E7 00 | APDU | FCS | 7E

The length is the 11 bits after the format type nibble and counts every byte between the flags.
The meters do not byte-stuff: 0x7E and 0x7D appear raw inside frames, and readers must take the
frame length from the format field. Addresses are in HDLC extended form (the last byte of an
address has its low bit set), which is why they are carried here as raw bytes.
"""

from __future__ import annotations

from .crc import crc_bytes

FLAG = 0x7E
LLC_HEADER = bytes((0xE6, 0xE7, 0x00))
FORMAT_TYPE_3 = 0xA000
MAX_FRAME_LENGTH = 0x7FF


def _check_address(name: str, address: bytes) -> None:
    if not address or not address[-1] & 1 or any(b & 1 for b in address[:-1]):
        raise ValueError(f"{name} address {address.hex()} is not an HDLC extended address")


def build_frame(apdu: bytes, *, dest: bytes, src: bytes, control: int) -> bytes:
    """One complete frame, flags included, around a DLMS APDU."""
    _check_address("destination", dest)
    _check_address("source", src)
    header_len = 2 + len(dest) + len(src) + 1
    info = LLC_HEADER + apdu
    length = header_len + 2 + len(info) + 2
    if length > MAX_FRAME_LENGTH:
        raise ValueError(f"frame of {length} bytes does not fit the 11-bit length field")
    header = (FORMAT_TYPE_3 | length).to_bytes(2, "big") + dest + src + bytes((control,))
    body = header + crc_bytes(header) + info
    return bytes((FLAG,)) + body + crc_bytes(body) + bytes((FLAG,))
