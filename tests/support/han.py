"""The captured HAN frames (../shared/data/han/frames.jsonl) and frame-building helpers for tests."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from tests.support import HAN_FRAMES

RECEIVED_UTC = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)


@dataclass(frozen=True)
class CorpusFrame:
    id: str
    vendor: str
    list: int | None
    raw: bytes
    expected: dict[str, Any]
    expect_reject: bool
    absent_in_frame: tuple[str, ...]
    row: dict[str, Any]


@cache
def corpus() -> tuple[CorpusFrame, ...]:
    frames = []
    for line in HAN_FRAMES.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        frames.append(
            CorpusFrame(
                id=row["id"],
                vendor=row["vendor"],
                list=row["list"],
                raw=bytes.fromhex(row["hex"]),
                expected=row["expected"],
                expect_reject=bool(row.get("expect_reject")),
                absent_in_frame=tuple(row.get("absent_in_frame", ())),
                row=row,
            )
        )
    return tuple(frames)


def valid_frames() -> tuple[CorpusFrame, ...]:
    return tuple(frame for frame in corpus() if not frame.expect_reject)


def rejected_frames() -> tuple[CorpusFrame, ...]:
    return tuple(frame for frame in corpus() if frame.expect_reject)


def frame(frame_id: str) -> CorpusFrame:
    for candidate in corpus():
        if candidate.id == frame_id:
            return candidate
    raise KeyError(frame_id)


def by_vendor(vendor: str) -> tuple[CorpusFrame, ...]:
    return tuple(frame for frame in valid_frames() if frame.vendor == vendor)


def crc16_x25_bitwise(data: bytes) -> int:
    """Reference CRC-16/X.25, bit by bit, independent of drivers.han.crc."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


def header_length(raw: bytes) -> int:
    """Bytes from the opening flag to the end of the HCS, for a frame of the corpus."""
    i = 3
    for _address in range(2):
        while not raw[i] & 1:
            i += 1
        i += 1
    return i + 1 + 2  # control, HCS


def information_field(raw: bytes) -> bytes:
    """The information field of a frame, read by position (no checks) - also of damaged frames."""
    return raw[header_length(raw) : -3]


def build_frame(
    info: bytes,
    *,
    segmented: bool = False,
    address: bytes = b"\x41\x08\x83",
    control: int = 0x13,
) -> bytes:
    """A type-3 HDLC frame around `info` with correct HCS and FCS (computed by the reference CRC)."""
    length = 2 + len(address) + 1 + 2 + len(info) + 2
    assert length <= 0x7FF
    header = bytes([0xA0 | (0x08 if segmented else 0) | (length >> 8), length & 0xFF]) + address
    header += bytes([control])
    hcs = crc16_x25_bitwise(header)
    body = header + hcs.to_bytes(2, "little") + info
    fcs = crc16_x25_bitwise(body)
    return b"\x7e" + body + fcs.to_bytes(2, "little") + b"\x7e"


def values_match(actual: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """Differences between a decoded record and a corpus `expected` dict (numbers within 1e-9)."""
    problems = []
    for key in sorted(set(actual) | set(expected)):
        if key not in actual:
            problems.append(f"{key}: missing, expected {expected[key]!r}")
        elif key not in expected:
            problems.append(f"{key}: unexpected {actual[key]!r}")
        elif isinstance(expected[key], str) or isinstance(actual[key], str):
            if actual[key] != expected[key]:
                problems.append(f"{key}: {actual[key]!r} != {expected[key]!r}")
        elif not math.isclose(actual[key], expected[key], rel_tol=1e-12, abs_tol=1e-9):
            problems.append(f"{key}: {actual[key]!r} != {expected[key]!r}")
    return problems
