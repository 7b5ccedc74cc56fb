"""HanReader and `sitectl han listen` against real ptys and a real TCP socket.

A pty stands in for the USB M-Bus adapter: frames written to the master arrive on the slave the
reader opened, byte for byte (a pty ignores baud rate and parity). Unplugging the adapter is closing
the pty; plugging it back is a new pty behind the same symlink, as udev does with /dev/ttyHAN.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import selectors
import signal
import subprocess
import time
import tty
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from drivers.clock import SystemClock
from drivers.contracts import MeterReading
from drivers.han import HanReader, reading_record
from tests.support import sitectl_argv, subprocess_env
from tests.support.han import by_vendor, frame, values_match
from tests.support.han_ports import running, wait_until

pytestmark = pytest.mark.integration

VENDOR_OPTION = {"Aidon": "aidon", "Kaifa": "kaifa", "Kamstrup": "kamstrup", "Landis+Gyr": "landis_gyr"}


class Pty:
    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)  # no CR/LF translation: the OSS-brikken failure mode
        self.path = os.ttyname(self.slave)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def make_pty() -> Iterator[type[Pty]]:
    made: list[Pty] = []

    class Tracked(Pty):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    yield Tracked
    for opened in made:
        opened.close()


def point(link: Path, target: str) -> None:
    """Atomically (re)point a symlink, as udev does."""
    tmp = link.with_suffix(".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)


def han_reader(port: str, readings: list[MeterReading], **options: object) -> HanReader:
    defaults: dict[str, object] = {
        "clock": SystemClock(),
        "sink": readings.append,
        "reconnect_initial_s": 0.02,
        "reconnect_max_s": 0.1,
    }
    defaults.update(options)
    return HanReader(port, **defaults)  # type: ignore[arg-type]


@pytest.mark.parametrize("vendor", list(VENDOR_OPTION))
async def test_reads_each_vendor_over_a_pty(vendor: str, make_pty: type[Pty]) -> None:
    meter = make_pty()
    frames = by_vendor(vendor)
    readings: list[MeterReading] = []
    han = han_reader(meter.path, readings, vendor=VENDOR_OPTION[vendor])
    async with running(han):
        await wait_until(lambda: han.counters["connects"] == 1, "the reader to open the pty")
        for item in frames:
            meter.write(item.raw)
        await wait_until(lambda: len(readings) == len(frames), f"{len(frames)} {vendor} readings")
    for reading, item in zip(readings, frames, strict=True):
        record = reading_record(reading)
        assert record.pop("vendor") == vendor
        del record["list"]
        assert values_match(record, item.expected) == [], item.id


async def test_auto_mode_end_to_end(make_pty: type[Pty]) -> None:
    meter = make_pty()
    readings: list[MeterReading] = []
    han = han_reader(meter.path, readings, vendor="auto", parity_window_s=5.0)
    async with running(han):
        await wait_until(lambda: han.counters["connects"] == 1, "the reader to open the pty")
        for item in by_vendor("Kamstrup")[:2] + by_vendor("Kaifa")[:2]:
            meter.write(item.raw)
        await wait_until(lambda: len(readings) == 4, "four readings")
    assert [reading_record(r)["vendor"] for r in readings] == ["Kamstrup"] * 2 + ["Kaifa"] * 2


async def test_survives_unplug_and_replug_behind_a_symlink(make_pty: type[Pty], tmp_path: Path) -> None:
    link = tmp_path / "ttyHAN"
    first = make_pty()
    point(link, first.path)
    readings: list[MeterReading] = []
    with capture_logs() as logs:
        han = han_reader(str(link), readings, vendor="kaifa")
        async with running(han):
            await wait_until(lambda: han.counters["connects"] == 1, "the first connection")
            first.write(frame("kaifa_ma304h3e_it_list2_2017").raw)
            await wait_until(lambda: len(readings) == 1, "a reading from the first adapter")
            first.close()  # unplugged
            await wait_until(lambda: han.counters["disconnects"] == 1, "the disconnect to be seen")
            second = make_pty()
            point(link, second.path)
            await wait_until(lambda: han.counters["connects"] == 2, "the reconnect")
            second.write(frame("kaifa_ma304h3e_it_list3_2017").raw)
            await wait_until(lambda: len(readings) == 2, "a reading from the new adapter")
    assert readings[1].energy_import_wh == 112727
    events = [e["event"] for e in logs]
    assert "han.disconnected" in events
    assert events.count("han.connected") == 2


async def test_reports_silence_when_the_meter_stops(make_pty: type[Pty]) -> None:
    meter = make_pty()
    readings: list[MeterReading] = []
    power_list = frame("aidon_list1_b").raw
    with capture_logs() as logs:
        han = han_reader(meter.path, readings, vendor="aidon", silence_after_s=0.3)
        async with running(han):
            await wait_until(lambda: han.counters["connects"] == 1, "the reader to open the pty")
            for _ in range(4):
                meter.write(power_list)
                await asyncio.sleep(0.05)
            await wait_until(lambda: len(readings) == 4, "four readings")
            assert not han.silent
            await wait_until(lambda: han.silent, "silence after the writer stopped")
            last = han.last_valid_monotonic_s
            assert last == readings[-1].received.monotonic_s
            meter.write(power_list)
            await wait_until(lambda: not han.silent, "the meter to be heard again")
    assert [e["event"] for e in logs if e["event"] in ("han.silent", "han.resumed")] == [
        "han.silent",
        "han.resumed",
    ]
    assert han.counters["silences"] == 1


@contextlib.asynccontextmanager
async def tcp_meter(payloads: list[bytes]) -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP serial converter streaming like a meter: connection n repeats payloads[n] every 50 ms.

    Every connection but the last is closed after 0.3 s. (pyserial discards what arrived before its
    open returned, so a single write at connect time could be lost - a real converter streams.)
    """
    served: list[int] = []
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = len(served)
        served.append(index)
        last = index >= len(payloads) - 1
        stop_at = time.monotonic() + 0.3
        try:
            while not done.is_set() and (last or time.monotonic() < stop_at):
                writer.write(payloads[min(index, len(payloads) - 1)])
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.05)
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with server:
            yield port, served
            done.set()
            await asyncio.sleep(0.1)
    finally:
        done.set()


async def test_socket_url_over_tcp_with_reconnect() -> None:
    first = frame("kamstrup_6841131_tn_list1").raw
    second = frame("kamstrup_6841131_tn_list2").raw
    readings: list[MeterReading] = []
    async with tcp_meter([first, second]) as (port, served):
        han = han_reader(f"socket://127.0.0.1:{port}", readings)
        async with running(han):
            await wait_until(
                lambda: any(r.energy_import_wh is not None for r in readings),
                "a reading from the second connection",
            )
    assert len(served) >= 2
    assert han.counters["disconnects"] >= 1
    assert readings[0].list_type == 2
    assert readings[-1].energy_import_wh == 85823280


def listen(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        sitectl_argv("han", "listen", *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
    )


def feed_until(process: subprocess.Popen[bytes], meter: Pty, data: bytes, *, lines: int) -> list[bytes]:
    """Write `data` to the meter every 50 ms until the process printed `lines` lines or exited."""
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    out = b""
    deadline = time.monotonic() + 20
    try:
        while out.count(b"\n") < lines and time.monotonic() < deadline:
            meter.write(data)
            if selector.select(timeout=0.05):
                chunk = process.stdout.read() or b""
                out += chunk
                if not chunk and process.poll() is not None:
                    break
    finally:
        selector.close()
    return out.splitlines()


def test_listen_prints_json_lines_and_stops_after_count(make_pty: type[Pty]) -> None:
    meter = make_pty()
    process = listen(meter.path, "--json", "--count", "2", "--vendor", "aidon")
    try:
        lines = feed_until(process, meter, frame("aidon_6534_tn_list2").raw, lines=2)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stderr is not None
    stderr = process.stderr.read().decode()
    assert len(lines) == 2
    for line in lines:
        record = json.loads(line)
        assert record["vendor"] == "Aidon"
        assert record["current_l2_a"] == pytest.approx(9.8)
        assert record["received_utc"].endswith("Z")
    assert "han listen: frames=" in stderr
    assert "readings=2" in stderr


def test_listen_text_and_sigterm(make_pty: type[Pty]) -> None:
    meter = make_pty()
    process = listen(meter.path)
    try:
        lines = feed_until(process, meter, frame("aidon_6540_it_ct_list2_missing_il2").raw, lines=1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stderr is not None
    stderr = process.stderr.read().decode()
    assert "Aidon list 2: P+ 17 W, P- 0 W, I 0/-/0 A, U 237.2/236.9/237.9 V" in lines[0].decode()
    assert "han listen: frames=" in stderr
