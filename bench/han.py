"""HAN decoding throughput and byte-to-reading latency.

    python -m bench.han [--runs N]

Throughput: the captured frames of ../shared/data/han (valid ones), repeated, through the whole
pipeline (HanStreamDecoder: framer + decoder, fed 4 KiB chunks as a serial read returns them), the
decoder alone (information fields already cut) and the framer alone. Latency: from the moment the last
byte of a frame has been written to a pty master until HanReader hands the reading to its sink. Each
figure is the median of several runs; the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import pty
import statistics
import time
import tty
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog

from drivers.clock import SystemClock
from drivers.contracts import MeterReading, ReceiveTime
from drivers.han import HanReader, HanStreamDecoder, HdlcFramer, decode_payload

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "han" / "frames.jsonl"
TARGET_FRAMES_PER_S = 20_000
CHUNK_BYTES = 4096
REPEATS = 150
LATENCY_FRAMES = 40


def load_valid_frames() -> list[bytes]:
    frames = []
    for line in CORPUS.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if not row.get("expect_reject"):
                frames.append(bytes.fromhex(row["hex"]))
    return frames


def rate(work: Callable[[], int], runs: int) -> tuple[float, list[float]]:
    """Median frames per second of `work` (which returns how many frames it handled)."""
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        count = work()
        rates.append(count / (time.perf_counter() - started))
    return statistics.median(rates), rates


def throughput(frames: list[bytes], runs: int) -> None:
    stream = b"".join(frames) * REPEATS
    chunks = [stream[i : i + CHUNK_BYTES] for i in range(0, len(stream), CHUNK_BYTES)]
    received = ReceiveTime(0.0, datetime(2026, 1, 1, tzinfo=UTC))
    expected = len(frames) * REPEATS

    def pipeline() -> int:
        decoder = HanStreamDecoder()
        count = sum(len(decoder.feed(chunk, received)) for chunk in chunks)
        assert count == expected, f"decoded {count} of {expected} frames"
        return count

    infos = [frame.info for frame in HdlcFramer().feed(stream)]

    def decoder_alone() -> int:
        for info in infos:
            decode_payload(info, received)
        return len(infos)

    def framer_alone() -> int:
        framer = HdlcFramer()
        return sum(len(framer.feed(chunk)) for chunk in chunks)

    print(f"throughput over {len(frames)} captured frames x {REPEATS} ({len(stream)} bytes), {runs} runs:")
    for name, work in (
        ("pipeline (framer + decoder)", pipeline),
        ("decoder alone", decoder_alone),
        ("framer alone", framer_alone),
    ):
        median, rates = rate(work, runs)
        spread = ", ".join(f"{r:,.0f}" for r in sorted(rates))
        print(f"  {name:<28} median {median:>10,.0f} frames/s   (runs: {spread})")
        if name.startswith("pipeline"):
            verdict = "met" if median >= TARGET_FRAMES_PER_S else "NOT met"
            print(f"  target >= {TARGET_FRAMES_PER_S:,} frames/s for the pipeline: {verdict}")


async def latency_run(frames: list[bytes]) -> list[float]:
    """Latencies in seconds of LATENCY_FRAMES frames written one at a time to a pty."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    arrived: asyncio.Queue[float] = asyncio.Queue()

    def sink(reading: MeterReading) -> None:
        arrived.put_nowait(time.perf_counter())

    reader = HanReader(os.ttyname(slave), vendor="auto", clock=SystemClock(), sink=sink, parity_window_s=600)
    task = asyncio.get_running_loop().create_task(reader.run())
    latencies = []
    try:
        # Warm up: the port flushes its input when it opens, so repeat a frame until one gets through.
        while True:
            os.write(master, frames[0])
            try:
                await asyncio.wait_for(arrived.get(), timeout=0.05)
                break
            except TimeoutError:
                continue
        await asyncio.sleep(0.05)
        while not arrived.empty():
            arrived.get_nowait()
        for i in range(LATENCY_FRAMES):
            raw = frames[i % len(frames)]
            os.write(master, raw)
            written = time.perf_counter()
            got = await asyncio.wait_for(arrived.get(), timeout=5)
            latencies.append(got - written)
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        os.close(master)
        os.close(slave)
    return latencies


def latency(frames: list[bytes], runs: int) -> None:
    medians = []
    everything: list[float] = []
    for _ in range(runs):
        run = asyncio.run(latency_run(frames))
        medians.append(statistics.median(run))
        everything += run
    everything.sort()
    p95 = everything[int(0.95 * (len(everything) - 1))]
    spread = ", ".join(f"{m * 1e3:.3f}" for m in sorted(medians))
    print(f"byte-to-reading latency over a pty, {runs} runs x {LATENCY_FRAMES} frames:")
    print(
        f"  median {statistics.median(medians) * 1e3:.3f} ms   (per-run medians ms: {spread});"
        f" p95 {p95 * 1e3:.3f} ms"
    )
    print("  (excludes the wire: a 228-byte Kamstrup list takes about 1 s to send at 2400 baud 8N1)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7, help="runs per figure (default 7)")
    args = parser.parse_args()
    # The reader's connect/disconnect lines would interleave with the figures.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    frames = load_valid_frames()
    print(f"bench.han: Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")
    throughput(frames, args.runs)
    latency(frames, max(3, args.runs // 2))


if __name__ == "__main__":
    main()
