"""Modbus framing and the server side of functions 3, 4, 6 and 16, from the specification
(MODBUS Application Protocol 1.1b3; MODBUS over serial line 1.02; MODBUS Messaging on TCP/IP 1.0b).

Pure: requests in, responses out. A `Bank` holds a device's registers; `answer(bank, pdu)` is the
response PDU (an exception response for an illegal function, address or value).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

READ_HOLDING = 3
READ_INPUT = 4
WRITE_SINGLE = 6
WRITE_MULTIPLE = 16
ILLEGAL_FUNCTION = 1
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3
DEVICE_FAILURE = 4
DEVICE_BUSY = 6


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS: polynomial 0x8005 reflected (0xA001), init 0xFFFF; sent low byte first.
    crc16_modbus(b"123456789") == 0x4B37."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(frame: bytes) -> bytes:
    return frame + struct.pack("<H", crc16_modbus(frame))


@dataclass(slots=True)
class Bank:
    """A device's registers. Addresses not in a table are illegal; `on_write` sees each write
    (address, values) before it is stored and may refuse it by returning an exception code."""

    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)
    writable: set[int] = field(default_factory=set)
    on_write: Callable[[int, list[int]], int | None] | None = None

    def set_words(self, table: str, address: int, words: list[int]) -> None:
        target = self.holding if table == "holding" else self.input
        for k, word in enumerate(words):
            target[address + k] = word & 0xFFFF


def exception(function: int, code: int) -> bytes:
    return bytes((function | 0x80, code))


def answer(bank: Bank, pdu: bytes) -> bytes:
    if not pdu:
        return exception(0, ILLEGAL_FUNCTION)
    function = pdu[0]
    if function in (READ_HOLDING, READ_INPUT):
        if len(pdu) != 5:
            return exception(function, ILLEGAL_VALUE)
        start, count = struct.unpack(">HH", pdu[1:5])
        if not 1 <= count <= 125:
            return exception(function, ILLEGAL_VALUE)
        table = bank.holding if function == READ_HOLDING else bank.input
        try:
            words = [table[start + k] for k in range(count)]
        except KeyError:
            return exception(function, ILLEGAL_ADDRESS)
        return bytes((function, 2 * count)) + b"".join(struct.pack(">H", w) for w in words)
    if function == WRITE_SINGLE:
        if len(pdu) != 5:
            return exception(function, ILLEGAL_VALUE)
        address, value = struct.unpack(">HH", pdu[1:5])
        refused = _write(bank, address, [value])
        return exception(function, refused) if refused else pdu
    if function == WRITE_MULTIPLE:
        if len(pdu) < 6:
            return exception(function, ILLEGAL_VALUE)
        address, count, size = struct.unpack(">HHB", pdu[1:6])
        if not 1 <= count <= 123 or size != 2 * count or len(pdu) != 6 + size:
            return exception(function, ILLEGAL_VALUE)
        values = [struct.unpack(">H", pdu[6 + 2 * k : 8 + 2 * k])[0] for k in range(count)]
        refused = _write(bank, address, values)
        return exception(function, refused) if refused else pdu[:5]
    return exception(function, ILLEGAL_FUNCTION)


def _write(bank: Bank, address: int, values: list[int]) -> int | None:
    if any(address + k not in bank.writable for k in range(len(values))):
        return ILLEGAL_ADDRESS
    if bank.on_write is not None:
        refused = bank.on_write(address, values)
        if refused:
            return refused
    for k, value in enumerate(values):
        bank.holding[address + k] = value
    return None


def rtu_request_length(buffer: bytes) -> int | None:
    """The length of the RTU request frame at the start of `buffer` (unit, PDU, CRC), None while
    too little has arrived to tell. An unknown function is framed as the shortest request."""
    if len(buffer) < 2:
        return None
    function = buffer[1]
    if function in (READ_HOLDING, READ_INPUT, WRITE_SINGLE):
        return 8
    if function == WRITE_MULTIPLE:
        return None if len(buffer) < 7 else 9 + buffer[6]
    return 4
