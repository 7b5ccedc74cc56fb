"""HanReader with injected ports: parity search, reconnects, silence, sink failures, shutdown."""

from __future__ import annotations

import asyncio
import random
import termios
import threading
import time
from collections.abc import Callable

import pytest
from structlog.testing import capture_logs

from drivers.clock import SystemClock
from drivers.contracts import MeterReading, MeterVendor, ReceiveTime
from drivers.han.reader import HanReader, SerialPort, SerialSettings
from tests.support.han import by_vendor, frame
from tests.support.han_ports import OffsetClock, SocketPort, ThreadOnlyPort, running, wait_until

KAMSTRUP = b"".join(f.raw for f in by_vendor("Kamstrup")[:3])
KAIFA = frame("kaifa_ma304h3e_it_list2_2017").raw


def mangled(data: bytes) -> bytes:
    """What a frame looks like read with the wrong parity: framing errors everywhere."""
    return bytes(b ^ 0x5A for b in data)


class Opener:
    """Records each open; `script` makes the port (or raises) for the n-th open and its settings."""

    def __init__(self, script: Callable[[int, SerialSettings], SerialPort]) -> None:
        self.script = script
        self.calls: list[SerialSettings] = []
        self.ports: list[SerialPort] = []

    def __call__(self, port: str, settings: SerialSettings) -> SerialPort:
        self.calls.append(settings)
        opened = self.script(len(self.calls) - 1, settings)
        self.ports.append(opened)
        return opened

    def close_devices(self) -> None:
        for port in self.ports:
            if isinstance(port, SocketPort):
                port.device.close()


def reader(opener: Opener, sink: Callable[[MeterReading], None], **options: object) -> HanReader:
    defaults: dict[str, object] = {
        "clock": SystemClock(),
        "sink": sink,
        "opener": opener,
        "reconnect_initial_s": 0.01,
        "reconnect_max_s": 0.05,
        "rng": random.Random(7),
    }
    defaults.update(options)
    return HanReader("/dev/ttyHAN-test", **defaults)  # type: ignore[arg-type]


async def test_auto_mode_alternates_parity_until_frames_arrive() -> None:
    def script(n: int, settings: SerialSettings) -> SerialPort:
        port = SocketPort()
        port.send(KAMSTRUP if settings.parity == "N" else mangled(KAMSTRUP))
        return port

    opener = Opener(script)
    readings: list[MeterReading] = []
    han = reader(opener, readings.append, parity_window_s=0.1)
    async with running(han):
        await wait_until(lambda: len(readings) == 3, "three Kamstrup readings")
        assert han.parity == "N"
    opener.close_devices()
    assert [s.parity for s in opener.calls[:2]] == ["E", "N"]
    assert all(s.baudrate == 2400 and s.bytesize == 8 and s.stopbits == 1 for s in opener.calls)
    assert han.counters["parity_switches"] >= 1
    assert {r.vendor for r in readings} == {MeterVendor.KAMSTRUP}


async def test_a_port_refusing_a_parity_moves_on_to_the_other_one() -> None:
    # A pty refuses parity E (tcsetattr EINVAL) once it has been set to N; retrying E forever
    # would leave the reader deaf although N works.
    def script(n: int, settings: SerialSettings) -> SerialPort:
        if settings.parity == "E":
            raise termios.error(22, "Invalid argument")
        port = SocketPort()
        port.send(KAMSTRUP)
        return port

    opener = Opener(script)
    readings: list[MeterReading] = []
    han = reader(opener, readings.append)
    async with running(han):
        await wait_until(lambda: len(readings) == 3, "three Kamstrup readings")
    opener.close_devices()
    assert [s.parity for s in opener.calls[:2]] == ["E", "N"]
    assert han.counters["open_failures"] == 1


async def test_auto_mode_keeps_a_parity_that_delivers() -> None:
    ports: list[SocketPort] = []

    def script(n: int, settings: SerialSettings) -> SerialPort:
        port = SocketPort()
        ports.append(port)
        return port

    opener = Opener(script)
    readings: list[MeterReading] = []
    han = reader(opener, readings.append, parity_window_s=0.15)
    async with running(han):
        await wait_until(lambda: len(ports) == 1, "the port to open")
        for _ in range(5):  # a frame every 50 ms keeps the 150 ms window from expiring
            ports[0].send(KAIFA)
            await asyncio.sleep(0.05)
        await wait_until(lambda: len(readings) == 5, "five readings")
    opener.close_devices()
    assert [s.parity for s in opener.calls] == ["E"]
    assert han.counters["parity_switches"] == 0


@pytest.mark.parametrize(("vendor", "parity"), [("kamstrup", "N"), ("aidon", "E"), ("landis_gyr", "E")])
async def test_fixed_vendor_uses_its_parity_only(vendor: str, parity: str) -> None:
    opener = Opener(lambda n, settings: SocketPort())
    han = reader(opener, lambda r: None, vendor=vendor, parity_window_s=0.02)
    async with running(han):
        await wait_until(lambda: len(opener.calls) == 1, "the port to open")
        await asyncio.sleep(0.1)
    opener.close_devices()
    assert [s.parity for s in opener.calls] == [parity]


async def test_network_port_is_not_reopened_for_parity() -> None:
    opener = Opener(lambda n, settings: SocketPort())
    han = HanReader(
        "socket://127.0.0.1:1",
        clock=SystemClock(),
        sink=lambda r: None,
        opener=opener,
        parity_window_s=0.02,
    )
    async with running(han):
        await wait_until(lambda: len(opener.calls) == 1, "the port to open")
        await asyncio.sleep(0.1)
    opener.close_devices()
    assert len(opener.calls) == 1


async def test_open_failures_back_off_exponentially_with_jitter() -> None:
    def script(n: int, settings: SerialSettings) -> SerialPort:
        if n < 4:
            raise FileNotFoundError(2, "No such file or directory", "/dev/ttyHAN-test")
        port = SocketPort()
        port.send(KAIFA)
        return port

    opener = Opener(script)
    readings: list[MeterReading] = []
    with capture_logs() as logs:
        han = reader(opener, readings.append, vendor="kaifa", reconnect_initial_s=0.01, reconnect_max_s=0.04)
        async with running(han):
            await wait_until(lambda: len(readings) == 1, "a reading after the adapter appears")
    opener.close_devices()
    delays = [entry["retry_in_s"] for entry in logs if entry["event"] == "han.open_failed"]
    ceilings = [0.01, 0.02, 0.04, 0.04]
    assert len(delays) == 4
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) > 1
    assert han.counters["open_failures"] == 4
    assert han.counters["connects"] == 1


async def test_unplugged_adapter_reconnects_and_counts() -> None:
    def script(n: int, settings: SerialSettings) -> SerialPort:
        port = SocketPort()
        # The first connection ends inside a frame: that frame is dropped as truncated.
        port.send(KAIFA + (KAIFA[:40] if n == 0 else b""))
        return port

    opener = Opener(script)
    readings: list[MeterReading] = []
    with capture_logs() as logs:
        han = reader(opener, readings.append, vendor="kaifa")
        async with running(han):
            await wait_until(lambda: len(readings) == 1, "the first reading")
            first_port = opener.ports[0]
            assert isinstance(first_port, SocketPort)
            first_port.unplug()
            await wait_until(lambda: len(readings) == 2, "a reading after reconnecting")
    opener.close_devices()
    counters = han.counters
    assert counters["disconnects"] == 1
    assert counters["connects"] == 2
    assert counters["truncated"] == 1
    assert first_port.closed
    assert [e["event"] for e in logs if e["event"].startswith("han.")][:3] == [
        "han.connected",
        "han.disconnected",
        "han.connected",
    ]


async def test_silence_is_reported_once_then_resumed() -> None:
    ports: list[SocketPort] = []

    def script(n: int, settings: SerialSettings) -> SerialPort:
        ports.append(SocketPort())
        return ports[-1]

    opener = Opener(script)
    readings: list[MeterReading] = []
    with capture_logs() as logs:
        han = reader(opener, readings.append, vendor="kaifa", silence_after_s=0.1)
        async with running(han):
            await wait_until(lambda: han.silent, "silence to be reported")
            await asyncio.sleep(0.3)
            assert [e["event"] for e in logs].count("han.silent") == 1
            ports[0].send(KAIFA)
            await wait_until(lambda: not han.silent, "the reading to end the silence")
            await wait_until(lambda: han.counters["silences"] == 2, "the second silence")
    opener.close_devices()
    events = [e["event"] for e in logs if e["event"] in ("han.silent", "han.resumed")]
    assert events == ["han.silent", "han.resumed", "han.silent"]
    assert len(readings) == 1


async def test_readings_carry_the_injected_clock_and_survive_a_failing_sink() -> None:
    port = SocketPort()
    port.send(KAIFA * 3)
    opener = Opener(lambda n, settings: port)
    readings: list[MeterReading] = []

    def sink(reading: MeterReading) -> None:
        readings.append(reading)
        if len(readings) == 1:
            raise RuntimeError("the controller choked")

    clock = OffsetClock()
    with capture_logs():
        han = reader(opener, sink, vendor="kaifa", clock=clock)
        async with running(han):
            await wait_until(lambda: len(readings) == 3, "three readings")
    port.device.close()
    assert han.counters["sink_errors"] == 1
    for reading in readings:
        assert reading.received.monotonic_s >= OffsetClock.MONOTONIC_OFFSET_S
        assert reading.received.utc >= OffsetClock.EPOCH
    assert han.last_valid_monotonic_s == readings[-1].received.monotonic_s


async def test_a_decoder_failure_is_counted_and_reading_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    port = SocketPort()
    opener = Opener(lambda n, settings: port)
    readings: list[MeterReading] = []
    with capture_logs() as logs:
        han = reader(opener, readings.append, vendor="kaifa")
        real_feed = han._decoder.feed
        calls = 0

        def flaky_feed(data: bytes, received: ReceiveTime) -> list[MeterReading]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("decoder bug")
            return real_feed(data, received)

        monkeypatch.setattr(han._decoder, "feed", flaky_feed)
        async with running(han):
            await wait_until(lambda: han.counters["connects"] == 1, "the port to open")
            port.send(KAIFA)
            await wait_until(lambda: han.counters["internal_errors"] == 1, "the failure to be counted")
            port.send(KAIFA)
            await wait_until(lambda: len(readings) == 1, "a reading after the failure")
    port.device.close()
    assert any(e["event"] == "han.decode_failed" for e in logs)


async def test_port_without_file_descriptor_is_read_by_a_joined_thread() -> None:
    def script(n: int, settings: SerialSettings) -> SerialPort:
        port = ThreadOnlyPort()
        port.send(KAIFA)
        return port

    opener = Opener(script)
    readings: list[MeterReading] = []
    han = reader(opener, readings.append, vendor="kaifa")
    async with running(han):
        await wait_until(lambda: len(readings) == 1, "a reading through the thread")
        first = opener.ports[0]
        assert isinstance(first, ThreadOnlyPort)
        first.unplug()
        await wait_until(lambda: len(readings) == 2, "a reading after reconnecting")
    opener.close_devices()
    assert han.counters["disconnects"] == 1
    assert all(isinstance(p, ThreadOnlyPort) and p.closed for p in opener.ports)
    assert not [t for t in threading.enumerate() if t.name.startswith("han-")]


async def test_cancel_while_opening_closes_what_was_opened() -> None:
    opened: list[SocketPort] = []
    started = threading.Event()

    def slow_open(n: int, settings: SerialSettings) -> SerialPort:
        started.set()
        time.sleep(0.2)  # a socket:// connect to a slow converter
        opened.append(SocketPort())
        return opened[-1]

    opener = Opener(slow_open)
    han = reader(opener, lambda r: None)
    async with running(han):
        await wait_until(started.is_set, "the open to start")
    opener.close_devices()
    assert len(opened) == 1
    assert opened[0].closed


async def test_cancel_closes_the_port() -> None:
    port = SocketPort()
    opener = Opener(lambda n, settings: port)
    han = reader(opener, lambda r: None, vendor="kaifa")
    async with running(han):
        await wait_until(lambda: han.counters["connects"] == 1, "the port to open")
    port.device.close()
    assert port.closed


def test_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="positive"):
        HanReader("/dev/null", clock=SystemClock(), sink=lambda r: None, silence_after_s=0)
    with pytest.raises(ValueError, match="ct_ratio"):
        HanReader("/dev/null", clock=SystemClock(), sink=lambda r: None, ct_ratio=0)
    with pytest.raises(ValueError, match="unknown meter vendor"):
        HanReader("/dev/null", clock=SystemClock(), sink=lambda r: None, vendor="iskra")
