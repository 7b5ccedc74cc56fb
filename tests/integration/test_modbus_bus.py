"""The Modbus bus over real wires: pymodbus' clients against the simulator's own Modbus servers on a
TCP socket and on a pty (RTU), with the devices' faults."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from drivers.modbus.bus import Bus, BusConfig
from drivers.modbus.codec import Table
from drivers.modbus.transport import Endpoint, ExceptionAnswer, NoAnswer, PymodbusTransport
from simulator.modbus.frames import Bank
from simulator.modbus.server import RtuPty, TcpEndpoint, Unit, Units


def units() -> Units:
    def bank(offset: int) -> Bank:
        return Bank(
            holding={a: offset + a for a in range(100, 120)},
            input={a: offset + 2 * a for a in range(10)},
            writable=set(range(110, 114)),
        )

    return Units({1: Unit(bank(0)), 2: Unit(bank(1000))})


@contextlib.asynccontextmanager
async def running(bus: Bus) -> AsyncIterator[Bus]:
    task = asyncio.get_running_loop().create_task(bus.run(), name=f"bus-{bus.name}")
    try:
        yield bus
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def wired(kind: str, devices: Units) -> AsyncIterator[Bus]:
    config = BusConfig(timeout_s=0.3, write_retries=1)
    if kind == "tcp":
        async with TcpEndpoint(devices) as endpoint:
            transport = PymodbusTransport(Endpoint.parse(endpoint.url), timeout_s=config.timeout_s)
            async with running(Bus(transport, "tcp", config)) as bus:
                yield bus
    else:
        async with RtuPty(devices) as pty:
            url = f"rtu://{pty.device}?baudrate=19200"
            transport = PymodbusTransport(Endpoint.parse(url), timeout_s=config.timeout_s)
            async with running(Bus(transport, "rtu", config)) as bus:
                yield bus


@pytest.mark.parametrize("kind", ["tcp", "rtu"])
async def test_reads_and_writes_reach_each_unit(kind: str) -> None:
    devices = units()
    async with wired(kind, devices) as bus:
        assert await bus.read(1, Table.HOLDING, 100, 4) == [100, 101, 102, 103]
        assert await bus.read(2, Table.INPUT, 2, 2) == [1004, 1006]
        await bus.write(2, 110, [7, 8])
        await bus.write(1, 113, [9])
        assert await bus.read(2, Table.HOLDING, 110, 2) == [7, 8]
    assert devices.units[2].bank.holding[111] == 8
    assert devices.units[1].bank.holding[113] == 9


@pytest.mark.parametrize("kind", ["tcp", "rtu"])
async def test_an_exception_response_is_a_fault_with_its_code_and_the_bus_goes_on(kind: str) -> None:
    async with wired(kind, units()) as bus:
        with pytest.raises(ExceptionAnswer) as raised:
            await bus.read(1, Table.HOLDING, 500, 2)
        assert raised.value.code == 2
        with pytest.raises(ExceptionAnswer) as raised:
            await bus.write(1, 100, [1])  # a read-only register
        assert raised.value.code == 2
        assert await bus.read(1, Table.HOLDING, 100, 1) == [100]
        assert bus.counters.exceptions == 2


@pytest.mark.parametrize("kind", ["tcp", "rtu"])
async def test_a_silent_device_costs_its_timeouts_and_the_other_still_answers(kind: str) -> None:
    devices = units()
    devices.units[2].faults.silent = True
    async with wired(kind, devices) as bus:
        silent = [asyncio.ensure_future(bus.read(2, Table.HOLDING, 100, 1)) for _ in range(3)]
        healthy = [asyncio.ensure_future(bus.read(1, Table.HOLDING, 100 + k, 1)) for k in range(3)]
        results = await asyncio.gather(*silent, *healthy, return_exceptions=True)
        assert all(isinstance(r, NoAnswer) for r in results[:3]), results
        assert results[3:] == [[100], [101], [102]]
        assert bus.counters.faults_by_unit == {2: 3}


async def test_crc_errors_and_garbage_on_rtu_read_as_no_answer_and_the_line_recovers() -> None:
    devices = units()
    async with wired("rtu", devices) as bus:
        devices.units[1].faults.bad_crc = True
        with pytest.raises(NoAnswer):
            await bus.read(1, Table.HOLDING, 100, 2)
        devices.units[1].faults.bad_crc = False
        devices.units[2].faults.garbage = True
        with contextlib.suppress(NoAnswer):
            await bus.read(2, Table.HOLDING, 100, 2)  # noise before the frame: pymodbus may resync
        devices.units[2].faults.garbage = False
        assert await bus.read(1, Table.HOLDING, 100, 2) == [100, 101]
        assert await bus.read(2, Table.HOLDING, 100, 2) == [1100, 1101]


async def test_a_busy_device_gets_a_write_retried_then_the_fault() -> None:
    devices = units()
    devices.units[1].faults.busy = True
    async with wired("tcp", devices) as bus:
        with pytest.raises(ExceptionAnswer) as raised:
            await bus.write(1, 110, [5])
        assert raised.value.code == 6
        assert bus.counters.retries == 1  # write_retries = 1: two attempts
    assert devices.units[1].requests == 2


async def test_a_unit_nobody_has_is_a_gateway_exception_on_tcp_and_silence_on_rtu() -> None:
    async with wired("tcp", units()) as bus:
        with pytest.raises(ExceptionAnswer) as raised:
            await bus.read(9, Table.HOLDING, 100, 1)
        assert raised.value.code == 11
    async with wired("rtu", units()) as bus:
        with pytest.raises(NoAnswer):
            await bus.read(9, Table.HOLDING, 100, 1)
