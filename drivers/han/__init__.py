"""AMS HAN meter driver: HDLC framing, DLMS/COSEM lists of Aidon, Kaifa, Kamstrup and Landis+Gyr.

HanStreamDecoder(ct_ratio=1.0, vendor=None).feed(data, received) -> list[MeterReading]
decode_payload(info, received, ...) -> MeterReading        (one information field, no framing)
HanReader(port, vendor="auto", ct_ratio=1.0, clock=..., sink=...).run()   (the serial port)
"""

from drivers.han.decoder import HanStreamDecoder, decode_payload
from drivers.han.framer import HdlcFrame, HdlcFramer
from drivers.han.lists import DISPLAY_NAMES, parse_vendor
from drivers.han.reader import HanReader, SerialSettings, open_serial
from drivers.han.reasons import DropReason, FrameRejected
from drivers.han.records import reading_record

__all__ = [
    "DISPLAY_NAMES",
    "DropReason",
    "FrameRejected",
    "HanReader",
    "HanStreamDecoder",
    "HdlcFrame",
    "HdlcFramer",
    "SerialSettings",
    "decode_payload",
    "open_serial",
    "parse_vendor",
    "reading_record",
]
