"""Where the virtual meter's bytes go: memory (tests), a pty (a USB serial adapter), TCP clients,
a real serial port.

Every output behaves like a wire: a write never blocks the meter. Bytes nobody can take (pty
unplugged or its buffer full, a TCP client that stopped reading) are dropped and counted, as they
would be on an M-Bus line with no reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import serial
import structlog


class Output(Protocol):
    async def write(self, data: bytes) -> None: ...

    async def aclose(self) -> None: ...


class MemoryOutput:
    """Keeps every chunk written, in order."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.closed = False

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def write(self, data: bytes) -> None:
        if self.closed:
            raise RuntimeError("write to a closed MemoryOutput")
        self.chunks.append(bytes(data))

    async def aclose(self) -> None:
        self.closed = True


def make_raw(fd: int) -> None:
    """cfmakeraw on the slave: 8 data bits, no parity, and above all no CR/LF translation, which
    would insert or swallow 0x0D/0x0A bytes inside binary frames."""
    attrs = termios.tcgetattr(fd)
    attrs[0] &= ~(
        termios.IGNBRK
        | termios.BRKINT
        | termios.PARMRK
        | termios.ISTRIP
        | termios.INLCR
        | termios.IGNCR
        | termios.ICRNL
        | termios.IXON
        | termios.IXOFF
    )
    attrs[1] &= ~termios.OPOST
    attrs[2] &= ~(termios.CSIZE | termios.PARENB)
    attrs[2] |= termios.CS8
    attrs[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    attrs[6][termios.VMIN] = 1
    attrs[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


class PtyOutput:
    """A pseudo-terminal in raw mode standing in for the meter's USB serial adapter.

    A reader opens `slave_path` (or the stable `link_path` symlink to it). `unplug()` closes the
    pty and removes the symlink, as a pulled adapter makes /dev/ttyUSB0 vanish; `replug()` opens a
    new pty (a new slave path) behind the same symlink.
    """

    def __init__(self, link_path: str | Path | None = None) -> None:
        self.link_path = Path(link_path) if link_path is not None else None
        self._master: int | None = None
        self._slave: int | None = None
        self._slave_path: str | None = None
        self.bytes_written = 0
        self.bytes_dropped = 0
        self.plug_count = 0
        self._log = structlog.get_logger("simulator.han_meter.pty")

    async def __aenter__(self) -> Self:
        self.replug()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def plugged(self) -> bool:
        return self._master is not None

    @property
    def slave_path(self) -> str:
        if self._slave_path is None:
            raise RuntimeError("the pty is unplugged")
        return self._slave_path

    def replug(self) -> None:
        """Open a new pty (no-op when plugged in) and point the symlink at it."""
        if self.plugged:
            return
        master, slave = os.openpty()
        try:
            make_raw(slave)
            os.set_blocking(master, False)
            slave_path = os.ttyname(slave)
            if self.link_path is not None:
                tmp = self.link_path.with_name(f".{self.link_path.name}.{os.getpid()}.tmp")
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                tmp.symlink_to(slave_path)
                tmp.replace(self.link_path)
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        # The simulator keeps its own slave descriptor so the pty and its raw settings survive a
        # reader closing and reopening the port.
        self._master, self._slave, self._slave_path = master, slave, slave_path
        self.plug_count += 1
        self._log.info("han_pty.plugged", slave=slave_path, link=str(self.link_path))

    def unplug(self) -> None:
        if not self.plugged:
            return
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None
        if self.link_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link_path.unlink()
        self._log.info("han_pty.unplugged", slave=self._slave_path)
        self._slave_path = None

    async def write(self, data: bytes) -> None:
        if self._master is None:
            self.bytes_dropped += len(data)
            return
        try:
            written = os.write(self._master, data)
        except (BlockingIOError, OSError):
            written = 0
        self.bytes_written += written
        self.bytes_dropped += len(data) - written

    async def aclose(self) -> None:
        self.unplug()


class TcpOutput:
    """Listens on host:port and sends the byte stream to every connected client, like a
    serial-to-TCP bridge (readers use pyserial's socket://host:port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, max_buffer_bytes: int = 64 * 1024) -> None:
        self.host = host
        self._requested_port = port
        self.max_buffer_bytes = max_buffer_bytes
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.bytes_dropped = 0
        self.clients_dropped = 0
        self._log = structlog.get_logger("simulator.han_meter.tcp")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._serve, self.host, self._requested_port)
        self._log.info("han_tcp.listening", host=self.host, port=self.port)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the TCP output is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def client_count(self) -> int:
        return len(self._writers)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        peer = writer.get_extra_info("peername")
        self._writers.add(writer)
        self._log.info("han_tcp.client_connected", peer=str(peer))
        try:
            # The meter only talks; whatever a client sends is read and thrown away so that the
            # connection's end is noticed.
            while await reader.read(4096):
                pass
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            self._log.info("han_tcp.client_disconnected", peer=str(peer))
            if task is not None:
                self._handlers.discard(task)

    async def write(self, data: bytes) -> None:
        for writer in list(self._writers):
            if writer.is_closing():
                continue
            if writer.transport.get_write_buffer_size() > self.max_buffer_bytes:
                # A client that stopped reading would otherwise make the simulator's memory grow.
                self.clients_dropped += 1
                self.bytes_dropped += len(data)
                self._log.warning("han_tcp.slow_client_dropped", peer=str(writer.get_extra_info("peername")))
                # abort, not close: close would wait for the full buffer to reach a client that
                # does not read, and the connection would never end.
                writer.transport.abort()
                continue
            writer.write(data)

    def disconnect_clients(self) -> None:
        """Drop every client connection at once, unsent bytes included (a network blip); the
        listener stays up."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        self.disconnect_clients()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)


class SerialOutput:
    """A real serial port: the simulated meter on the wire of a real box's HAN input.

    Opened at the meter's line settings - 2400 baud, 8 data bits, even parity (Aidon, Kaifa,
    Landis+Gyr) or none (Kamstrup), 1 stop bit - through pyserial, so a device path, a pty or a
    pyserial URL (rfc2217://) all work. It is for real time: 2400 baud carries about 218 bytes/s
    with parity, and what the port does not take at once (an accelerated clock) is dropped and
    counted, as on the line. Opening fails loudly (a wrong device path is the user's to fix).
    """

    def __init__(self, device: str, *, parity: str) -> None:
        if parity not in ("E", "N"):
            raise ValueError(f"parity must be 'E' or 'N', got {parity!r}")
        self.device = device
        self.parity = parity
        self._port: serial.SerialBase | None = None
        self.bytes_written = 0
        self.bytes_dropped = 0
        self._log = structlog.get_logger("simulator.han_meter.serial")

    async def __aenter__(self) -> Self:
        self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def open(self) -> None:
        if self._port is not None:
            return
        self._port = serial.serial_for_url(
            self.device,
            baudrate=2400,
            bytesize=serial.EIGHTBITS,
            parity=serial.PARITY_EVEN if self.parity == "E" else serial.PARITY_NONE,
            stopbits=serial.STOPBITS_ONE,
            timeout=0,
            write_timeout=0,  # non-blocking: write() returns what the port took
        )
        self._log.info("han_serial.opened", device=self.device, settings=f"2400 8{self.parity}1")

    def line_settings(self) -> str:
        """The open port's settings as people write them, e.g. `2400 8E1`."""
        if self._port is None:
            raise RuntimeError("the serial port is not open")
        port = self._port
        return f"{port.baudrate} {port.bytesize}{port.parity}{port.stopbits:g}"

    async def write(self, data: bytes) -> None:
        if self._port is None:
            self.bytes_dropped += len(data)
            return
        try:
            written = self._port.write(data) or 0
        except (serial.SerialException, OSError) as exc:
            written = 0
            self._log.warning("han_serial.write_failed", device=self.device, error=str(exc))
        self.bytes_written += written
        self.bytes_dropped += len(data) - written

    async def aclose(self) -> None:
        if self._port is not None:
            self._port.close()
            self._port = None
