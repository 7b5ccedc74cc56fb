"""Virtual OCPP 2.0.1 charging stations against an independent CSMS (the `ocpp` library)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import NotSupportedError
from ocpp.v201 import call

from tests.integration.sim_csms import CsmsState
from tests.integration.sim_rig import Rig, one_phase_car, rig

pytestmark = pytest.mark.integration


def events(state: CsmsState, kind: str | None = None) -> list[dict[str, Any]]:
    return [e for e in state.of("TransactionEvent") if kind in (None, e["event_type"])]


def sampled(event: dict[str, Any], measurand: str) -> dict[str | None, float]:
    return {
        sv.get("phase"): float(sv["value"])
        for mv in event.get("meter_value", [])
        for sv in mv["sampled_value"]
        if sv.get("measurand") == measurand
    }


async def set_variable(r: Rig, component: str, variable: str, value: str) -> str:
    reply = await r.point().call(
        call.SetVariables(
            set_variable_data=[
                {"component": {"name": component}, "variable": {"name": variable}, "attributeValue": value}
            ]
        )
    )
    return str(reply.set_variable_result[0]["attribute_status"])


async def test_boot_pending_status_authorize_started_and_meter_values() -> None:
    state = CsmsState(pending_boots=1, boot_interval_s=3)
    async with rig(state, version="2.0.1") as r:
        await state.wait_for(lambda: len(state.of("BootNotification")) == 2)
        assert state.of("BootNotification")[0]["reason"] == "PowerUp"
        await state.wait_for(lambda: bool(state.of("StatusNotification")))
        assert state.of("StatusNotification")[0]["connector_status"] == "Available"
        assert await set_variable(r, "SampledDataCtrlr", "TxUpdatedInterval", "10") == "Accepted"

        r.charger.plug(1, one_phase_car(), "TAG-1")
        await state.wait_for(lambda: bool(events(state, "Started")))
        assert state.of("Authorize") == [{"id_token": {"id_token": "TAG-1", "type": "ISO14443"}}]
        started = events(state, "Started")[0]
        assert started["trigger_reason"] == "Authorized"
        assert started["id_token"]["id_token"] == "TAG-1"
        assert started["seq_no"] == 0
        assert "offline" not in started
        assert any(s["connector_status"] == "Occupied" for s in state.of("StatusNotification"))

        def charging() -> list[dict[str, Any]]:
            return [
                e
                for e in events(state, "Updated")
                if e["trigger_reason"] == "MeterValuePeriodic"
                and sampled(e, "Current.Import").get("L1", 0) > 0
            ]

        await state.wait_for(lambda: bool(charging()), timeout_s=10)
        assert sampled(charging()[-1], "Current.Import") == {"L1": 32.0, "L2": 32.0, "L3": 0.0}
        assert sampled(charging()[-1], "Power.Active.Import")[None] == pytest.approx(32 * 230.0, abs=0.5)
        seqs = [e["seq_no"] for e in events(state)]
        assert seqs == list(range(len(seqs)))
        assert r.charger.counters["call_errors_received"] == 0


async def test_tx_profile_with_duration_lowers_the_current_then_expires_to_the_stack_0_default() -> None:
    state = CsmsState(pending_boots=0)
    async with rig(state, version="2.0.1", profile_delay_s=1.0) as r:
        await r.until(lambda: r.charger.online)
        safe = {
            "id": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": [
                {
                    "id": 1,
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
                }
            ],
        }
        reply = await r.point().call(call.SetChargingProfile(evse_id=0, charging_profile=safe))
        assert reply.status == "Accepted"
        r.charger.plug(1, one_phase_car(), "TAG-2")
        await state.wait_for(lambda: bool(events(state, "Started")))
        tx_id = events(state, "Started")[0]["transaction_info"]["transaction_id"]
        await r.until(lambda: r.charger.connectors[0].current_a == 16.0)

        lease = {
            "id": 2,
            "stackLevel": 1,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Absolute",
            "transactionId": tx_id,
            "chargingSchedule": [
                {
                    "id": 2,
                    "duration": 60,
                    "startSchedule": r.now_utc().isoformat(),
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}],
                }
            ],
        }
        sent_s = r.clock.monotonic()
        reply = await r.point().call(call.SetChargingProfile(evse_id=1, charging_profile=lease))
        assert reply.status == "Accepted"
        await r.until(lambda: r.charger.connectors[0].current_a == 10.0)
        dropped_s = next(t for t, a in r.history if t > sent_s and a == 10.0)
        assert sent_s + 3.0 - 0.3 <= dropped_s <= sent_s + 6.0
        await r.until(lambda: r.charger.connectors[0].current_a == 16.0)
        back_s = next(t for t, a in r.history if t > dropped_s and a == 16.0)
        assert sent_s + 62 - 1.0 <= back_s <= sent_s + 62 + 4.0

        # A TxProfile naming another transaction is refused; clearing an unknown profile is Unknown.
        wrong = {**lease, "id": 3, "transactionId": "not-this-one"}
        assert (
            await r.point().call(call.SetChargingProfile(evse_id=1, charging_profile=wrong))
        ).status == "Rejected"
        assert (await r.point().call(call.ClearChargingProfile(charging_profile_id=99))).status == "Unknown"
        assert (await r.point().call(call.ClearChargingProfile(charging_profile_id=1))).status == "Accepted"
        await r.until(lambda: r.charger.connectors[0].current_a == 32.0)


async def test_offline_events_are_flagged_and_replayed_in_order() -> None:
    state = CsmsState(pending_boots=0)
    async with rig(state, version="2.0.1") as r:
        r.charger.plug(1, one_phase_car(), "TAG-A")
        await state.wait_for(lambda: bool(events(state, "Started")))
        first = events(state, "Started")[0]["transaction_info"]["transaction_id"]
        # Disconnect only once the CSMS's answers are in (a message in flight would be resent).
        await r.until(lambda: r.charger.queued_transaction_messages == 0)
        r.charger.disconnect(40.0)
        await r.until(lambda: not r.charger.online)
        await r.sim_sleep(5)
        r.charger.unplug(1)
        r.charger.plug(1, one_phase_car(), "TAG-B")
        await r.sim_sleep(5)
        n_before = len(state.log)
        await state.wait_for(lambda: len(events(state, "Started")) == 2, timeout_s=15)
        replay = [x.payload for x in state.log[n_before:] if x.action == "TransactionEvent"]
        assert [(e["event_type"], e["transaction_info"]["transaction_id"]) for e in replay[:2]] == [
            ("Ended", first),
            ("Started", replay[1]["transaction_info"]["transaction_id"]),
        ]
        assert all(e.get("offline") is True for e in replay[:2])
        ended = replay[0]
        assert ended["transaction_info"]["stopped_reason"] == "EVDisconnected"
        assert ended["trigger_reason"] == "EVCommunicationLost"
        assert sampled(ended, "Energy.Active.Import.Register")[None] > 0
        # Sequence numbers continue without gaps within each transaction.
        for tx in {e["transaction_info"]["transaction_id"] for e in events(state)}:
            seqs = [e["seq_no"] for e in events(state) if e["transaction_info"]["transaction_id"] == tx]
            assert seqs == list(range(len(seqs)))


async def test_reboot_by_reset_ends_the_transaction_and_boots_again() -> None:
    state = CsmsState(pending_boots=0)
    async with rig(state, version="2.0.1", reboot_s=10.0) as r:
        r.charger.plug(1, one_phase_car(), "TAG-R")
        await state.wait_for(lambda: bool(events(state, "Started")))
        assert (await r.point().call(call.Reset(type="OnIdle"))).status == "Scheduled"
        assert (await r.point().call(call.Reset(type="Immediate"))).status == "Accepted"
        await state.wait_for(lambda: len(state.of("BootNotification")) == 2, timeout_s=15)
        assert state.of("BootNotification")[1]["reason"] == "RemoteReset"
        await state.wait_for(lambda: len(events(state, "Started")) == 2, timeout_s=15)
        ended = events(state, "Ended")[0]
        assert ended["transaction_info"]["stopped_reason"] == "ImmediateReset"
        assert ended["trigger_reason"] == "ResetCommand"


async def test_remote_start_stop_trigger_and_variables() -> None:
    state = CsmsState(pending_boots=0)
    async with rig(state, version="2.0.1") as r:
        await r.until(lambda: r.charger.online)
        r.charger.plug(1, one_phase_car(), None)
        reply = await r.point().call(
            call.RequestStartTransaction(
                id_token={"idToken": "APP", "type": "Central"}, remote_start_id=7, evse_id=1
            )
        )
        assert reply.status == "Accepted"
        await state.wait_for(lambda: bool(events(state, "Started")))
        started = events(state, "Started")[0]
        assert started["trigger_reason"] == "RemoteStart"
        assert started["transaction_info"]["remote_start_id"] == 7
        tx_id = started["transaction_info"]["transaction_id"]
        status = await r.point().call(call.GetTransactionStatus(transaction_id=tx_id))
        assert status.ongoing_indicator is True
        assert (await r.point().call(call.RequestStopTransaction(transaction_id="nope"))).status == "Rejected"
        assert (await r.point().call(call.RequestStopTransaction(transaction_id=tx_id))).status == "Accepted"
        await state.wait_for(lambda: bool(events(state, "Ended")))
        assert events(state, "Ended")[0]["transaction_info"]["stopped_reason"] == "Remote"

        n = len(state.of("StatusNotification"))
        reply = await r.point().call(call.TriggerMessage(requested_message="StatusNotification"))
        assert reply.status == "Accepted"
        await state.wait_for(lambda: len(state.of("StatusNotification")) == n + 1)
        reply = await r.point().call(call.TriggerMessage(requested_message="LogStatusNotification"))
        assert reply.status == "NotImplemented"

        got = await r.point().call(
            call.GetVariables(
                get_variable_data=[
                    {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
                    {"component": {"name": "NoSuchCtrlr"}, "variable": {"name": "X"}},
                    {"component": {"name": "TxCtrlr"}, "variable": {"name": "NoSuchVariable"}},
                    {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "ProfileStackLevel"}},
                ]
            )
        )
        statuses = [(g["attribute_status"], g.get("attribute_value")) for g in got.get_variable_result]
        assert statuses == [
            ("Accepted", "300"),
            ("UnknownComponent", None),
            ("UnknownVariable", None),
            ("Accepted", "8"),
        ]
        assert await set_variable(r, "SmartChargingCtrlr", "RateUnit", "W") == "Rejected"
        assert await set_variable(r, "AlignedDataCtrlr", "Interval", "x") == "Rejected"
        assert await set_variable(r, "AlignedDataCtrlr", "Interval", "60") == "Accepted"
        # Clock-aligned values outside a transaction go out as MeterValues.
        r.charger.unplug(1)
        await state.wait_for(lambda: bool(state.of("MeterValues")), timeout_s=10)
        assert state.of("MeterValues")[0]["meter_value"][0]["sampled_value"][0]["context"] == "Sample.Clock"


@dataclasses.dataclass
class FooBar:
    pass


@dataclasses.dataclass
class GetReport:
    request_id: int = 1


async def test_unknown_and_unsupported_actions_get_the_right_call_error() -> None:
    async with rig(CsmsState(pending_boots=0), version="2.0.1") as r:
        await r.until(lambda: r.charger.online)
        with pytest.raises(OcppNotImplemented):
            await r.point().call(FooBar(), suppress=False, skip_schema_validation=True)
        with pytest.raises(NotSupportedError):
            await r.point().call(GetReport(), suppress=False, skip_schema_validation=True)


async def test_a_boot_triggered_while_pending_is_sent_at_once_with_reason_triggered() -> None:
    state = CsmsState(pending_boots=1, boot_interval_s=300)
    async with rig(state, version="2.0.1") as r:
        await state.wait_for(lambda: len(state.of("BootNotification")) == 1)
        reply = await r.point().call(call.TriggerMessage(requested_message="BootNotification"))
        assert reply.status == "Accepted"
        await r.until(lambda: r.charger.online, timeout_sim_s=30)
        assert [b["reason"] for b in state.of("BootNotification")] == ["PowerUp", "Triggered"]


async def test_started_and_ended_carry_the_measurands_configured_for_them_or_none() -> None:
    state = CsmsState(pending_boots=0)
    async with rig(state, version="2.0.1") as r:
        await r.until(lambda: r.charger.online)
        assert await set_variable(r, "SampledDataCtrlr", "TxStartedMeasurands", "") == "Accepted"
        assert await set_variable(r, "SampledDataCtrlr", "TxEndedMeasurands", "") == "Accepted"
        r.charger.plug(1, one_phase_car(), "TAG-1")
        await state.wait_for(lambda: bool(events(state, "Started")))
        r.charger.unplug(1)
        await state.wait_for(lambda: bool(events(state, "Ended")))
        assert "meter_value" not in events(state, "Started")[0]
        assert "meter_value" not in events(state, "Ended")[0]
        assert r.charger.counters["call_errors_received"] == 0
