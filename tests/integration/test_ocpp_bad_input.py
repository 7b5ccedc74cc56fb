"""Hostile and broken input on a live connection: the right CallError or a clean close, a counter, and
the other chargers unaffected."""

from __future__ import annotations

import json
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from drivers.contracts import CommandOutcome
from tests.integration.ocpp_support import (
    charge_point,
    connected,
    eventually,
    fast_config,
    now_iso,
    raw_connect,
    running_csms,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


async def exchange(ws: ClientConnection, frame: str) -> list[Any]:
    await ws.send(frame)
    reply = json.loads(await ws.recv())
    assert isinstance(reply, list)
    return reply


CASES_16: list[tuple[str, str, str, str]] = [
    # frame, expected message id, expected error code, counter
    ("{not json", "-1", "FormationViolation", "bad_json"),
    ('[2,"n1","Heartbeat",{"x":NaN}]', "-1", "FormationViolation", "bad_json"),
    ('{"a":1}', "-1", "ProtocolError", "bad_frame"),
    ('[7,"m1","Heartbeat",{}]', "m1", "NotSupported", "bad_message_type"),
    ('["2","m2","Heartbeat",{}]', "m2", "NotSupported", "bad_message_type"),
    ('[2,"m3","Heartbeat"]', "m3", "ProtocolError", "bad_frame"),
    ('[2,"m4","FlyToTheMoon",{}]', "m4", "NotImplemented", "unknown_action"),
    ('[2,"m5","CancelReservation",{"reservationId":1}]', "m5", "NotSupported", "unknown_action"),
    ('[2,"m6","StatusNotification",{"connectorId":1,"status":"Dancing","errorCode":"NoError"}]', "m6",
     "PropertyConstraintViolation", "schema_violations"),
    ('[2,"m7","StatusNotification",{"connectorId":1,"status":"Available"}]', "m7",
     "OccurenceConstraintViolation", "schema_violations"),
    ('[2,"m8","StatusNotification",{"connectorId":"1","status":"Available","errorCode":"NoError"}]', "m8",
     "TypeConstraintViolation", "schema_violations"),
    ('[2,"m9","StatusNotification",{"connectorId":-1,"status":"Available","errorCode":"NoError"}]', "m9",
     "PropertyConstraintViolation", "bad_values"),
    ('[2,"m10","MeterValues",{"connectorId":1,"meterValue":[{"timestamp":"2026-01-01T00:00:00Z",'
     '"sampledValue":[{"value":"NaN"}]}]}]', "m10", "PropertyConstraintViolation", "bad_values"),
    ('[2,"m11","StopTransaction",{"transactionId":99,"meterStop":-5,"timestamp":"2026-01-01T00:00:00Z"}]',
     "m11", "PropertyConstraintViolation", "bad_values"),
]  # fmt: skip


async def test_v16_bad_frames_get_the_right_call_error_and_a_counter() -> None:
    async with (
        running_csms([charge_point("CP1"), charge_point("CP2")]) as h,
        connected(h.url, "CP2") as neighbour,
    ):
        await neighbour.boot_until_accepted()
        async with raw_connect(h.url, "CP1") as ws:
            for frame, message_id, code, counter in CASES_16:
                before = h.csms.counters[counter]
                reply = await exchange(ws, frame)
                assert reply[:3] == [4, message_id, code], frame
                assert h.csms.counters[counter] == before + 1, frame
            # The connection is still usable, and so is the neighbour's.
            reply = await exchange(ws, '[2,"ok","Heartbeat",{}]')
            assert reply[0] == 3
        assert (await h.csms.charger("CP2-1").set_current(8, lease_s=10)).ok


async def test_meter_stop_below_meter_start_is_refused_and_the_session_stays_open() -> None:
    async with (
        running_csms([charge_point("CP1")]) as h,
        raw_connect(h.url, "CP1") as ws,
    ):
        start = await exchange(
            ws,
            json.dumps(
                [
                    2,
                    "s",
                    "StartTransaction",
                    {"connectorId": 1, "idTag": "T", "meterStart": 5000, "timestamp": now_iso()},
                ]
            ),
        )
        transaction_id = start[2]["transactionId"]
        stop = {"transactionId": transaction_id, "meterStop": 4000, "timestamp": now_iso()}
        reply = await exchange(ws, json.dumps([2, "t", "StopTransaction", stop]))
        assert reply[:3] == [4, "t", "PropertyConstraintViolation"]
        assert h.csms.charger("CP1-1").status().transaction_id == str(transaction_id)
        stop["meterStop"] = 6000
        assert (await exchange(ws, json.dumps([2, "u", "StopTransaction", stop])))[0] == 3
        assert h.csms.charger("CP1-1").status().transaction_id is None


async def test_v201_bad_frames() -> None:
    async with (
        running_csms([charge_point("CS2")]) as h,
        raw_connect(h.url, "CS2", "2.0.1") as ws,
    ):
        assert (await exchange(ws, "[[["))[:3] == [4, "-1", "FormatViolation"]
        assert (await exchange(ws, '[5,"a",{}]'))[:3] == [4, "a", "MessageTypeNotSupported"]
        assert (await exchange(ws, '[2,"b","Heartbeat","x"]'))[:3] == [4, "b", "RpcFrameworkError"]
        assert (await exchange(ws, '[2,"c","Authorize",{"idToken":{"idToken":"A"},"extra":1}]'))[:3] == [
            4,
            "c",
            "FormatViolation",
        ]
        event = {
            "eventType": "Updated",
            "timestamp": now_iso(),
            "triggerReason": "MeterValuePeriodic",
            "seqNo": 1,
            "transactionInfo": {"transactionId": "t"},
            "evse": {"id": -3},
        }
        assert (await exchange(ws, json.dumps([2, "d", "TransactionEvent", event])))[:3] == [
            4,
            "d",
            "PropertyConstraintViolation",
        ]
        # A response to a call we never made is counted and otherwise ignored.
        await ws.send('[3,"never-sent",{}]')
        assert (await exchange(ws, '[2,"e","Heartbeat",{}]'))[0] == 3
        assert h.csms.counters["unexpected_responses"] == 1


async def test_oversize_frame_closes_that_connection_only() -> None:
    async with (
        running_csms([charge_point("CP1"), charge_point("CP2")], fast_config(max_message_bytes=4096)) as h,
        connected(h.url, "CP2") as neighbour,
    ):
        await neighbour.boot_until_accepted()
        async with raw_connect(h.url, "CP1") as ws:
            await ws.send('[2,"big","DataTransfer",{"vendorId":"x","data":"' + "A" * 10000 + '"}]')
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1009
        await eventually(lambda: h.csms.counters["oversize"] == 1)
        assert (await h.csms.charger("CP2-1").set_current(8, lease_s=10)).ok


async def test_a_charger_that_does_not_answer_times_out_and_its_late_answer_is_counted() -> None:
    async with running_csms([charge_point("CP1")]) as h, raw_connect(h.url, "CP1") as ws:
        await eventually(lambda: h.csms.charger("CP1-1").status().online)
        result = await h.csms.charger("CP1-1").trigger("MeterValues", timeout_s=0.2)
        assert result.outcome is CommandOutcome.TIMEOUT
        assert h.csms.counters["call_timeouts"] == 1
        late = json.loads(await ws.recv())
        assert late[2] == "TriggerMessage"
        await ws.send(json.dumps([3, late[1], {"status": "Accepted"}]))
        assert (await exchange(ws, '[2,"hb","Heartbeat",{}]'))[0] == 3
        assert h.csms.counters["unexpected_responses"] == 1
