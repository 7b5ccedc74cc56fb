"""Open-ended input: the framer and decoder against noise, damage and arbitrary chunking."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from drivers.contracts import ReceiveTime
from drivers.han.decoder import HanStreamDecoder
from drivers.han.framer import HdlcFramer
from drivers.han.reasons import FrameRejected
from tests.support.han import (
    RECEIVED_UTC,
    CorpusFrame,
    build_frame,
    corpus,
    crc16_x25_bitwise,
    information_field,
    valid_frames,
)

RECEIVED = ReceiveTime(0.0, RECEIVED_UTC)
CORPUS = corpus()
VALID = valid_frames()

# Noise that looks like HAN: flags, format bytes and escape bytes are over-represented.
noise_bytes = st.lists(
    st.one_of(st.sampled_from([0x7E, 0x7D, 0xA0, 0xA1, 0xA8]), st.integers(0, 255)), max_size=60
).map(bytes)


def chunked(data: bytes, sizes: list[int]) -> list[bytes]:
    chunks, i, k = [], 0, 0
    while i < len(data):
        size = sizes[k % len(sizes)] if sizes else len(data)
        chunks.append(data[i : i + size])
        i += size
        k += 1
    return chunks


# Found by hypothesis in CI: after the corpus's truncated frame, 0xC1 and the next frame's opening
# flag complete it into a frame whose FCS checks out.
CHANCE_FRAME_NOISE = [b"\xc1" if i == 29 else b"" for i in range(len(CORPUS) + 1)]


@given(
    noise=st.lists(noise_bytes, min_size=len(CORPUS) + 1, max_size=len(CORPUS) + 1),
    sizes=st.lists(st.integers(1, 700), max_size=20),
)
@example(noise=CHANCE_FRAME_NOISE, sizes=[])
def test_corpus_in_noise_yields_exactly_the_valid_frames_in_order(
    noise: list[bytes], sizes: list[int]
) -> None:
    stream = noise[0] + b"".join(f.raw + gap for f, gap in zip(CORPUS, noise[1:], strict=True))
    framer = HdlcFramer()
    frames = []
    for chunk in chunked(stream, sizes):
        frames += framer.feed(chunk)
    frames += framer.flush()
    expected = [information_field(f.raw) for f in VALID]
    extra = [
        info for info in _without(expected, [f.info for f in frames]) if not _passes_checks(stream, info)
    ]
    assert extra == []


def _without(expected: list[bytes], got: list[bytes]) -> list[bytes]:
    """`got` less `expected` taken in order; fails when an expected frame is missing or out of order."""
    rest, i = [], 0
    for info in got:
        if i < len(expected) and info == expected[i]:
            i += 1
        else:
            rest.append(info)
    assert i == len(expected), f"valid frame {i} of {len(expected)} missing or out of order"
    return rest


def _passes_checks(stream: bytes, info: bytes) -> bool:
    """Somewhere in the stream `info` is framed by a length field, end flag, HCS and FCS that are all
    right (reference CRC): a damaged frame plus noise that checks out by chance - one in 65536 for
    CRC-16; hypothesis found one (a truncated frame, one byte of noise, the next frame's flag). No
    framer can tell such a frame from a sent one; it is a frame, and the test allows it."""
    for start in range(len(stream) - 9):
        if stream[start] != 0x7E or stream[start + 1] & 0xF0 != 0xA0:
            continue
        length = ((stream[start + 1] & 0x07) << 8) | stream[start + 2]
        raw = stream[start : start + length + 2]
        if len(raw) != length + 2 or raw[-1] != 0x7E:
            continue
        fcs_ok = crc16_x25_bitwise(raw[1:-3]) == int.from_bytes(raw[-3:-1], "little")
        if fcs_ok and information_field(raw) == info:
            return True
    return False


@given(data=st.binary(max_size=3000), sizes=st.lists(st.integers(1, 300), min_size=1, max_size=10))
def test_chunking_never_changes_the_outcome(data: bytes, sizes: list[int]) -> None:
    stream = data + VALID[0].raw + data[::-1]
    whole = HdlcFramer()
    expected = whole.feed(stream) + whole.flush()
    parts = HdlcFramer()
    got = [f for chunk in chunked(stream, sizes) for f in parts.feed(chunk)] + parts.flush()
    assert got == expected
    assert parts.dropped == whole.dropped
    assert parts.garbage_bytes == whole.garbage_bytes


@given(st.binary(max_size=4000))
def test_random_bytes_never_raise(data: bytes) -> None:
    decoder = HanStreamDecoder()
    readings = decoder.feed(data, RECEIVED) + decoder.flush(RECEIVED)
    counters = decoder.counters
    assert counters["readings"] == len(readings) <= counters["frames"]


@given(st.binary(min_size=1, max_size=400))
def test_random_information_fields_in_valid_frames_never_raise(info: bytes) -> None:
    decoder = HanStreamDecoder()
    for payload in (info, b"\xe6\xe7\x00" + info, b"\xe6\xe7\x00\x0f\x40\x00\x00\x00\x00" + info):
        decoder.feed(build_frame(payload), RECEIVED)
    counters = decoder.counters
    # Every checked frame either became a reading or was counted as dropped for its content.
    assert counters["frames"] == 3
    assert counters["readings"] + decoder.rejected == 3


@given(
    item=st.sampled_from(VALID),
    bits=st.lists(st.integers(0, 10_000), min_size=1, max_size=3, unique=True),
)
def test_bit_flips_are_rejected_never_crash(item: CorpusFrame, bits: list[int]) -> None:
    damaged = bytearray(item.raw)
    for bit in bits:
        position = bit % (len(damaged) * 8)
        damaged[position // 8] ^= 1 << (position % 8)
    if bytes(damaged) == item.raw:
        return
    decoder = HanStreamDecoder()
    try:
        readings = decoder.feed(bytes(damaged), RECEIVED) + decoder.flush(RECEIVED)
    except FrameRejected as unexpected:  # pragma: no cover - the assertion below explains
        raise AssertionError(f"rejection escaped the decoder: {unexpected}") from unexpected
    # CRC-16 catches every error of up to three bits in a frame this short.
    assert readings == []
    assert decoder.counters["frames"] == 0
    assert decoder.counters["garbage_bytes"] == len(damaged)
