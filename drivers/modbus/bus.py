"""One Modbus bus (a TCP endpoint, or an RS-485 line shared by many unit ids), one request at a time.

An RTU line carries one transaction at a time, and a TCP endpoint of one device gains nothing from
more. The scheduler puts writes (setpoints, fail-safe registers, heartbeats) before reads, in the
order they came; reads take turns by unit id, so a device with many blocks cannot starve the others.
Each request is bounded by its timeout and a bounded number of retries (writes; a read is retried
by the next poll), so a device that stops answering costs the bus its timeouts, never a stall.

The gap between requests (`gap_s`, on top of the 3.5 characters pymodbus keeps) is wire time:
asyncio's clock, not the controller's (which may be accelerated in a simulation).
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from drivers.modbus.codec import Table
from drivers.modbus.transport import ExceptionAnswer, ModbusFault, NoAnswer, Transport

log = structlog.get_logger(__name__)

DEVICE_BUSY = 6


@dataclass(frozen=True, slots=True)
class BusConfig:
    timeout_s: float = 1.0
    write_retries: int = 2
    gap_s: float = 0.0  # extra silence after each request (wire time), for devices that need it
    busy_retry_s: float = 0.05


@dataclass(slots=True)
class BusCounters:
    reads: int = 0
    writes: int = 0
    no_answer: int = 0
    exceptions: int = 0
    bad_answers: int = 0
    retries: int = 0
    faults_by_unit: dict[int, int] = field(default_factory=dict)


class _Kind(enum.Enum):
    READ = "read"
    WRITE = "write"


@dataclass(slots=True)
class _Request:
    kind: _Kind
    unit: int
    table: Table
    start: int
    count: int
    words: tuple[int, ...]
    answer: asyncio.Future[list[int]]


class Bus:
    def __init__(self, transport: Transport, name: str, config: BusConfig | None = None) -> None:
        self.name = name
        self._transport = transport
        self._config = config or BusConfig()
        self._writes: deque[_Request] = deque()
        self._reads: dict[int, deque[_Request]] = {}
        self._turns: deque[int] = deque()  # units with reads waiting, in turn order
        self._wake = asyncio.Event()
        self.counters = BusCounters()

    @property
    def config(self) -> BusConfig:
        return self._config

    async def close(self) -> None:
        """Close the transport of a bus that never ran (run() closes its own on the way out)."""
        await self._transport.close()

    async def read(self, unit: int, table: Table, start: int, count: int) -> list[int]:
        """The registers, or a ModbusFault after the request's timeout."""
        request = self._request(_Kind.READ, unit, table, start, count, ())
        queue = self._reads.setdefault(unit, deque())
        if not queue and unit not in self._turns:
            self._turns.append(unit)
        queue.append(request)
        self._wake.set()
        return await request.answer

    async def write(self, unit: int, start: int, words: Sequence[int]) -> None:
        request = self._request(_Kind.WRITE, unit, Table.HOLDING, start, len(words), tuple(words))
        self._writes.append(request)
        self._wake.set()
        await request.answer

    @staticmethod
    def _request(
        kind: _Kind, unit: int, table: Table, start: int, count: int, words: tuple[int, ...]
    ) -> _Request:
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        return _Request(kind, unit, table, start, count, words, future)

    def _next(self) -> _Request | None:
        while self._writes:
            request = self._writes.popleft()
            if not request.answer.done():  # a caller that gave up (cancelled) is skipped
                return request
        while self._turns:
            unit = self._turns.popleft()
            queue = self._reads[unit]
            request = queue.popleft()
            if queue:
                self._turns.append(unit)  # its next read waits for the others' turns
            if not request.answer.done():
                return request
        return None

    async def run(self) -> None:
        """Serve requests until cancelled; the transport is closed on the way out."""
        try:
            while True:
                request = self._next()
                if request is None:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await self._serve(request)
                if self._config.gap_s:
                    await asyncio.sleep(self._config.gap_s)
        finally:
            for request in [*self._writes, *(r for q in self._reads.values() for r in q)]:
                if not request.answer.done():
                    request.answer.set_exception(NoAnswer(f"bus {self.name} stopped"))
            await self._transport.close()

    async def _serve(self, request: _Request) -> None:
        config = self._config
        attempts = 1 + (config.write_retries if request.kind is _Kind.WRITE else 0)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                if request.kind is _Kind.READ:
                    self.counters.reads += 1
                    words = await self._transport.read(
                        request.unit, request.table, request.start, request.count, timeout_s=config.timeout_s
                    )
                else:
                    self.counters.writes += 1
                    await self._transport.write(
                        request.unit, request.start, request.words, timeout_s=config.timeout_s
                    )
                    words = list(request.words)
            except ModbusFault as fault:
                self._count(request, fault)
                busy = isinstance(fault, ExceptionAnswer) and fault.code == DEVICE_BUSY
                final = isinstance(fault, ExceptionAnswer) and not busy  # the device said no
                if last or final:
                    if not request.answer.done():
                        request.answer.set_exception(fault)
                    return
                self.counters.retries += 1
                if busy:
                    await asyncio.sleep(config.busy_retry_s)
                continue
            except Exception as exc:  # a transport bug or an OS error must not end the bus task
                log.exception("modbus.transport_error", bus=self.name, unit=request.unit)
                lost = NoAnswer(f"transport error: {exc!r}")
                self._count(request, lost)
                if not request.answer.done():
                    request.answer.set_exception(lost)
                return
            if not request.answer.done():
                request.answer.set_result(words)
            return

    def _count(self, request: _Request, fault: ModbusFault) -> None:
        counters = self.counters
        if isinstance(fault, NoAnswer):
            counters.no_answer += 1
        elif isinstance(fault, ExceptionAnswer):
            counters.exceptions += 1
        else:
            counters.bad_answers += 1
        counters.faults_by_unit[request.unit] = counters.faults_by_unit.get(request.unit, 0) + 1
        log.debug(
            "modbus.fault",
            bus=self.name,
            unit=request.unit,
            kind=request.kind.value,
            address=request.start,
            fault=str(fault),
        )
