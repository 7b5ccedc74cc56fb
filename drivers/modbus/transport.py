"""The wire: Modbus TCP and RTU requests through pymodbus' async clients, one request at a time.

`Transport` is what the bus scheduler (bus.py) needs: read registers, write registers, each with a
timeout, each ending in words or one of three faults (`NoAnswer`, `ExceptionAnswer`, `BadAnswer`).
pymodbus' own retries are off (a retry is the scheduler's decision, so a dead device cannot hold
the bus for the others); it keeps the connection and reconnects with its backoff. On RTU it frames
the requests (CRC, 3.5-character silences); a frame with a bad CRC or garbage reads as no answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from pymodbus import ModbusException
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.pdu import ExceptionResponse

from drivers.modbus.codec import Table

# Exception codes (Modbus application protocol 1.1b3, 7).
EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class ModbusFault(Exception):
    """A request that brought no usable answer."""


class NoAnswer(ModbusFault):
    """Timed out, not connected, or the answer was lost to a CRC error or garbage."""


class ExceptionAnswer(ModbusFault):
    def __init__(self, code: int) -> None:
        super().__init__(f"exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})")
        self.code = code


class BadAnswer(ModbusFault):
    """An answer of the wrong shape (register count, unit id)."""


class Transport(Protocol):
    async def read(
        self, unit: int, table: Table, start: int, count: int, *, timeout_s: float
    ) -> list[int]: ...

    async def write(self, unit: int, start: int, words: Sequence[int], *, timeout_s: float) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a bus is: `tcp://host:port` or `rtu:///dev/ttyUSB0?baudrate=9600&parity=E&stopbits=1`."""

    kind: str  # "tcp" | "rtu"
    host: str = ""
    port: int = 502
    device: str = ""
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme == "tcp" and parts.hostname:
            return cls("tcp", host=parts.hostname, port=parts.port or 502)
        if parts.scheme == "rtu" and parts.path:
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            parity = query.get("parity", "N").upper()
            if parity not in ("N", "E", "O"):
                raise ValueError(f"parity must be N, E or O, got {parity!r}")
            return cls(
                "rtu",
                device=parts.path,
                baudrate=int(query.get("baudrate", "9600")),
                parity=parity,
                stopbits=int(query.get("stopbits", "1")),
            )
        raise ValueError(f"expected tcp://host:port or rtu:///dev/<device>, got {url!r}")

    @property
    def char_bits(self) -> int:
        """Bits on the line per character: start, 8 data, parity, stop (11 with parity or 2 stops)."""
        return 1 + 8 + (0 if self.parity == "N" else 1) + self.stopbits

    def __str__(self) -> str:
        if self.kind == "tcp":
            return f"tcp://{self.host}:{self.port}"
        return f"rtu://{self.device}?baudrate={self.baudrate}&parity={self.parity}&stopbits={self.stopbits}"


class PymodbusTransport:
    def __init__(self, endpoint: Endpoint, *, timeout_s: float = 1.0) -> None:
        self.endpoint = endpoint
        client: AsyncModbusTcpClient | AsyncModbusSerialClient
        if endpoint.kind == "tcp":
            client = AsyncModbusTcpClient(endpoint.host, port=endpoint.port, timeout=timeout_s, retries=0)
        else:
            client = AsyncModbusSerialClient(
                endpoint.device,
                baudrate=endpoint.baudrate,
                parity=endpoint.parity,
                stopbits=endpoint.stopbits,
                timeout=timeout_s,
                retries=0,
            )
        self._client = client

    async def _connected(self, timeout_s: float) -> None:
        if self._client.connected:
            return
        try:
            ok = await _bounded(asyncio.ensure_future(self._client.connect()), timeout_s, "no answer in time")
        except (NoAnswer, OSError) as exc:
            raise NoAnswer(f"cannot connect to {self.endpoint}: {exc}") from None
        if not ok:
            raise NoAnswer(f"cannot connect to {self.endpoint}")

    async def read(self, unit: int, table: Table, start: int, count: int, *, timeout_s: float) -> list[int]:
        await self._connected(timeout_s)
        call = (
            self._client.read_holding_registers
            if table is Table.HOLDING
            else self._client.read_input_registers
        )
        answer = await self._call(call(start, count=count, device_id=unit), timeout_s)
        registers = list(getattr(answer, "registers", []))
        if len(registers) < count:
            raise BadAnswer(f"{len(registers)} registers in the answer, {count} asked for")
        return registers[:count]

    async def write(self, unit: int, start: int, words: Sequence[int], *, timeout_s: float) -> None:
        await self._connected(timeout_s)
        if len(words) == 1:
            request = self._client.write_register(start, words[0], device_id=unit)
        else:
            request = self._client.write_registers(start, list(words), device_id=unit)
        await self._call(request, timeout_s)

    @staticmethod
    async def _call(request: Any, timeout_s: float) -> Any:
        # The request runs as its own task and is abandoned at the deadline: a client that does
        # not give up by itself (one that swallows the cancellation) must not hold the bus.
        answer = await _bounded(asyncio.ensure_future(request), timeout_s + 0.5, "no answer in time")
        if isinstance(answer, ExceptionResponse):
            raise ExceptionAnswer(int(answer.exception_code))
        if answer.isError():
            raise BadAnswer(repr(answer))
        return answer

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()


async def _bounded(task: asyncio.Future[Any], timeout_s: float, why: str) -> Any:
    """The task's result, or NoAnswer at the deadline (the task is then cancelled and left: its
    outcome is fetched when it ends, so asyncio does not log it as never retrieved)."""
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        task.cancel()
        task.add_done_callback(lambda t: None if t.cancelled() else t.exception())
        raise NoAnswer(why)
    try:
        return task.result()
    except (ModbusException, OSError) as exc:
        raise NoAnswer(str(exc)) from None
