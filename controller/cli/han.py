"""`sitectl han`: decode captured HAN bytes, or watch a live meter.

sitectl han decode [FILE] [--ct-ratio R] [--vendor V]
sitectl han listen PORT [--json] [--vendor V] [--ct-ratio R] [--count N] [--duration S]
"""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from controller.cli import SubParsers
    from drivers.contracts import MeterReading

CHUNK_BYTES = 64 * 1024
VENDOR_CHOICES = ("auto", "aidon", "kaifa", "kamstrup", "landis_gyr")
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_WHITESPACE = b" \t\r\n\v\f"


class InputError(Exception):
    """The input cannot be read as HAN bytes (exit code 2)."""


def register(subparsers: SubParsers) -> None:
    parser = subparsers.add_parser("han", help="AMS HAN meter: decode captures, watch a live meter")
    han = parser.add_subparsers(dest="han_command", metavar="SUBCOMMAND", required=True)

    decode = han.add_parser(
        "decode",
        help="decode a HAN byte stream (raw or hex) into JSON Lines",
        description="Decode a captured HAN byte stream - raw bytes or hex text, detected automatically - "
        "and print one JSON object per valid frame. A summary of accepted and rejected frames goes to "
        "standard error.",
    )
    decode.add_argument("file", nargs="?", default="-", help="capture file (default: standard input)")
    _add_meter_options(decode)
    decode.set_defaults(handler=_decode)

    listen = han.add_parser(
        "listen",
        help="print live readings from a meter's HAN port",
        description="Read a live HAN port and print each reading; Ctrl-C or SIGTERM prints the counters.",
    )
    listen.add_argument("port", help="serial device, pty path, or pyserial URL (socket://host:port)")
    listen.add_argument("--json", action="store_true", help="print JSON Lines instead of text")
    listen.add_argument("--count", type=_positive_int, help="stop after N readings")
    listen.add_argument("--duration", type=_positive_float, metavar="S", help="stop after S seconds")
    listen.add_argument(
        "--silence-after",
        type=_positive_float,
        default=30.0,
        metavar="S",
        help="report the meter as silent after S seconds without a reading (default 30)",
    )
    _add_meter_options(listen)
    listen.set_defaults(handler=_listen)


def _add_meter_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ct-ratio",
        type=_positive_float,
        default=1.0,
        metavar="R",
        help="current-transformer ratio: multiplies current, power and energy (default 1)",
    )
    parser.add_argument(
        "--vendor", choices=VENDOR_CHOICES, default="auto", help="meter vendor (default auto)"
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


# ------------------------------------------------------------------------------------------ decode


def _looks_like_hex(sample: bytes) -> bool:
    stripped = sample.translate(None, _WHITESPACE)
    return bool(stripped) and all(byte in _HEX_DIGITS for byte in stripped)


class _HexStream:
    """Hex text to bytes across chunk boundaries (a byte's two digits may straddle them)."""

    def __init__(self) -> None:
        self._odd = b""

    def decode(self, chunk: bytes) -> bytes:
        digits = self._odd + chunk.translate(None, _WHITESPACE)
        if any(byte not in _HEX_DIGITS for byte in digits):
            raise InputError("the input started as hex text but contains other characters")
        cut = len(digits) - len(digits) % 2
        self._odd = digits[cut:]
        return bytes.fromhex(digits[:cut].decode("ascii"))

    def finish(self) -> None:
        if self._odd:
            raise InputError("the hex text ends with half a byte")


def _chunks(stream: BinaryIO) -> list[bytes] | None:
    """The first chunks up to one that is not all whitespace (to sniff the format), or None at EOF."""
    sniffed: list[bytes] = []
    while True:
        chunk = stream.read(CHUNK_BYTES)
        if not chunk:
            return sniffed or None
        sniffed.append(chunk)
        if chunk.strip(_WHITESPACE):
            return sniffed


def _decode(args: argparse.Namespace) -> int:
    import json
    import sys

    from drivers.clock import SystemClock
    from drivers.contracts import ReceiveTime
    from drivers.han import HanStreamDecoder, parse_vendor, reading_record

    clock = SystemClock()
    decoder = HanStreamDecoder(ct_ratio=args.ct_ratio, vendor=parse_vendor(args.vendor))
    out = sys.stdout

    def emit(readings: list[MeterReading]) -> None:
        for reading in readings:
            out.write(json.dumps(reading_record(reading)) + "\n")

    def now() -> ReceiveTime:
        return ReceiveTime(clock.monotonic(), clock.utc_now())

    try:
        stream: BinaryIO = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"sitectl han decode: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    problem: str | None = None
    try:
        with stream:
            try:
                first = _chunks(stream)
                hex_stream = _HexStream() if first and _looks_like_hex(b"".join(first)) else None
                pending = first or []
                while True:
                    for chunk in pending:
                        data = hex_stream.decode(chunk) if hex_stream is not None else chunk
                        emit(decoder.feed(data, now()))
                    chunk = stream.read(CHUNK_BYTES)
                    if not chunk:
                        break
                    pending = [chunk]
                if hex_stream is not None:
                    hex_stream.finish()
            except BrokenPipeError:
                raise
            except InputError as exc:
                problem = str(exc)
            except OSError as exc:
                problem = f"reading {args.file} failed: {exc.strerror or exc}"
        emit(decoder.flush(now()))
        out.flush()
    except BrokenPipeError:
        return _stdout_closed()
    _summary(decoder.counters)
    if problem is not None:
        print(f"sitectl han decode: {problem}", file=sys.stderr)
        return 2
    return 0


def _stdout_closed() -> int:
    """The reader of our output went away (`... | head`): not an error, and nothing left to say."""
    import os
    import sys

    # Python would report the failed flush of stdout at exit; point it at /dev/null instead.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0


def _summary(counters: dict[str, int]) -> None:
    import sys

    from drivers.han import DropReason

    rejected = {reason.value: counters[reason.value] for reason in DropReason if counters[reason.value]}
    reasons = ", ".join(f"{name}={count}" for name, count in rejected.items())
    print(
        f"han decode: {counters['readings']} frames accepted, {sum(rejected.values())} rejected"
        + (f" ({reasons})" if reasons else "")
        + f", {counters['garbage_bytes']} garbage bytes",
        file=sys.stderr,
    )


# ------------------------------------------------------------------------------------------ listen


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{text}{unit}"


def reading_line(reading: MeterReading) -> str:
    """One human-readable line per reading; '-' marks what the meter did not send."""
    from drivers.han import DISPLAY_NAMES

    currents = "/".join(_fmt(reading.current_a(line)) for line in ("L1", "L2", "L3"))
    voltages = "/".join(_fmt(v) for v in (reading.voltage_l1_v, reading.voltage_l2_v, reading.voltage_l3_v))
    parts = [
        reading.received.utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        f"{DISPLAY_NAMES[reading.vendor]} list {int(reading.list_type)}:",
        f"P+ {_fmt(reading.active_power_import_w)} W, P- {_fmt(reading.active_power_export_w)} W,",
        f"I {currents} A, U {voltages} V",
    ]
    if reading.energy_import_wh is not None:
        parts[-1] += ","
        parts.append(f"E+ {_fmt(reading.energy_import_wh)} Wh")
    if reading.meter_time is not None:
        parts[-1] += ","
        parts.append(f"meter time {reading.meter_time.replace(tzinfo=None).isoformat()}")
    return " ".join(parts)


def _listen(args: argparse.Namespace) -> int:
    import asyncio

    from controller.logs import configure_logging

    configure_logging("info", "console")
    return asyncio.run(_listen_async(args))


async def _listen_async(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib
    import json
    import signal
    import sys

    from drivers.clock import SystemClock
    from drivers.han import HanReader, reading_record

    stop = asyncio.Event()
    received = 0

    def sink(reading: MeterReading) -> None:
        nonlocal received
        received += 1
        if args.json:
            record = reading_record(reading)
            record["received_utc"] = reading.received.utc.isoformat().replace("+00:00", "Z")
            line = json.dumps(record)
        else:
            line = reading_line(reading)
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except BrokenPipeError:  # `sitectl han listen ... | head`
            stop.set()
        if args.count is not None and received >= args.count:
            stop.set()

    reader = HanReader(
        args.port,
        vendor=args.vendor,
        ct_ratio=args.ct_ratio,
        clock=SystemClock(),
        sink=sink,
        silence_after_s=args.silence_after,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with asyncio.TaskGroup() as tasks:
            reading = tasks.create_task(reader.run(), name="han-listen")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=args.duration)
            reading.cancel()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    counters = " ".join(f"{name}={count}" for name, count in reader.counters.items())
    print(f"han listen: {counters}", file=sys.stderr)
    return 0
