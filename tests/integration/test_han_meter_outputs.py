"""The virtual meter over real file descriptors: a pty (with unplug/replug), TCP clients, a serial port."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import select
import socket
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import serial

from drivers.contracts import MeterVendor, ReceiveTime
from drivers.han import HanStreamDecoder
from simulator.clock import SimClock
from simulator.han_meter import (
    ListType,
    MeterState,
    PtyOutput,
    SentFrame,
    SerialOutput,
    TcpOutput,
    Vendor,
    VirtualMeter,
    default_profile,
    encode,
)
from tests.support import REPO_ROOT, subprocess_env
from tests.unit.han_meter_support import check_frame, split_frames

pytestmark = pytest.mark.integration

EPOCH = datetime(2026, 11, 22, 16, 0, 1, tzinfo=UTC)
STATE = MeterState(
    current_a=(13.0, 10.0, 26.0),  # 0x0D, 0x0A in the payload: CR/LF translation would show
    voltage_v=(230.0, 231.0, 232.0),
    active_power_import_w=3_338.0,  # 0x0D0A
)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def read_available(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


async def read_pty_until(fd: int, predicate: Callable[[bytes], bool], timeout_s: float = 20.0) -> bytes:
    data = b""
    async with asyncio.timeout(timeout_s):
        while not predicate(data):
            await asyncio.sleep(0.005)
            data += read_available(fd)
    return data


async def until(condition: Callable[[], bool], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if condition():
                return
            await asyncio.sleep(0.005)


def reads_hangup(fd: int) -> bool:
    """A hung-up tty reads as end of file (or EIO) once what it buffered is drained; it never
    blocks (EAGAIN) like a live one with nothing to say."""
    for _ in range(100):
        try:
            if not os.read(fd, 4096):
                return True
        except BlockingIOError:
            return False
        except OSError as exc:
            return exc.errno == errno.EIO
    return False


def is_run_of(received: list[bytes], sent: list[bytes]) -> bool:
    return any(sent[i : i + len(received)] == received for i in range(len(sent)))


def frame_count(n: int) -> Callable[[bytes], bool]:
    return lambda data: len(split_frames(data)[0]) >= n


async def test_pty_reader_gets_exact_frames_and_survives_unplug_replug(tmp_path: Path) -> None:
    fds_before = open_fds()
    link = tmp_path / "ttyHAN0"
    sent: list[SentFrame] = []
    clock = SimClock(50.0, EPOCH)
    async with PtyOutput(link) as pty:
        assert link.is_symlink()
        assert os.readlink(link) == pty.slave_path
        meter = VirtualMeter(
            default_profile(Vendor.AIDON, 3, "IT"), lambda: STATE, clock, pty, on_frame=sent.append
        )
        task = asyncio.create_task(meter.run(), name="meter")
        try:
            reader = os.open(link, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
            try:
                data = await read_pty_until(reader, frame_count(4))
            finally:
                os.close(reader)
            frames, _ = split_frames(data)
            assert all(check_frame(f).ok for f in frames)
            # Raw mode: every frame arrives as sent, 0x0A/0x0D bytes and all.
            assert is_run_of(frames, [f.data for f in sent])
            assert b"\x0d\x0a" in frames[1]

            # Unplug: the device node vanishes, a reader on the old pty sees the hangup, bytes are lost.
            old_path = pty.slave_path
            stale = os.open(old_path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
            try:
                pty.unplug()
                assert not link.exists()
                assert not pty.plugged
                assert reads_hangup(stale)
            finally:
                os.close(stale)
            dropped = pty.bytes_dropped
            await until(lambda: pty.bytes_dropped > dropped, 20)

            # Replug: a new pty behind the same link; a reader re-pointed at the link gets frames.
            pty.replug()
            assert link.is_symlink()
            assert os.readlink(link) == pty.slave_path
            reader = os.open(link, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
            try:
                data = await read_pty_until(reader, frame_count(2))
            finally:
                os.close(reader)
            assert all(check_frame(f).ok for f in split_frames(data)[0])
            assert pty.plug_count == 2
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert not link.exists()
    assert open_fds() == fds_before


async def test_pty_with_nobody_reading_drops_instead_of_blocking() -> None:
    async with PtyOutput() as pty:
        frame = encode(default_profile(Vendor.KAMSTRUP), ListType.HOURLY, STATE, EPOCH)
        for _ in range(2000):  # far more than a pty buffers
            await pty.write(frame)
        assert pty.bytes_written > 0
        assert pty.bytes_dropped > 0
        assert pty.bytes_written + pty.bytes_dropped == 2000 * len(frame)


async def test_tcp_clients_all_receive_the_stream() -> None:
    fds_before = open_fds()
    sent: list[SentFrame] = []
    clock = SimClock(50.0, EPOCH)
    async with TcpOutput("127.0.0.1", 0) as tcp:
        meter = VirtualMeter(
            default_profile(Vendor.KAIFA, 3, "TN"), lambda: STATE, clock, tcp, on_frame=sent.append
        )
        first = await asyncio.open_connection("127.0.0.1", tcp.port)
        second = await asyncio.open_connection("127.0.0.1", tcp.port)
        await until(lambda: tcp.client_count == 2, 10)
        task = asyncio.create_task(meter.run(), name="meter")
        try:
            streams = []
            for reader, _ in (first, second):
                data = b""
                async with asyncio.timeout(20):
                    while len(split_frames(data)[0]) < 5:
                        data += await reader.read(4096)
                streams.append(data)
            for data in streams:
                frames, gaps = split_frames(data)
                assert all(check_frame(f).ok for f in frames)
                assert set(gaps) <= {b""}
                assert frames[:5] == [f.data for f in sent[:5]]

            # A client leaving does not disturb the others.
            first[1].close()
            await first[1].wait_closed()
            await until(lambda: tcp.client_count == 1, 10)
            more = await second[0].read(4096)
            assert more
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    # Closing the output ended the remaining client's connection.
    async with asyncio.timeout(10):
        while await second[0].read(4096):
            pass
    second[1].close()
    await second[1].wait_closed()
    assert open_fds() == fds_before


async def test_tcp_client_that_stops_reading_is_dropped() -> None:
    async with TcpOutput("127.0.0.1", 0, max_buffer_bytes=64 * 1024) as tcp:
        reader, writer = await asyncio.open_connection("127.0.0.1", tcp.port)
        await until(lambda: tcp.client_count == 1, 10)
        chunk = b"\x7e" * (256 * 1024)
        async with asyncio.timeout(20):
            while tcp.clients_dropped == 0:
                await tcp.write(chunk)
                await asyncio.sleep(0)
        await until(lambda: tcp.client_count == 0, 10)
        # The client still gets what the kernel had queued, then the end of the connection.
        async with asyncio.timeout(20):
            with contextlib.suppress(ConnectionResetError):
                while await reader.read(1 << 20):
                    pass
        writer.close()
        await writer.wait_closed()


def test_command_line_meter_serves_tcp() -> None:
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "simulator.han_meter", "--vendor", "kamstrup", "--grid", "IT"),
            *("--tcp", "127.0.0.1:0", "--speed", "20", "--duration", "3"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env(),
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving kamstrup meter on socket://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            data = b""
            while not split_frames(data)[0]:
                chunk = sock.recv(4096)
                assert chunk, "connection closed before a frame arrived"
                data += chunk
        frame = split_frames(data)[0][0]
        assert check_frame(frame).ok
        assert b"Kamstrup_V0001" in frame
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert "frames sent" in out


async def test_tcp_close_does_not_wait_for_a_client_that_never_reads() -> None:
    tcp = TcpOutput("127.0.0.1", 0, max_buffer_bytes=1 << 30)
    await tcp.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", tcp.port)
    try:
        await until(lambda: tcp.client_count == 1, 10)
        for _ in range(32):  # more than the kernel's socket buffers hold
            await tcp.write(b"\x00" * (1 << 20))
    finally:
        async with asyncio.timeout(10):
            await tcp.aclose()
    assert tcp.client_count == 0
    writer.close()
    await writer.wait_closed()
    del reader


# ----------------------------------------------------------------------------------- serial port


@contextlib.contextmanager
def pty_pair() -> Iterator[tuple[int, int, str]]:
    master, slave = os.openpty()
    try:
        yield master, slave, os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def read_for(master: int, wait_s: float = 2.0) -> bytes:
    data = b""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            data += os.read(master, 4096)
        elif data:
            break
    return data


@pytest.mark.parametrize(("parity", "line"), [("E", "2400 8E1"), ("N", "2400 8N1")])
async def test_serial_output_opens_the_meters_line_and_passes_bytes_unchanged(parity: str, line: str) -> None:
    # A pty stands in for the USB adapter. It takes the baud rate into its termios, but Linux's pty
    # driver forces 8 bits without parity whatever is set: the parity is read back from the port.
    with pty_pair() as (master, slave, path):
        frame = encode(default_profile(Vendor.KAIFA), ListType.FULL, STATE, EPOCH)
        async with SerialOutput(path, parity=parity) as out:
            assert out.line_settings() == line
            attrs = termios.tcgetattr(slave)
            assert attrs[4] == attrs[5] == termios.B2400
            assert attrs[2] & termios.CSIZE == termios.CS8
            assert not attrs[2] & termios.CSTOPB
            await out.write(frame)
            assert read_for(master) == frame
            assert out.bytes_written == len(frame) and out.bytes_dropped == 0


def test_a_wrong_serial_device_is_an_error_not_silence(tmp_path: Path) -> None:
    with pytest.raises(serial.SerialException):
        SerialOutput(str(tmp_path / "ttyUSB9"), parity="E").open()


def test_sim_run_writes_the_meter_to_a_serial_port_for_a_real_box(tmp_path: Path) -> None:
    # `python -m simulator run --meter-serial DEVICE`: what a real box's HAN reader gets on its cable,
    # decoded by the product's own decoder (Kamstrup: 8N1, a list every 10 s).
    scenario = REPO_ROOT / "simulator" / "scenarios" / "kamstrup_10s.toml"
    with pty_pair() as (master, _slave, path):
        proc = subprocess.Popen(
            [sys.executable, "-m", "simulator", "run", str(scenario), "--meter-serial", path,
             "--speed", "5", "--duration", "32"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env(),
        )  # fmt: skip
        received = b""
        try:
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                received += read_for(master, 0.5)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err.decode()
        assert f"HAN frames on {path}" in out.decode()
    decoder = HanStreamDecoder()
    readings = decoder.feed(received, ReceiveTime(0.0, EPOCH))
    assert len(readings) >= 2
    assert {r.vendor for r in readings} == {MeterVendor.KAMSTRUP}
    assert decoder.counters["frames"] == len(readings)
