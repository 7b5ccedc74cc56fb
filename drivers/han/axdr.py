"""A-XDR decoding of DLMS/COSEM `Data` values (IEC 62056-6-2), as HAN meters push them.

Values map to plain Python: null-data -> None, integers and enums -> int, booleans -> bool, floats ->
float, octet-strings, date-times and bit-strings -> bytes, visible/UTF-8 strings -> str, arrays and
structures -> list. The decoder is strict: a value that runs past the end of the buffer, nests
absurdly deep or uses a type HAN lists never carry raises AxdrError, never another error.

This is the decoder's hot path (a list holds 20-100 values), so leaves are decoded inline in the
container loop and running off the end is caught once, as IndexError/struct.error, not per read.
"""

from __future__ import annotations

import struct

Value = None | bool | int | float | bytes | str | list["Value"]

MAX_DEPTH = 8

TAG_NULL = 0x00
TAG_ARRAY = 0x01
TAG_STRUCTURE = 0x02
TAG_BOOLEAN = 0x03
TAG_BIT_STRING = 0x04
TAG_OCTET_STRING = 0x09
TAG_VISIBLE_STRING = 0x0A
TAG_UTF8_STRING = 0x0C

# Fixed-size numeric types.
_FIXED: dict[int, struct.Struct] = {
    0x05: struct.Struct(">i"),  # double-long
    0x06: struct.Struct(">I"),  # double-long-unsigned
    0x0F: struct.Struct(">b"),  # integer
    0x10: struct.Struct(">h"),  # long
    0x11: struct.Struct(">B"),  # unsigned
    0x12: struct.Struct(">H"),  # long-unsigned
    0x14: struct.Struct(">q"),  # long64
    0x15: struct.Struct(">Q"),  # long64-unsigned
    0x16: struct.Struct(">B"),  # enum
    0x17: struct.Struct(">f"),  # float32
    0x18: struct.Struct(">d"),  # float64
}
_FIXED_SIZES = {tag: fixed.size for tag, fixed in _FIXED.items()}
_FIXED_BYTES = {0x19: 12, 0x1A: 5, 0x1B: 4}  # date-time, date, time: kept as raw bytes


class AxdrError(ValueError):
    pass


def decode(buf: bytes, pos: int = 0) -> tuple[Value, int]:
    """Decode one tagged value at `pos`; returns it and the offset just after it."""
    try:
        return _decode(buf, pos, len(buf), 0)
    except (IndexError, struct.error):
        raise AxdrError(f"a value starting at offset {pos} runs past the end of the data") from None


def _length(buf: bytes, pos: int) -> tuple[int, int]:
    first = buf[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    if not 1 <= count <= 4:
        raise AxdrError(f"bad length encoding 0x{first:02x} at offset {pos}")
    end = pos + 1 + count
    if end > len(buf):
        raise IndexError
    return int.from_bytes(buf[pos + 1 : end], "big"), end


def _decode(buf: bytes, pos: int, n: int, depth: int) -> tuple[Value, int]:
    tag = buf[pos]
    pos += 1
    fixed = _FIXED.get(tag)
    if fixed is not None:
        value: Value = fixed.unpack_from(buf, pos)[0]
        return value, pos + fixed.size
    if tag in (TAG_STRUCTURE, TAG_ARRAY):
        if depth >= MAX_DEPTH:
            raise AxdrError(f"nesting deeper than {MAX_DEPTH} at offset {pos - 1}")
        count, pos = _length(buf, pos)
        # Every element takes at least one byte: a count beyond the data is a lie, not a big list.
        if count > n - pos:
            raise AxdrError(f"{count} elements announced at offset {pos}, data ends")
        items: list[Value] = []
        append = items.append
        fixed_get = _FIXED.get
        for _ in range(count):
            item_tag = buf[pos]
            item_fixed = fixed_get(item_tag)
            if item_fixed is not None:
                append(item_fixed.unpack_from(buf, pos + 1)[0])
                pos += 1 + item_fixed.size
            elif item_tag == TAG_OCTET_STRING and buf[pos + 1] < 0x80:
                end = pos + 2 + buf[pos + 1]
                if end > n:
                    raise IndexError
                append(buf[pos + 2 : end])
                pos = end
            elif item_tag == TAG_NULL:
                append(None)
                pos += 1
            else:
                item, pos = _decode(buf, pos, n, depth + 1)
                append(item)
        return items, pos
    if tag in (TAG_OCTET_STRING, TAG_VISIBLE_STRING, TAG_UTF8_STRING, TAG_BIT_STRING):
        size, pos = _length(buf, pos)
        if tag == TAG_BIT_STRING:  # its length counts bits
            size = (size + 7) // 8
        end = pos + size
        if end > n:
            raise IndexError
        raw = buf[pos:end]
        if tag == TAG_VISIBLE_STRING:
            return raw.decode("latin-1"), end
        if tag == TAG_UTF8_STRING:
            return raw.decode("utf-8", errors="replace"), end
        return bytes(raw), end
    if tag == TAG_NULL:
        return None, pos
    if tag == TAG_BOOLEAN:
        return buf[pos] != 0, pos + 1
    width = _FIXED_BYTES.get(tag)
    if width is not None:
        end = pos + width
        if end > n:
            raise IndexError
        return bytes(buf[pos:end]), end
    raise AxdrError(f"unsupported data type 0x{tag:02x} at offset {pos - 1}")
