"""Cuts HDLC frames (IEC 62056-46 frame format type 3) out of a HAN byte stream.

The HAN port does no byte stuffing: 0x7E and 0x7D occur raw inside frames, so a frame is delimited by
its 11-bit length field, not by searching for the closing flag. A candidate frame starts at a 0x7E
followed by a format byte 0xA0-0xAF; it is accepted when its header check (HCS), the closing flag at
the declared length and its frame check (FCS) all agree. On any failure the framer moves one byte past
the candidate's opening flag and searches again, so a valid frame that begins inside garbage or
inside a damaged frame is still found.

Every decision is taken only once all the bytes it depends on are buffered, so the result does not
depend on how the stream was cut into chunks. The buffer never holds more than one maximum-length
frame beyond the chunk being fed.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.han.crc import crc16_x25
from drivers.han.reasons import DropReason

FLAG = 0x7E
MAX_ADDRESS_BYTES = 4
# Format (2) + destination (>= 1) + source (>= 1) + control (1) + HCS (2) + information (>= 1) + FCS (2).
MIN_FRAME_LENGTH = 10
MAX_FRAME_LENGTH = 0x7FF
# Flag, format (2), two addresses of up to 4 bytes, control, HCS: enough to judge any header.
MAX_HEADER_BYTES = 14

_FRAME_REASONS = (
    DropReason.BAD_LENGTH,
    DropReason.BAD_ADDRESS,
    DropReason.BAD_HCS,
    DropReason.BAD_FCS,
    DropReason.MISSING_END_FLAG,
    DropReason.TRUNCATED,
)


@dataclass(frozen=True, slots=True)
class HdlcFrame:
    """One checked frame: its information field and whether more segments of it follow."""

    info: bytes
    segmented: bool


class _Header:
    """Outcome of parsing a header at one position: a frame layout, a rejection, or "need more bytes"."""

    __slots__ = ("info_start", "length", "reason")

    def __init__(self, length: int, info_start: int, reason: DropReason | None) -> None:
        self.length = length
        self.info_start = info_start
        self.reason = reason


_NEED_MORE = _Header(0, 0, None)


def _parse_header(buf: bytearray, pos: int, n: int) -> _Header:
    """Header of the candidate whose opening flag is at `pos` (the format byte is known to be 0xAx)."""
    if pos + 3 > n:
        return _NEED_MORE
    length = ((buf[pos + 1] & 0x07) << 8) | buf[pos + 2]
    if length < MIN_FRAME_LENGTH:
        return _Header(length, 0, DropReason.BAD_LENGTH)
    i = pos + 3
    for _address in range(2):
        for count in range(MAX_ADDRESS_BYTES):
            if i >= n:
                return _NEED_MORE
            byte = buf[i]
            i += 1
            if byte & 0x01:
                break
            if count == MAX_ADDRESS_BYTES - 1:
                return _Header(length, 0, DropReason.BAD_ADDRESS)
    # i is the control byte; HCS covers format, addresses and control.
    hcs_at = i + 1
    info_start = hcs_at + 2
    if info_start + 1 + 2 > pos + 1 + length:
        return _Header(length, 0, DropReason.BAD_LENGTH)
    if info_start > n:
        return _NEED_MORE
    hcs = crc16_x25(buf[pos + 1 : hcs_at])
    if (hcs & 0xFF) != buf[hcs_at] or (hcs >> 8) != buf[hcs_at + 1]:
        return _Header(length, 0, DropReason.BAD_HCS)
    return _Header(length, info_start, None)


class HdlcFramer:
    """Stateful stream framer. `feed()` returns the frames completed by the new bytes."""

    def __init__(self) -> None:
        self._buf = bytearray()
        # Relative to the start of _buf: bytes before accepted_until belong to an accepted frame (its
        # closing flag may open the next one); candidates starting before reject_until lie inside a
        # frame already counted as dropped, so their failures are not counted a second time.
        self._accepted_until = 0
        self._reject_until = 0
        self._dropped = dict.fromkeys(_FRAME_REASONS, 0)
        self._frames = 0
        self._garbage_bytes = 0

    @property
    def frames(self) -> int:
        return self._frames

    @property
    def garbage_bytes(self) -> int:
        """Bytes that belong to no accepted frame (noise, idle flags, the bytes of dropped frames)."""
        return self._garbage_bytes

    @property
    def dropped(self) -> dict[DropReason, int]:
        return dict(self._dropped)

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[HdlcFrame]:
        self._buf += data
        return self._scan(final=False)

    def flush(self) -> list[HdlcFrame]:
        """End of input: an incomplete candidate is dropped as truncated, and what follows is searched."""
        frames = self._scan(final=True)
        self._buf.clear()
        self._accepted_until = self._reject_until = 0
        return frames

    def _drop(self, reason: DropReason, pos: int) -> None:
        if pos >= self._reject_until:
            self._dropped[reason] += 1

    def _scan(self, *, final: bool) -> list[HdlcFrame]:
        buf = self._buf
        n = len(buf)
        pos = 0
        out: list[HdlcFrame] = []
        garbage = 0
        while pos < n:
            start = buf.find(FLAG, pos)
            if start < 0:
                garbage += n - max(pos, self._accepted_until)
                pos = n
                break
            garbage += start - pos
            pos = start
            if pos + 1 >= n:
                if not final:
                    break
                garbage += pos >= self._accepted_until
                pos = n
                break
            if (buf[pos + 1] & 0xF0) != 0xA0:
                # An idle or closing flag, or a 0x7E inside noise: not a frame start.
                garbage += pos >= self._accepted_until
                pos += 1
                continue
            header = _parse_header(buf, pos, n)
            if header is _NEED_MORE:
                if not final:
                    break
                self._drop(DropReason.TRUNCATED, pos)
                garbage += pos >= self._accepted_until
                pos += 1
                continue
            if header.reason is not None:
                self._drop(header.reason, pos)
                garbage += pos >= self._accepted_until
                pos += 1
                continue
            end = pos + 1 + header.length  # where the closing flag must be
            if end >= n:
                if not final:
                    break
                self._drop(DropReason.TRUNCATED, pos)
                self._reject_until = max(self._reject_until, n)
                garbage += pos >= self._accepted_until
                pos += 1
                continue
            if buf[end] == FLAG:
                fcs = crc16_x25(buf[pos + 1 : end - 2])
                if (fcs & 0xFF) == buf[end - 2] and (fcs >> 8) == buf[end - 1]:
                    out.append(HdlcFrame(bytes(buf[header.info_start : end - 2]), bool(buf[pos + 1] & 0x08)))
                    self._frames += 1
                    self._accepted_until = end + 1
                    pos = end
                    continue
                reason = DropReason.BAD_FCS
            else:
                reason = DropReason.MISSING_END_FLAG
            # Telling "bytes were lost" from "bytes were damaged" needs the header of a frame that may
            # start just before `end`; wait for it so the verdict does not depend on chunking.
            horizon = end + 1 + MAX_HEADER_BYTES
            if n < horizon and not final:
                break
            inner = self._inner_frame_start(pos, end, min(n, horizon))
            span_end = end + 1
            if inner >= 0:
                reason = DropReason.TRUNCATED
                span_end = inner
            self._drop(reason, pos)
            self._reject_until = max(self._reject_until, span_end)
            garbage += pos >= self._accepted_until
            pos += 1
        self._garbage_bytes += garbage
        if pos:
            del buf[:pos]
            self._accepted_until = max(0, self._accepted_until - pos)
            self._reject_until = max(0, self._reject_until - pos)
        return out

    def _inner_frame_start(self, pos: int, end: int, limit: int) -> int:
        """Where a frame with a valid header begins inside the span (pos, end) of a failed candidate.

        Such a frame means the candidate lost bytes: its declared length ran into the next frame.
        Returns -1 when there is none. Headers are read from bytes before `limit` only.
        """
        buf = self._buf
        j = buf.find(FLAG, pos + 1, end)
        while j >= 0:
            if j + 1 < limit and (buf[j + 1] & 0xF0) == 0xA0:
                header = _parse_header(buf, j, limit)
                if header is not _NEED_MORE and header.reason is None:
                    return j
            j = buf.find(FLAG, j + 1, end)
        return -1
