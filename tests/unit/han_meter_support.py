"""Helpers for the virtual meter's tests, written apart from the simulator's own code.

An independent bitwise CRC-16/X.25 and a minimal HDLC splitter, so that a bug in the simulator's
table-driven CRC or framing cannot hide itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.support import HAN_FRAMES


def crc16_x25_bitwise(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


@dataclass(frozen=True)
class FrameCheck:
    length_ok: bool
    hcs_ok: bool
    fcs_ok: bool

    @property
    def ok(self) -> bool:
        return self.length_ok and self.hcs_ok and self.fcs_ok


def control_index(frame: bytes) -> int:
    """Where the control byte is: after the destination and source addresses, each of which ends
    on its first byte with the low bit set."""
    i = 3
    for _ in range(2):
        while not frame[i] & 1:
            i += 1
        i += 1
    return i


def check_frame(frame: bytes) -> FrameCheck:
    if len(frame) < 12 or frame[0] != 0x7E or frame[-1] != 0x7E:
        return FrameCheck(False, False, False)
    declared = int.from_bytes(frame[1:3], "big") & 0x7FF
    length_ok = (frame[1] & 0xF0) == 0xA0 and declared == len(frame) - 2
    hdr_end = control_index(frame) + 1
    hcs = int.from_bytes(frame[hdr_end : hdr_end + 2], "little")
    hcs_ok = crc16_x25_bitwise(frame[1:hdr_end]) == hcs
    fcs = int.from_bytes(frame[-3:-1], "little")
    fcs_ok = crc16_x25_bitwise(frame[1:-3]) == fcs
    return FrameCheck(length_ok, hcs_ok, fcs_ok)


def split_frames(stream: bytes) -> tuple[list[bytes], list[bytes]]:
    """Frames (by the length field, valid or not) and the bytes found between them."""
    frames: list[bytes] = []
    gaps: list[bytes] = []
    gap = bytearray()
    i = 0
    while i < len(stream):
        if stream[i] == 0x7E and i + 2 < len(stream) and stream[i + 1] & 0xF0 == 0xA0:
            end = i + (int.from_bytes(stream[i + 1 : i + 3], "big") & 0x7FF) + 1
            if end < len(stream) and stream[end] == 0x7E:
                gaps.append(bytes(gap))
                gap.clear()
                frames.append(stream[i : end + 1])
                i = end + 1
                continue
        gap.append(stream[i])
        i += 1
    gaps.append(bytes(gap))
    return frames, gaps


def corpus() -> list[dict[str, Any]]:
    with HAN_FRAMES.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
