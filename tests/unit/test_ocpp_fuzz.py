"""Hypothesis fuzzing of the whole inbound message path: frame parsing, schema validation, the
1.6 and 2.0.1 handlers and their replies, with a recording transport instead of a socket.

Every message gets exactly one answer (CALLRESULT or CALLERROR) or, for a response, none; the answer
names the caller's message id when it was readable; and no input makes a handler fail internally.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.clock import SystemClock
from drivers.contracts import ChargerEvent
from drivers.ocpp import rpc
from drivers.ocpp.authorization import AuthEntry, LocalAuthList, TagKind
from drivers.ocpp.config import ChargePointConfig, CsmsConfig
from drivers.ocpp.counters import Counters
from drivers.ocpp.handlers16 import V16Handlers
from drivers.ocpp.handlers201 import V201Handlers
from drivers.ocpp.session import RpcSession
from drivers.ocpp.station import Services, Station
from drivers.ocpp.transactions import InMemoryTransactionIds

TS = "2026-11-22T17:00:00Z"
MV16 = [{"timestamp": TS, "sampledValue": [{"value": "1200", "measurand": "Energy.Active.Import.Register"}]}]
MV201 = [{"timestamp": TS, "sampledValue": [{"value": 1200.0, "measurand": "Current.Import", "phase": "L1"}]}]
GOOD_16: dict[str, dict[str, Any]] = {
    "BootNotification": {"chargePointVendor": "V", "chargePointModel": "M"},
    "Heartbeat": {},
    "StatusNotification": {"connectorId": 1, "errorCode": "NoError", "status": "Charging"},
    "Authorize": {"idTag": "AA11"},
    "StartTransaction": {"connectorId": 1, "idTag": "AA11", "meterStart": 100, "timestamp": TS},
    "StopTransaction": {"transactionId": 1, "meterStop": 900, "timestamp": TS, "transactionData": MV16},
    "MeterValues": {"connectorId": 1, "transactionId": 1, "meterValue": MV16},
    "DataTransfer": {"vendorId": "x"},
}
GOOD_201: dict[str, dict[str, Any]] = {
    "BootNotification": {"chargingStation": {"model": "M", "vendorName": "V"}, "reason": "PowerUp"},
    "Heartbeat": {},
    "StatusNotification": {"timestamp": TS, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1},
    "Authorize": {"idToken": {"idToken": "AA11", "type": "ISO14443"}},
    "TransactionEvent": {
        "eventType": "Started",
        "timestamp": TS,
        "triggerReason": "Authorized",
        "seqNo": 0,
        "transactionInfo": {"transactionId": "t1", "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1},
        "idToken": {"idToken": "AA11", "type": "ISO14443"},
        "meterValue": MV201,
    },
    "MeterValues": {"evseId": 1, "meterValue": MV201},
    "NotifyReport": {"requestId": 1, "generatedAt": TS, "seqNo": 0},
}

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "NaN", "Infinity", "-1", "1e308", TS, "Ended", "Updated", "L1", "kWh"])
    | st.text(max_size=12)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, good: dict[str, dict[str, Any]]) -> str:
    """A CALL close to a valid one: one field replaced, removed, or added."""
    action = draw(st.sampled_from(sorted(good)))
    payload = copy.deepcopy(good[action])
    paths = [p for p in _paths(payload) if p]
    change_a_field: bool = draw(st.booleans())
    if paths and change_a_field:
        path = draw(st.sampled_from(paths))
        parent: Any = payload
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            parent[path[-1]] = draw(json_value)
        elif isinstance(parent, dict):
            del parent[path[-1]]
    elif draw(st.booleans()):
        payload[draw(st.text(max_size=8))] = draw(json_value)
    unique_id = draw(st.text(min_size=1, max_size=36) | st.just("x"))
    return json.dumps([2, unique_id, action, payload])


def frames(good: dict[str, dict[str, Any]]) -> st.SearchStrategy[str | bytes]:
    return st.one_of(
        mutated(good),
        st.builds(lambda a, p: json.dumps([2, "id", a, p]), st.sampled_from(sorted(good)), json_value),
        st.builds(lambda v: json.dumps(v), json_value),
        st.text(max_size=60),
        st.binary(max_size=20),
        st.builds(lambda i, p: json.dumps([3, i, p]), st.text(max_size=5), json_value),
    )


class Recorder:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, message: str) -> None:
        self.sent.append(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass


def _readable_id(raw: str | bytes) -> str | None:
    try:
        msg = json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        return None
    if isinstance(msg, list) and len(msg) > 1 and isinstance(msg[1], str) and 0 < len(msg[1]) <= 36:
        return msg[1]
    return None


async def _run(version: rpc.Version, messages: list[str | bytes]) -> list[ChargerEvent]:
    events: list[ChargerEvent] = []
    auth = LocalAuthList()
    auth.apply_full(1, {"AA11": AuthEntry(TagKind.RESIDENT)})
    counters = Counters()
    services = Services(CsmsConfig(), SystemClock(), events.append, auth, InMemoryTransactionIds(), counters)
    station = Station(ChargePointConfig("FUZZ", {1: "fuzz-1", 2: "fuzz-2"}, password_hash="x"), services)
    handlers = (V16Handlers(station) if version == "1.6" else V201Handlers(station)).routes()
    transport = Recorder()
    session = RpcSession("FUZZ", version, transport, handlers, counters, SystemClock())
    station.session = session
    for raw in messages:
        before = len(transport.sent)
        await session.on_message(raw)
        replies = transport.sent[before:]
        try:
            decoded = json.loads(raw)
        except (ValueError, TypeError, RecursionError):
            decoded = None
        is_response = (
            isinstance(decoded, list) and bool(decoded) and type(decoded[0]) is int and decoded[0] in (3, 4)
        )
        assert len(replies) == (0 if is_response else 1), (raw, replies)
        if replies:
            reply = json.loads(replies[0])
            assert reply[0] in (3, 4)
            expected_id = _readable_id(raw)
            if expected_id is not None and reply[0] == 3:
                assert reply[1] == expected_id
            if reply[0] == 4:
                assert reply[1] in (expected_id, "-1")
        assert counters[rpc.C_HANDLER_ERRORS] == 0, (raw, replies)
    for event in events:
        for value in (getattr(event, "energy_register_wh", None), getattr(event, "meter_start_wh", None)):
            assert value is None or value == value  # never NaN
    return events


@settings(max_examples=300)
@given(st.lists(frames(GOOD_16), min_size=1, max_size=8))
def test_fuzz_v16_message_path(messages: list[str | bytes]) -> None:
    asyncio.run(_run("1.6", messages))


@settings(max_examples=300)
@given(st.lists(frames(GOOD_201), min_size=1, max_size=8))
def test_fuzz_v201_message_path(messages: list[str | bytes]) -> None:
    asyncio.run(_run("2.0.1", messages))


def test_valid_sequences_produce_events() -> None:
    """Control for the fuzzers: the unmutated messages go through and produce the expected events."""
    messages: list[str | bytes] = [json.dumps([2, f"m{i}", a, p]) for i, (a, p) in enumerate(GOOD_16.items())]
    kinds = [type(e).__name__ for e in asyncio.run(_run("1.6", messages))]
    assert {"TransactionStarted", "TransactionStopped", "EnergySample", "ChargerStatus"} <= set(kinds)
    messages = [json.dumps([2, f"m{i}", a, p]) for i, (a, p) in enumerate(GOOD_201.items())]
    kinds = [type(e).__name__ for e in asyncio.run(_run("2.0.1", messages))]
    assert {"TransactionStarted", "ChargerStatus"} <= set(kinds)
