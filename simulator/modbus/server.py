"""Serving virtual Modbus devices: Modbus TCP on a socket, Modbus RTU on a pty (an RS-485 adapter).

Many unit ids share one endpoint, as devices share an RS-485 line; a request for a unit nobody has
goes unanswered on RTU (nobody is there) and gets exception 11 on TCP (a gateway with no target).
Each unit has its own faults: silent, slow, busy (exception 6), CRC errors and garbage on RTU.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import structlog

from simulator.han_meter.outputs import make_raw
from simulator.modbus.frames import Bank, answer, crc16_modbus, exception, rtu_request_length, with_crc

GATEWAY_TARGET_FAILED = 11
log = structlog.get_logger(__name__)


@dataclass(slots=True)
class UnitFaults:
    silent: bool = False
    delay_s: float = 0.0
    busy: bool = False
    bad_crc: bool = False  # RTU: the answer's CRC is wrong
    garbage: bool = False  # RTU: noise on the line before the answer


@dataclass(slots=True)
class Unit:
    bank: Bank
    faults: UnitFaults = field(default_factory=UnitFaults)
    requests: int = 0


class Units:
    """The devices behind one endpoint, by unit id."""

    def __init__(self, units: Mapping[int, Unit], *, seed: int = 0) -> None:
        self.units = dict(units)
        self._random = random.Random(seed)
        self.unanswered = 0

    async def respond(self, unit_id: int, pdu: bytes) -> bytes | None:
        """The response PDU for a unit, None for no answer at all."""
        unit = self.units.get(unit_id)
        if unit is None:
            self.unanswered += 1
            return None
        unit.requests += 1
        faults = unit.faults
        if faults.delay_s:
            await asyncio.sleep(faults.delay_s)
        if faults.silent:
            self.unanswered += 1
            return None
        if faults.busy:
            return exception(pdu[0] if pdu else 0, 6)
        return answer(unit.bank, pdu)

    def noise(self, size: int) -> bytes:
        return bytes(self._random.randrange(256) for _ in range(size))


class TcpEndpoint:
    """Modbus TCP on 127.0.0.1 (or `host`): MBAP header, then the PDU."""

    def __init__(self, units: Units, host: str = "127.0.0.1", port: int = 0) -> None:
        self.units = units
        self._host, self._port = host, port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"tcp://{self._host}:{self.port}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
        # Closing the connections ends their tasks (a cancelled stream task is logged by asyncio).
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self._writers.add(writer)
        try:
            while True:
                header = await reader.readexactly(7)
                transaction, protocol, length, unit_id = struct.unpack(">HHHB", header)
                if protocol != 0 or not 2 <= length <= 254:
                    break  # not Modbus: drop the connection, as a device does
                pdu = await reader.readexactly(length - 1)
                response = await self.units.respond(unit_id, pdu)
                if response is None:
                    if unit_id in self.units.units:
                        continue  # a silent device: the client times out
                    response = exception(pdu[0], GATEWAY_TARGET_FAILED)
                writer.write(struct.pack(">HHHB", transaction, 0, len(response) + 1, unit_id) + response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)


class RtuPty:
    """Modbus RTU on a pseudo-terminal: the controller opens `device`; requests are framed by their
    function's length and CRC (a pty has no inter-character timing). A frame with a bad CRC is
    resynchronised on by dropping a byte, as a device that ignores a damaged frame does."""

    def __init__(self, units: Units, *, line_baud: int | None = None, char_bits: int = 11) -> None:
        """`line_baud`: emulate an RS-485 line at that speed - each answer waits for the time the
        request and the answer take on the wire, with the 3.5-character silence before each (a pty
        itself moves bytes at once)."""
        self.units = units
        self.line_baud = line_baud
        self.char_bits = char_bits
        self.line_s = 0.0  # wire time emulated so far
        self._master: int | None = None
        self._slave: int | None = None
        self.device = ""
        self._buffer = b""
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.bad_frames = 0

    async def __aenter__(self) -> Self:
        master, slave = os.openpty()
        make_raw(slave)
        os.set_blocking(master, False)
        self._master, self._slave, self.device = master, slave, os.ttyname(slave)
        loop = asyncio.get_running_loop()
        loop.add_reader(master, self._readable)
        self._task = loop.create_task(self._serve(), name="modbus-rtu-pty")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._master is not None:
            asyncio.get_running_loop().remove_reader(self._master)
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    def _readable(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, OSError):
            return
        if data:
            self._queue.put_nowait(data)

    async def _serve(self) -> None:
        while True:
            self._buffer += await self._queue.get()
            while (length := rtu_request_length(self._buffer)) is not None and len(self._buffer) >= length:
                frame, rest = self._buffer[:length], self._buffer[length:]
                if struct.unpack("<H", frame[-2:])[0] != crc16_modbus(frame[:-2]):
                    self.bad_frames += 1
                    self._buffer = self._buffer[1:]
                    continue
                self._buffer = rest
                await self._answer(frame[0], frame[1:-2], len(frame))

    async def _answer(self, unit_id: int, pdu: bytes, request_bytes: int) -> None:
        response = await self.units.respond(unit_id, pdu)
        if response is None or self._master is None:
            return
        frame = with_crc(bytes((unit_id,)) + response)
        if self.line_baud is not None:
            wire_s = (request_bytes + len(frame) + 7) * self.char_bits / self.line_baud  # + 2 x 3.5 chars
            self.line_s += wire_s
            await asyncio.sleep(wire_s)
        faults = self.units.units[unit_id].faults
        if faults.bad_crc:
            frame = frame[:-1] + bytes((frame[-1] ^ 0xFF,))
        if faults.garbage:
            frame = self.units.noise(5) + frame
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._master, frame)
