"""OCPP 1.6 sampled values as the virtual charger writes them: decimal strings that keep every digit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from simulator.chargers import ChargerSpec, make_charger
from simulator.chargers.base import LinkState
from simulator.chargers.ocpp16 import decimal_text
from simulator.clock import SimClock

EPOCH = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)


@given(st.integers(min_value=0, max_value=10**12))
def test_a_register_in_tenths_of_a_wh_is_sent_exactly(tenths: int) -> None:
    value = round(tenths / 10, 1)
    text = decimal_text(value)
    assert "e" not in text.lower()
    assert float(text) == value


def test_decimal_text_has_no_trailing_zeros() -> None:
    assert [decimal_text(v) for v in (0.0, -0.0, 16.0, 7.25, 1234567.8, 0.01)] == [
        "0",
        "0",
        "16",
        "7.25",
        "1234567.8",
        "0.01",
    ]


def test_a_large_register_reaches_the_meter_values_payload_unrounded() -> None:
    spec = ChargerSpec(identity="X", fuse="f", energy_register_start_wh=1_234_567.8)
    charger = make_charger(
        spec, grid="TN", nominal_voltage_v=230.0, clock=SimClock(1.0, EPOCH), csms_url="ws://127.0.0.1:1/ocpp"
    )
    charger.step(1.0, EPOCH + timedelta(seconds=1))
    charger.link = LinkState.BOOTED  # as after an accepted boot; nothing is sent in this test
    charger.handle_call("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1})
    charger.after_reply("TriggerMessage")
    (item,) = [i for i in charger._outbox if i.action == "MeterValues"]
    sampled = item.build()["meterValue"][0]["sampledValue"]
    registers = [v["value"] for v in sampled if v["measurand"] == "Energy.Active.Import.Register"]
    assert registers == ["1234567.8"]
