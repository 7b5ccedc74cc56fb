"""The daemon with a Modbus charger (an Alfen on Modbus TCP, the simulator's virtual one): found by
its template, provisioned, driven, and its session billed from the energy register - also when the
daemon is stopped while the car charges and the car leaves before it is back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from controller.localapi.client import call
from simulator.modbus.chargers import AlfenEve, PluggedCar
from simulator.modbus.server import TcpEndpoint, Units
from tests.support.daemon_rig import daemon_running
from tests.support.waiting import until

pytestmark = [pytest.mark.integration]

SITE = """
[site]
id = "modbus-e2e"

[grid]
type = "IT"

[[fuses]]
id = "main"
limit_a = 63

[[fuses]]
id = "c1"
parent = "main"
limit_a = 32

[[chargers]]
id = "MB-1"
protocol = "modbus"
fuse = "c1"
lines = ["L1", "L2", "L3"]
max_a = 16
safe_current_a = 6
space = "P-101"

[chargers.modbus]
endpoint = "tcp://127.0.0.1:{port}"
register_map = "alfen_eve"

[modbus]
poll_interval_s = 0.2

[storage]
path = "{folder}/ledger.sqlite"

[control]
socket_path = "{folder}/control.sock"
"""


async def test_a_modbus_session_is_billed_across_a_restart_of_the_daemon(tmp_path: Path) -> None:
    virtual = AlfenEve(max_a=16.0, safe_a=6.0, timeout_s=60.0, response_s=0.2)
    t0 = time.monotonic()

    async def physics() -> None:
        while True:
            virtual.step(time.monotonic() - t0)
            await asyncio.sleep(0.02)

    stepper = asyncio.create_task(physics(), name="physics")
    try:
        async with TcpEndpoint(Units(virtual.units())) as endpoint:
            site_file = tmp_path / "site.toml"
            site_file.write_text(SITE.format(port=endpoint.port, folder=tmp_path))
            async with daemon_running(site_file) as daemon:
                assert daemon.modbus is not None
                driver = daemon.modbus.chargers["MB-1"]
                await until(lambda: driver.provisioned, 10, "the charger provisioned")
                assert driver.identity["serial"] == "SIM0001"
                virtual.plug(PluggedCar(takes_a=32.0))
                # No meter: the site runs its chargers at their safe current.
                await until(lambda: virtual.drawing_a == 6.0, 10, "the car charging at 6 A")
                ledger = daemon.ledger
                assert ledger is not None

                async def session_open() -> bool:
                    assert ledger is not None
                    return len(await ledger.open_sessions()) == 1

                await until(session_open, 10, "a session open in the ledger")
                status = await call(tmp_path / "control.sock", "status")
                modbus = status["counters"]["modbus"]
                assert modbus["chargers"]["MB-1"]["provisioned"] == 1
                assert modbus["buses"][f"tcp://127.0.0.1:{endpoint.port}"]["reads"] > 0
                await asyncio.sleep(1.0)
            # The daemon is down; the car goes on charging at the fall-back, then leaves.
            assert virtual.limit_a == 6.0
            await asyncio.sleep(1.0)
            virtual.unplug()
            await asyncio.sleep(0.1)
            delivered_wh = virtual.session_wh
            async with daemon_running(site_file) as daemon:
                ledger = daemon.ledger
                assert ledger is not None

                async def closed() -> bool:
                    assert ledger is not None
                    return not await ledger.open_sessions()

                await until(closed, 10, "the resumed session closed")
                (session,) = await ledger.list_sessions()
    finally:
        stepper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stepper
    assert session.charger_id == "MB-1" and session.id_tag is None
    assert session.stop_reason == "EVDisconnected"
    assert session.energy_wh is not None
    # Whole Wh in the ledger; the car drew about 4.1 kW for some 3 s, over half of it unobserved.
    assert abs(session.energy_wh - delivered_wh) <= 2.0, (session.energy_wh, delivered_wh)
    assert delivered_wh > 2.0
