"""The HAN serial reader: port in, MeterReadings out to a sink, surviving unplugged adapters.

The port is a device path, a pty path or a pyserial URL (`socket://host:port`). Bytes are read on the
event loop through `loop.add_reader` on the port's file descriptor; a port without one (for example
`rfc2217://`) is read by a thread that is always joined. Opening runs in a joined thread too, since a
`socket://` connect blocks for up to pyserial's 5 s timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import random
import termios
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from drivers.contracts import Clock, MeterReading, MeterReadingSink, MeterVendor, ReceiveTime
from drivers.han.decoder import HanStreamDecoder, check_ct_ratio
from drivers.han.lists import BAUD_RATE, PARITY, parse_vendor
from drivers.han.reasons import DropReason, FrameRejected

READ_CHUNK_BYTES = 4096
# How long a blocking read in the fallback thread waits; bounds how long stopping that thread takes.
THREAD_READ_TIMEOUT_S = 0.2
# Auto mode tries the more common parity (Aidon, Kaifa, Landis+Gyr) first.
AUTO_PARITIES = ("E", "N")


@dataclass(frozen=True, slots=True)
class SerialSettings:
    baudrate: int = BAUD_RATE
    bytesize: int = 8
    parity: str = "E"  # pyserial's letters: "E" even, "N" none
    stopbits: int = 1


class SerialPort(Protocol):
    def read(self, size: int = 1) -> bytes: ...

    def close(self) -> None: ...


PortOpener = Callable[[str, SerialSettings], SerialPort]


def open_serial(port: str, settings: SerialSettings) -> SerialPort:
    """Open `port` with pyserial: a device or pty path, or any URL `serial.serial_for_url` knows."""
    import serial

    opened: SerialPort = serial.serial_for_url(
        port,
        baudrate=settings.baudrate,
        bytesize=settings.bytesize,
        parity=settings.parity,
        stopbits=settings.stopbits,
        timeout=THREAD_READ_TIMEOUT_S,
    )
    return opened


def is_network_url(port: str) -> bool:
    """A TCP serial converter fixes the line settings itself; reconnecting cannot change its parity."""
    return port.startswith("socket://")


class _Ended(enum.Enum):
    DISCONNECTED = "disconnected"
    NO_FRAMES = "no_frames"


class HanReader:
    """Reads one AMS meter's HAN port until cancelled and pushes each reading to `sink`.

    - `vendor`: "auto" (alternate parity until frames arrive, detect the vendor from the lists) or a
      vendor name / MeterVendor, which fixes the parity and rejects lists of other vendors.
    - Reconnects with exponential backoff and jitter when the port cannot be opened or goes away.
    - Logs `han.silent` once when no reading arrived for `silence_after_s`, `han.resumed` after.
    """

    def __init__(
        self,
        port: str,
        *,
        vendor: str | MeterVendor | None = "auto",
        ct_ratio: float = 1.0,
        clock: Clock,
        sink: MeterReadingSink,
        silence_after_s: float = 30.0,
        parity_window_s: float = 25.0,
        reconnect_initial_s: float = 1.0,
        reconnect_max_s: float = 60.0,
        opener: PortOpener = open_serial,
        rng: random.Random | None = None,
    ) -> None:
        if silence_after_s <= 0 or parity_window_s <= 0 or reconnect_initial_s <= 0:
            raise ValueError("silence_after_s, parity_window_s and reconnect_initial_s must be positive")
        self._port = port
        self._vendor = parse_vendor(vendor) if isinstance(vendor, str) else vendor
        self._clock = clock
        self._sink = sink
        self._silence_after_s = silence_after_s
        self._parity_window_s = parity_window_s
        self._reconnect_initial_s = reconnect_initial_s
        self._reconnect_max_s = max(reconnect_max_s, reconnect_initial_s)
        self._opener = opener
        self._rng = rng if rng is not None else random.Random()
        if self._vendor is not None:
            self._parities: tuple[str, ...] = (PARITY[self._vendor],)
        elif is_network_url(port):
            self._parities = ("E",)
        else:
            self._parities = AUTO_PARITIES
        # Lazy: a logging configuration made after this reader was built still applies.
        self._log = structlog.get_logger("drivers.han", port=port)
        self._decoder = HanStreamDecoder(
            ct_ratio=check_ct_ratio(ct_ratio), vendor=self._vendor, on_reject=self._on_reject
        )
        self._counts = dict.fromkeys(
            (
                "bytes",
                "connects",
                "disconnects",
                "open_failures",
                "parity_switches",
                "silences",
                "sink_errors",
                "internal_errors",
            ),
            0,
        )
        self._last_valid_monotonic_s: float | None = None
        self._last_frame_monotonic_s: float | None = None
        self._silent = False
        self._parity = self._parities[0]
        self._encryption_reported = False

    @property
    def counters(self) -> dict[str, int]:
        """Decoder counters (see HanStreamDecoder.counters) plus `bytes`, `connects`, `disconnects`,
        `open_failures`, `parity_switches`, `silences`, `sink_errors` and `internal_errors`."""
        return {**self._decoder.counters, **self._counts}

    @property
    def last_valid_monotonic_s(self) -> float | None:
        """Clock-monotonic time of the last frame that decoded to a reading; None before the first."""
        return self._last_valid_monotonic_s

    @property
    def parity(self) -> str:
        return self._parity

    @property
    def silent(self) -> bool:
        return self._silent

    async def run(self) -> None:
        """Read until cancelled. Cancelling closes the port and joins every thread it started."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._watch_silence(), name=f"han-silence-watch {self._port}")
            await self._connection_loop()

    # ------------------------------------------------------------------------------ connections

    async def _connection_loop(self) -> None:
        parity_index = 0
        failures = 0
        while True:
            self._parity = self._parities[parity_index]
            settings = SerialSettings(parity=self._parity)
            try:
                port = await self._open(settings)
            except (OSError, ValueError, termios.error) as exc:
                # pyserial's SerialException derives from OSError (IOError); termios.error does not,
                # and a pty or adapter in a bad state raises it from tcsetattr while opening.
                self._counts["open_failures"] += 1
                if isinstance(exc, termios.error):
                    # The port refuses these line settings (a pty refuses parity E after N): a
                    # retry with the same settings fails forever, so try the next parity.
                    parity_index = (parity_index + 1) % len(self._parities)
                delay = self._backoff_s(failures)
                failures += 1
                self._log.warning("han.open_failed", error=str(exc), retry_in_s=round(delay, 3))
                await self._clock.sleep(delay)
                continue
            self._counts["connects"] += 1
            self._log.info("han.connected", parity=self._parity)
            frames_before = self._decoder.counters["frames"]
            try:
                ended, detail = await self._read_port(port)
            finally:
                self._close(port)
                self._deliver_all(self._decoder.flush(self._now()))
            if self._decoder.counters["frames"] > frames_before:
                failures = 0
            if ended is _Ended.NO_FRAMES:
                parity_index = (parity_index + 1) % len(self._parities)
                self._counts["parity_switches"] += 1
                self._log.info(
                    "han.parity_switch",
                    parity=self._parities[parity_index],
                    no_frame_for_s=self._parity_window_s,
                )
                continue
            self._counts["disconnects"] += 1
            delay = self._backoff_s(failures)
            failures += 1
            self._log.warning("han.disconnected", error=detail, retry_in_s=round(delay, 3))
            await self._clock.sleep(delay)

    def _backoff_s(self, failures: int) -> float:
        ceiling = min(self._reconnect_max_s, self._reconnect_initial_s * 2.0 ** min(failures, 30))
        # Equal jitter: at least half the ceiling, so boxes that lost power together spread out.
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    async def _open(self, settings: SerialSettings) -> SerialPort:
        loop = asyncio.get_running_loop()
        outcome: list[SerialPort | BaseException] = []
        opened = asyncio.Event()

        def work() -> None:
            try:
                outcome.append(self._opener(self._port, settings))
            except BaseException as exc:  # handed to the event loop, which re-raises it
                outcome.append(exc)
            # A closed loop raises RuntimeError; the waiting side then joins and cleans up itself.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(opened.set)

        thread = threading.Thread(target=work, name=f"han-open {self._port}", daemon=True)
        thread.start()
        try:
            await opened.wait()
        except asyncio.CancelledError:
            # An open cannot be interrupted; it ends within the opener's own timeout.
            thread.join()
            if outcome and not isinstance(outcome[0], BaseException):
                self._close(outcome[0])
            raise
        thread.join()
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _close(self, port: SerialPort) -> None:
        try:
            port.close()
        except Exception as exc:  # a vanished device may fail to close; it is gone either way
            self._log.debug("han.close_failed", error=str(exc))

    async def _read_port(self, port: SerialPort) -> tuple[_Ended, str]:
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[str] = loop.create_future()

        def end(detail: str) -> None:
            if not ended.done():
                ended.set_result(detail)

        fileno = getattr(port, "fileno", None)
        fd: int | None = None
        if fileno is not None:
            try:
                fd = int(fileno())
            except (OSError, ValueError, AttributeError):
                fd = None
        if fd is not None:
            loop.add_reader(fd, self._on_readable, fd, end)
            try:
                return await self._until_ended(ended)
            finally:
                loop.remove_reader(fd)
        return await self._read_with_thread(port, ended, end)

    def _on_readable(self, fd: int, end: Callable[[str], None]) -> None:
        try:
            data = os.read(fd, READ_CHUNK_BYTES)
        except BlockingIOError:
            return
        except OSError as exc:
            # EIO when a pty's other side or a USB adapter goes away.
            end(f"read failed: {exc}")
            return
        if not data:
            end("end of stream (device gone or connection closed)")
            return
        self._ingest(data)

    async def _read_with_thread(
        self, port: SerialPort, ended: asyncio.Future[str], end: Callable[[str], None]
    ) -> tuple[_Ended, str]:
        loop = asyncio.get_running_loop()
        stop = threading.Event()
        stopped = asyncio.Event()

        def work() -> None:
            try:
                while not stop.is_set():
                    data = port.read(1)
                    waiting = int(getattr(port, "in_waiting", 0) or 0)
                    if data and waiting:
                        data += port.read(min(waiting, READ_CHUNK_BYTES))
                    if data:
                        loop.call_soon_threadsafe(self._ingest, data)
            except Exception as exc:
                if not stop.is_set():
                    loop.call_soon_threadsafe(end, f"read failed: {exc}")
            finally:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(stopped.set)

        thread = threading.Thread(target=work, name=f"han-read {self._port}", daemon=True)
        thread.start()
        try:
            return await self._until_ended(ended)
        finally:
            stop.set()
            try:
                # The thread notices `stop` within one read timeout.
                await stopped.wait()
            finally:
                thread.join()

    async def _until_ended(self, ended: asyncio.Future[str]) -> tuple[_Ended, str]:
        """Wait until the port ends, or until no valid frame came for a parity window (auto mode)."""
        connected_at = self._clock.monotonic()
        while not ended.done():
            if len(self._parities) == 1:
                await asyncio.wait([ended])
                break
            last = max(connected_at, self._last_frame_monotonic_s or connected_at)
            remaining_s = last + self._parity_window_s - self._clock.monotonic()
            if remaining_s <= 0:
                return _Ended.NO_FRAMES, f"no valid frame for {self._parity_window_s} s"
            await asyncio.wait([ended], timeout=self._clock.loop_seconds(remaining_s))
        return _Ended.DISCONNECTED, ended.result()

    # ----------------------------------------------------------------------------------- data

    def _now(self) -> ReceiveTime:
        return ReceiveTime(self._clock.monotonic(), self._clock.utc_now())

    def _ingest(self, data: bytes) -> None:
        self._counts["bytes"] += len(data)
        received = self._now()
        frames_before = self._decoder.counters["frames"]
        try:
            readings = self._decoder.feed(data, received)
        except Exception:
            # A decoder bug must not stop the meter: the chunk is lost, counted and logged.
            self._counts["internal_errors"] += 1
            self._log.exception("han.decode_failed", bytes=len(data))
            return
        if self._decoder.counters["frames"] > frames_before:
            # Any checked frame proves the line settings right, even one we cannot decode.
            self._last_frame_monotonic_s = received.monotonic_s
        self._deliver_all(readings)

    def _deliver_all(self, readings: list[MeterReading]) -> None:
        for reading in readings:
            self._last_valid_monotonic_s = reading.received.monotonic_s
            if self._silent:
                self._silent = False
                self._log.info("han.resumed", vendor=reading.vendor.value)
            try:
                self._sink(reading)
            except Exception:
                self._counts["sink_errors"] += 1
                self._log.exception("han.sink_failed")

    def _on_reject(self, rejection: FrameRejected) -> None:
        if rejection.reason is DropReason.ENCRYPTED:
            if not self._encryption_reported:
                self._encryption_reported = True
                self._log.error("han.encrypted", detail=rejection.detail)
            return
        self._log.debug("han.frame_rejected", reason=rejection.reason.value, detail=rejection.detail)

    async def _watch_silence(self) -> None:
        started = self._clock.monotonic()
        poll_s = min(1.0, self._silence_after_s / 10)
        while True:
            now = self._clock.monotonic()
            since = self._last_valid_monotonic_s if self._last_valid_monotonic_s is not None else started
            if self._silent:
                await self._clock.sleep(poll_s)
                continue
            silent_for_s = now - since
            if silent_for_s >= self._silence_after_s:
                self._silent = True
                self._counts["silences"] += 1
                self._log.warning(
                    "han.silent",
                    silent_for_s=round(silent_for_s, 3),
                    ever_received=self._last_valid_monotonic_s is not None,
                )
                continue
            await self._clock.sleep(max(self._silence_after_s - silent_for_s, poll_s / 10))
