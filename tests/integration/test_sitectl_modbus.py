"""`sitectl modbus scan` and `read` against the simulator's devices on a real pty (RTU) and TCP."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from simulator.modbus.chargers import AbbTerraAc, AlfenEve, PluggedCar, VestelEvc04
from simulator.modbus.meters import EastronSdm630
from simulator.modbus.server import RtuPty, TcpEndpoint, Units
from tests.support import sitectl_argv, subprocess_env


async def sitectl(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *sitectl_argv(*args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=subprocess_env(),
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_scan_of_an_rs485_line_names_each_device_s_template() -> None:
    abb = AbbTerraAc(unit_id=3, max_a=16.0, safe_a=6.0)
    meter = EastronSdm630(unit_id=1)
    meter.currents_a = (12.5, 3.0, 7.25)
    meter.publish()
    async with RtuPty(Units({**abb.units(), **meter.units()})) as pty:
        code, out, err = await sitectl("modbus", "scan", pty.device, "--units", "1-5", "--json")
        assert code == 0, err
        report: dict[str, Any] = json.loads(out)
        found = {row["unit"]: [m["template"] for m in row["matches"]] for row in report["found"]}
        assert found == {1: ["eastron_sdm630"], 3: ["abb_terra_ac"]}
        code, out, err = await sitectl(
            "modbus",
            "read",
            f"rtu://{pty.device}?baudrate=9600",
            "--unit",
            "1",
            "--template",
            "eastron_sdm630",
        )
        assert code == 0, err
        assert "current_l1         12.5 A" in out
        assert "current_l3         7.25 A" in out


async def test_a_scan_over_tcp_and_a_read_of_a_charging_car() -> None:
    alfen = AlfenEve(max_a=16.0, safe_a=6.0)
    vestel = VestelEvc04(max_a=16.0, safe_a=0.0, timeout_s=20.0)
    alfen.plug(PluggedCar(takes_a=32.0))
    alfen.step(0.0)
    async with TcpEndpoint(Units({**alfen.units(), **vestel.units()})) as endpoint:
        code, out, err = await sitectl("modbus", "scan", f"127.0.0.1:{endpoint.port}")
        assert code == 0, err
        assert (
            "unit 1: alfen_eve (Alfen Eve Pro-line (NG9xx)); "
            "firmware 6.4.0-4210, model ALF_1000, serial SIM0001" in out
        )
        assert "unit 255: vestel_evc04 (Vestel EVC04)" in out
        code, out, err = await sitectl("modbus", "read", endpoint.url, "--template", "alfen_eve", "--json")
        assert code == 0, err
        values = json.loads(out)["values"]
        assert values["vehicle_state"] == "B"
        assert values["serial"] == "SIM0001"
