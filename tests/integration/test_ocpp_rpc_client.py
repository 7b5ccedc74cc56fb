"""An independent OCPP implementation as the charger: ocpp-rpc (npm) in strict mode, both versions.

Strict mode validates every message in both directions against ocpp-rpc's own schemas, so our
requests (SetChargingProfile, ChangeConfiguration/SetVariables, TriggerMessage) and our answers are
checked by code that shares nothing with the `ocpp` Python library.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from drivers.contracts import EnergySample, TransactionStarted, TransactionStopped
from drivers.ocpp import AuthEntry, TagKind
from tests.integration.ocpp_support import PASSWORD, charge_point, running_csms
from tests.support import REPO_ROOT, require, require_program

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

CLIENT_DIR = REPO_ROOT / "tests" / "ocpp_rpc_client"


async def read_event(stream: asyncio.StreamReader) -> dict[str, Any]:
    async with asyncio.timeout(20):
        line = await stream.readline()
    assert line, "ocpp-rpc client ended without output"
    event: dict[str, Any] = json.loads(line)
    assert event["event"] != "error", event.get("message")
    return event


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_ocpp_rpc_strict_client_full_flow(protocol: str) -> None:
    node = require_program("node")
    require((CLIENT_DIR / "node_modules" / "ocpp-rpc").is_dir(), "npm ci in tests/ocpp_rpc_client")
    async with running_csms([charge_point("RPC-1", safe_current_a=6, phases=3)]) as h:
        h.auth.apply_full(1, {"RPC-TAG-1": AuthEntry(TagKind.RESIDENT)})
        process = await asyncio.create_subprocess_exec(
            node, str(CLIENT_DIR / "client.js"), h.url, "RPC-1", PASSWORD, protocol,
            stdout=asyncio.subprocess.PIPE, cwd=CLIENT_DIR,
        )  # fmt: skip
        assert process.stdout is not None
        try:
            ready = await read_event(process.stdout)
            assert ready["event"] == "ready"
            result = await h.csms.charger("RPC-1-1").set_current(14.26, lease_s=60, phases=3)
            assert result.ok, result
            done = await read_event(process.stdout)
            assert done["event"] == "done"
            async with asyncio.timeout(10):
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert done["firstBoot"] == "Pending"
    assert done["accepted"] is True
    assert done["authorize"] == done["startAuth"] == done["stopAuth"] == "Accepted"
    assert "BootNotification" in done["triggers"]
    tx_id = str(ready["transactionId"])
    if protocol == "ocpp1.6":
        safe = done["profiles"][0]["csChargingProfiles"]
        lease = done["txProfile"]["csChargingProfiles"]
        schedule = lease["chargingSchedule"]
        assert str(lease["transactionId"]) == tx_id
        assert done["configuration"]["ClockAlignedDataInterval"] == "900"
    else:
        safe = next(
            p
            for p in done["profiles"]
            if p["chargingProfile"]["chargingProfilePurpose"] == "TxDefaultProfile"
        )["chargingProfile"]
        lease = done["txProfile"]["chargingProfile"]
        schedule = lease["chargingSchedule"][0]
        assert lease["transactionId"] == tx_id
        assert done["configuration"]["AlignedDataCtrlr.Interval"] == "900"
    assert safe["stackLevel"] == 0
    assert lease["stackLevel"] == 1
    assert schedule["duration"] == 60
    assert schedule["chargingSchedulePeriod"][0]["limit"] == 14.2
    assert [e.transaction_id for e in h.of_type(TransactionStarted)] == [tx_id]
    stops = h.of_type(TransactionStopped)
    assert [(s.transaction_id, s.meter_stop_wh) for s in stops] == [(tx_id, 2100.0)]
    assert 1100.0 in [s.energy_register_wh for s in h.of_type(EnergySample)]
    assert h.csms.counters["schema_violations"] == 0
