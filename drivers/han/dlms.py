"""The DLMS/COSEM application layer of a HAN push: LLC header and data-notification APDU."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.han.axdr import AxdrError, Value, decode
from drivers.han.reasons import DropReason, FrameRejected

LLC_HEADER = b"\xe6\xe7\x00"  # destination LSAP E6, source LSAP E7 (a response), quality 00
TAG_DATA_NOTIFICATION = 0x0F
# general-glo-ciphering, general-ded-ciphering, general-ciphering: the meter encrypts its pushes.
CIPHERED_TAGS = frozenset({0xDB, 0xDC, 0xDD})
DATE_TIME_BYTES = 12


@dataclass(frozen=True, slots=True)
class DataNotification:
    invoke_id: int
    header_time: bytes | None  # the 12-byte COSEM date-time of the APDU header, when sent
    body: Value


def parse_notification(info: bytes) -> DataNotification:
    """Parse the information field of a HAN frame. Raises FrameRejected with the drop reason."""
    info = bytes(info)  # the decoder tells OBIS codes by `type(...) is bytes`
    apdu = info[3:] if info[:3] == LLC_HEADER else info
    if not apdu:
        raise FrameRejected(DropReason.UNDECODABLE, "empty information field")
    tag = apdu[0]
    if tag in CIPHERED_TAGS:
        raise FrameRejected(
            DropReason.ENCRYPTED,
            f"ciphered APDU (tag 0x{tag:02x}): the meter encrypts its HAN port; no key is configured",
        )
    if tag != TAG_DATA_NOTIFICATION:
        raise FrameRejected(DropReason.UNSUPPORTED_APDU, f"APDU tag 0x{tag:02x} is not a data-notification")
    if len(apdu) < 6:
        raise FrameRejected(DropReason.UNDECODABLE, "data-notification shorter than its header")
    invoke_id = int.from_bytes(apdu[1:5], "big")
    # The optional date-time: absent (00), an A-XDR octet-string (0C + 12 bytes), or the same
    # tagged as Data (09 0C + 12 bytes) as older Kamstrup and all Kaifa firmware send it.
    pos = 5
    header_time: bytes | None = None
    marker = apdu[pos]
    if marker == 0x00:
        pos += 1
    elif marker == DATE_TIME_BYTES:
        header_time = apdu[pos + 1 : pos + 1 + DATE_TIME_BYTES]
        pos += 1 + DATE_TIME_BYTES
    elif marker == 0x09 and pos + 1 < len(apdu) and apdu[pos + 1] == DATE_TIME_BYTES:
        header_time = apdu[pos + 2 : pos + 2 + DATE_TIME_BYTES]
        pos += 2 + DATE_TIME_BYTES
    else:
        raise FrameRejected(DropReason.UNDECODABLE, f"unknown date-time form 0x{marker:02x} in the header")
    if header_time is not None and len(header_time) != DATE_TIME_BYTES:
        raise FrameRejected(DropReason.UNDECODABLE, "header date-time runs past the end")
    try:
        body, end = decode(apdu, pos)
    except AxdrError as exc:
        raise FrameRejected(DropReason.UNDECODABLE, f"notification body: {exc}") from None
    if end != len(apdu):
        raise FrameRejected(DropReason.UNDECODABLE, f"{len(apdu) - end} bytes after the notification body")
    return DataNotification(invoke_id, header_time, body)
