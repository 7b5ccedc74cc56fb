"""A Modbus charger driven through the driver contracts, from its shipped template, against the
simulator's virtual chargers over real TCP sockets and a real pty: provisioning with the fail-safe
read back, limits, sessions from the vehicle state and the energy register, the fall-back when the
controller stops refreshing, and a silent charger reported offline."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import pytest

from drivers.clock import ScaledClock
from drivers.contracts import (
    ChargerEvent,
    ChargerStatus,
    ConnectorState,
    EnergySample,
    TransactionStarted,
    TransactionStopped,
)
from drivers.modbus.bus import Bus, BusConfig
from drivers.modbus.charger import ModbusCharger, ModbusChargerConfig
from drivers.modbus.template import load_template
from drivers.modbus.transport import Endpoint, PymodbusTransport
from simulator.modbus.chargers import AbbTerraAc, AlfenEve, PluggedCar, VestelEvc04, VirtualModbusCharger
from simulator.modbus.server import RtuPty, TcpEndpoint, Units
from tests.support import REPO_ROOT
from tests.support.waiting import until

E = TypeVar("E")
SPEED = 20.0  # simulated seconds per real second: a 20 s fail-safe timeout takes 1 s
DEVICES = REPO_ROOT / "config" / "devices"


@dataclass
class Rig:
    virtual: VirtualModbusCharger
    driver: ModbusCharger
    clock: ScaledClock
    units: Units
    statuses: list[ChargerStatus] = field(default_factory=list)
    recorded: list[ChargerEvent] = field(default_factory=list)

    @property
    def status(self) -> ChargerStatus:
        return self.statuses[-1]

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.recorded if isinstance(e, kind)]


@contextlib.asynccontextmanager
async def rig(model: str, virtual: VirtualModbusCharger, *, wire: str = "tcp") -> AsyncIterator[Rig]:
    clock = ScaledClock(SPEED, datetime(2026, 12, 1, 18, 0, tzinfo=UTC))
    template = load_template(DEVICES / f"{model}.toml")
    units = Units(virtual.units())
    async with contextlib.AsyncExitStack() as stack:
        if wire == "tcp":
            endpoint = await stack.enter_async_context(TcpEndpoint(units))
            url = endpoint.url
        else:
            pty = await stack.enter_async_context(RtuPty(units))
            url = f"rtu://{pty.device}?baudrate=19200"
        bus = Bus(PymodbusTransport(Endpoint.parse(url), timeout_s=0.3), model, BusConfig(timeout_s=0.3))
        ids = itertools.count(1)
        holder: list[Rig] = []

        async def record(event: ChargerEvent) -> None:
            holder[0].recorded.append(event)

        driver = ModbusCharger(
            ModbusChargerConfig(
                charger_id="MB-1",
                unit_id=virtual.unit_id,
                template=template,
                safe_current_a=6.0,
                max_current_a=16.0,
                poll_interval_s=2.0,
                sample_interval_s=10.0,
                lease_s=60.0,
            ),
            bus,
            clock,
            sink=lambda status: holder[0].statuses.append(status),  # type: ignore[arg-type]
            record=record,
            new_transaction_id=lambda: f"mb-{next(ids)}",
        )
        here = Rig(virtual, driver, clock, units)
        holder.append(here)

        async def physics() -> None:
            while True:
                virtual.step(clock.monotonic())
                await asyncio.sleep(0.01)

        tasks = [
            asyncio.create_task(bus.run(), name="bus"),
            asyncio.create_task(driver.run(), name="driver"),
            asyncio.create_task(physics(), name="physics"),
        ]
        try:
            yield here
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


CASES = [
    ("vestel_evc04", lambda: VestelEvc04(max_a=16.0, safe_a=0.0, timeout_s=20.0), "tcp"),
    ("alfen_eve", lambda: AlfenEve(max_a=16.0, safe_a=6.0, timeout_s=60.0), "tcp"),
    ("abb_terra_ac", lambda: AbbTerraAc(max_a=16.0, safe_a=6.0), "rtu"),
]


@pytest.mark.parametrize(("model", "make", "wire"), CASES, ids=[c[0] for c in CASES])
async def test_a_session_from_plug_to_unplug_is_billed_from_the_register(
    model: str, make: Callable[[], VirtualModbusCharger], wire: str
) -> None:
    virtual = make()
    async with rig(model, virtual, wire=wire) as r:
        await until(lambda: bool(r.statuses) and r.status.online, 5, "the charger provisioned")
        assert r.status.state is ConnectorState.AVAILABLE and r.status.transaction_id is None
        virtual.plug(PluggedCar(takes_a=32.0, phases=3))
        await until(lambda: bool(r.of(TransactionStarted)), 5, "a session started")
        (started,) = r.of(TransactionStarted)
        assert started.id_tag is None
        result = await r.driver.set_current(16.0, lease_s=60.0)
        assert result.ok, result
        await until(lambda: r.status.state is ConnectorState.CHARGING, 5, "the car charging")
        await until(lambda: (r.status.measured_current_a[0] or 0) > 15.5, 5, "16 A reported")
        await until(lambda: len(r.of(EnergySample)) >= 2, 10, "energy samples")
        virtual.unplug()
        await until(lambda: bool(r.of(TransactionStopped)), 5, "the session stopped")
        (stopped,) = r.of(TransactionStopped)
        assert stopped.transaction_id == started.transaction_id
        assert stopped.meter_stop_wh is not None
        billed_wh = stopped.meter_stop_wh - (started.meter_start_wh or 0.0)
        # The register's resolution: 100 Wh on the Vestel's lifetime register, 1 Wh elsewhere.
        resolution_wh = 100.0 if model == "vestel_evc04" else 1.0
        assert billed_wh == pytest.approx(virtual.session_wh, abs=resolution_wh + 16 * 690 * 2.0 / 3600)
        await until(lambda: r.status.state is ConnectorState.AVAILABLE, 5, "available again")


@pytest.mark.parametrize(("model", "make", "wire"), CASES[:2], ids=[c[0] for c in CASES[:2]])
async def test_the_charger_falls_back_to_its_safe_current_when_the_controller_stops(
    model: str, make: Callable[[], VirtualModbusCharger], wire: str
) -> None:
    virtual = make()
    async with rig(model, virtual, wire=wire) as r:
        await until(lambda: bool(r.statuses) and r.status.online, 5, "the charger provisioned")
        if model == "vestel_evc04":
            assert virtual.timeout_s == 20.0 and virtual.safe_a == 6.0  # written and read back
        virtual.plug(PluggedCar(takes_a=32.0))
        assert (await r.driver.set_current(16.0, lease_s=60.0)).ok
        await until(lambda: virtual.limit_a == 16.0, 5, "16 A held")
        # The lease is kept alive while the dispatcher's lease runs: after 1.5 charger timeouts the
        # limit still holds ...
        await r.clock.sleep(1.5 * virtual.timeout_s)
        assert virtual.limit_a == 16.0
        # ... and once the dispatcher is silent longer than its lease, the charger falls back.
        await until(
            lambda: virtual.limit_a == 6.0, (60.0 + 2 * virtual.timeout_s) / SPEED + 2, "the fall-back"
        )


async def test_a_silent_charger_is_reported_offline_and_provisioned_again_when_it_answers() -> None:
    virtual = VestelEvc04(max_a=16.0, safe_a=0.0, timeout_s=20.0)
    async with rig("vestel_evc04", virtual) as r:
        await until(lambda: bool(r.statuses) and r.status.online, 5, "the charger provisioned")
        assert (await r.driver.set_current(10.0, lease_s=60.0)).ok
        for unit in r.units.units.values():
            unit.faults.silent = True
        await until(lambda: not r.status.online, 10, "reported offline")
        assert not (await r.driver.set_current(16.0, lease_s=60.0)).ok
        for unit in r.units.units.values():
            unit.faults.silent = False
        await until(lambda: r.status.online, 10, "online again")
        assert r.driver.counters.provisioned == 2


async def test_a_charger_that_reads_the_card_puts_it_on_the_session() -> None:
    virtual = VestelEvc04(max_a=16.0, safe_a=0.0, timeout_s=20.0)
    async with rig("vestel_evc04", virtual) as r:
        await until(lambda: bool(r.statuses) and r.status.online, 5, "the charger provisioned")
        virtual.rfid = "04A1B2C3"
        virtual.plug(PluggedCar(takes_a=16.0))
        await until(lambda: bool(r.of(TransactionStarted)), 5, "a session started")
        (started,) = r.of(TransactionStarted)
        assert started.id_tag == "04A1B2C3"
        assert r.status.id_tag == "04A1B2C3"


async def test_an_energy_register_that_goes_backwards_is_counted_and_not_used() -> None:
    virtual = AlfenEve(max_a=16.0, safe_a=6.0, timeout_s=60.0)
    virtual.energy_wh = 50_000.0
    async with rig("alfen_eve", virtual) as r:
        await until(lambda: bool(r.statuses) and r.status.online, 5, "the charger provisioned")
        virtual.plug(PluggedCar(takes_a=16.0))
        await until(lambda: bool(r.of(TransactionStarted)), 5, "a session started")
        virtual.energy_wh = 10.0  # a meter swapped or a register reset under a running session
        await until(lambda: r.driver.counters.bad_values > 0, 5, "the bad register counted")
        assert r.status.energy_register_wh is not None and r.status.energy_register_wh >= 50_000.0
        assert all(s.energy_register_wh >= 50_000.0 for s in r.of(EnergySample))


async def test_a_limit_between_whole_amps_goes_to_the_step_below_never_above() -> None:
    virtual = VestelEvc04(max_a=16.0, safe_a=0.0, timeout_s=20.0)  # takes whole amperes
    async with rig("vestel_evc04", virtual) as r:
        await until(lambda: bool(r.statuses) and r.status.online, 5, "the charger provisioned")
        assert (await r.driver.set_current(15.9, lease_s=60.0)).ok
        assert virtual.setpoint_a == 15.0
        assert (await r.driver.set_current(7.0, lease_s=60.0)).ok
        assert virtual.setpoint_a == 7.0
