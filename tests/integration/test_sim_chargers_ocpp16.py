"""Virtual OCPP 1.6J chargers against an independent CSMS (the `ocpp` library) over real websockets."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import datetime
from typing import Any

import pytest
from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.exceptions import NotSupportedError
from ocpp.v16 import call

from tests.integration.sim_csms import CsmsState
from tests.integration.sim_rig import one_phase_car, rig

pytestmark = pytest.mark.integration


async def test_boot_pending_then_accepted_status_authorize_start_and_meter_values() -> None:
    state = CsmsState(pending_boots=2, boot_interval_s=3)
    async with rig(state, max_current_a=32) as r:
        await state.wait_for(lambda: len(state.of("BootNotification")) == 3)
        # Statuses arrive only after acceptance: connector 0 and connector 1.
        await state.wait_for(lambda: len(state.of("StatusNotification")) >= 2)
        assert {s["connector_id"] for s in state.of("StatusNotification")} == {0, 1}
        assert state.log.index(next(x for x in state.log if x.action == "StatusNotification")) > 2

        # The CSMS asks for a faster sample interval; the charger applies it.
        reply = await r.point().call(call.ChangeConfiguration(key="MeterValueSampleInterval", value="10"))
        assert reply.status == "Accepted"

        r.charger.plug(1, one_phase_car(), "TAG-1")
        await state.wait_for(lambda: bool(state.of("StartTransaction")))
        assert state.of("Authorize") == [{"id_tag": "TAG-1"}]
        start = state.of("StartTransaction")[0]
        assert start["connector_id"] == 1
        assert start["id_tag"] == "TAG-1"
        await state.wait_for(lambda: any(s["status"] == "Charging" for s in state.of("StatusNotification")))

        def currents() -> list[dict[str, Any]]:
            out = []
            for mv in state.of("MeterValues"):
                for sv in mv["meter_value"][-1]["sampled_value"]:
                    if sv.get("measurand") == "Current.Import":
                        out.append(sv)
            return out

        await state.wait_for(lambda: any(float(s["value"]) > 0 for s in currents()), timeout_s=10)
        mv = state.of("MeterValues")[-1]
        assert (mv["transaction_id"] == start and False) or mv["transaction_id"] == 100
        by_phase = {
            sv["phase"]: float(sv["value"])
            for sv in mv["meter_value"][0]["sampled_value"]
            if sv.get("measurand") == "Current.Import"
        }
        # A one-phase car on an IT charger: the branch current flows through terminals 1 and 2.
        assert by_phase == {"L1": 32.0, "L2": 32.0, "L3": 0.0}
        energy = [
            float(sv["value"])
            for m in state.of("MeterValues")
            for sv in m["meter_value"][0]["sampled_value"]
            if sv.get("measurand") == "Energy.Active.Import.Register"
        ]
        assert energy == sorted(energy)
        assert r.charger.counters["call_errors_received"] == 0


async def test_tx_profile_with_duration_lowers_the_current_then_expires_to_the_stack_0_default() -> None:
    async with rig(CsmsState(pending_boots=0), profile_delay_s=1.0) as r:
        await r.until(lambda: r.charger.online)
        # The safe profile at stack level 0, as a controller installs at boot.
        safe = {
            "chargingProfileId": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}],
            },
        }
        reply = await r.point().call(call.SetChargingProfile(connector_id=0, cs_charging_profiles=safe))
        assert reply.status == "Accepted"
        r.charger.plug(1, one_phase_car(), "TAG-2")
        await r.until(lambda: r.charger.connectors[0].current_a == 16.0)

        lease = {
            "chargingProfileId": 2,
            "stackLevel": 1,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "duration": 60,
                "startSchedule": r.now_utc().isoformat(),
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 8 * 230.0, "numberPhases": 1}],
            },
        }
        sent_s = r.clock.monotonic()
        reply = await r.point().call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=lease))
        assert reply.status == "Accepted"
        await r.until(lambda: r.charger.connectors[0].current_a == 8.0)
        dropped_s = next(t for t, a in r.history if t > sent_s and a == 8.0)
        # After the charger's profile delay (1 s) and the car's response delay (2 s), not before.
        assert dropped_s >= sent_s + 3.0 - 0.3
        assert dropped_s <= sent_s + 3.0 + 3.0
        await r.until(lambda: r.charger.connectors[0].current_a == 16.0)
        back_s = next(t for t, a in r.history if t > dropped_s and a == 16.0)
        # The lease ends 60 s after its start; the car follows 2 s later.
        assert sent_s + 60 + 2 - 1.0 <= back_s <= sent_s + 60 + 2 + 4.0

        # A TxProfile for a connector without a transaction is refused.
        r.charger.unplug(1)
        reply = await r.point().call(call.SetChargingProfile(connector_id=1, cs_charging_profiles=lease))
        assert reply.status == "Rejected"


async def test_offline_transaction_messages_are_replayed_in_order_after_reconnect() -> None:
    state = CsmsState(pending_boots=0)
    async with rig(state) as r:
        r.charger.plug(1, one_phase_car(), "TAG-A")
        await state.wait_for(lambda: bool(state.of("StartTransaction")))
        first_tx = state.of("StartTransaction")[0]["assigned"]
        # Disconnect only once the CSMS's answers are in (a message in flight would be resent).
        await r.until(lambda: r.charger.queued_transaction_messages == 0)
        r.charger.disconnect(40.0)
        await r.until(lambda: not r.charger.online)
        await r.sim_sleep(5)
        r.charger.unplug(1)
        r.charger.plug(1, one_phase_car(), "TAG-B")  # started offline: local authorization
        await r.sim_sleep(5)
        assert r.charger.queued_transaction_messages >= 2
        n_before = len(state.log)
        await state.wait_for(lambda: len(state.of("StartTransaction")) == 2, timeout_s=15)
        await state.wait_for(lambda: bool(state.of("StopTransaction")))
        replay = [
            x.action for x in state.log[n_before:] if x.action in ("StopTransaction", "StartTransaction")
        ]
        assert replay == ["StopTransaction", "StartTransaction"]
        stop = state.of("StopTransaction")[0]
        assert stop["transaction_id"] == first_tx
        assert stop["reason"] == "EVDisconnected"
        second = state.of("StartTransaction")[1]
        assert second["id_tag"] == "TAG-B"
        # Offline start: no Authorize went out for TAG-B.
        assert {"id_tag": "TAG-B"} not in state.of("Authorize")
        # Meter values of the offline transaction carry the id the CSMS assigned on replay.
        await state.wait_for(
            lambda: any(m.get("transaction_id") == second["assigned"] for m in state.of("MeterValues")),
            timeout_s=10,
        )
        assert r.charger.counters["replayed"] >= 2


async def test_reboot_ends_the_transaction_and_a_new_one_starts_after_boot() -> None:
    state = CsmsState(pending_boots=0)
    async with rig(state, reboot_s=10.0) as r:
        r.charger.plug(1, one_phase_car(), "TAG-R")
        await state.wait_for(lambda: bool(state.of("StartTransaction")))
        await r.until(lambda: r.charger.connectors[0].current_a > 0)
        r.charger.power_cycle()
        await r.until(lambda: r.charger.connectors[0].current_a == 0.0, timeout_sim_s=10)
        await state.wait_for(lambda: len(state.of("BootNotification")) == 2, timeout_s=15)
        await state.wait_for(lambda: len(state.of("StartTransaction")) == 2, timeout_s=15)
        stop = state.of("StopTransaction")[0]
        assert stop["reason"] == "PowerLoss"
        assert stop["transaction_id"] == state.of("StartTransaction")[0]["assigned"]
        await r.until(lambda: r.charger.connectors[0].current_a > 0)


async def test_remote_start_stop_trigger_reset_and_configuration() -> None:
    state = CsmsState(pending_boots=0)
    async with rig(state) as r:
        await r.until(lambda: r.charger.online)
        r.charger.plug(1, one_phase_car(), None)  # no RFID: waits for a remote start
        await state.wait_for(lambda: any(s["status"] == "Preparing" for s in state.of("StatusNotification")))
        reply = await r.point().call(call.RemoteStartTransaction(id_tag="APP-1", connector_id=1))
        assert reply.status == "Accepted"
        await state.wait_for(lambda: bool(state.of("StartTransaction")))
        tx_id = state.of("StartTransaction")[0]["assigned"]
        assert (
            await r.point().call(call.RemoteStopTransaction(transaction_id=tx_id + 50))
        ).status == "Rejected"
        assert (await r.point().call(call.RemoteStopTransaction(transaction_id=tx_id))).status == "Accepted"
        await state.wait_for(lambda: bool(state.of("StopTransaction")))
        assert state.of("StopTransaction")[0]["reason"] == "Remote"
        await state.wait_for(lambda: any(s["status"] == "Finishing" for s in state.of("StatusNotification")))

        n = len(state.of("Heartbeat"))
        assert (await r.point().call(call.TriggerMessage(requested_message="Heartbeat"))).status == "Accepted"
        await state.wait_for(lambda: len(state.of("Heartbeat")) == n + 1)
        assert (
            await r.point().call(call.TriggerMessage(requested_message="DiagnosticsStatusNotification"))
        ).status == "NotImplemented"

        conf = await r.point().call(
            call.GetConfiguration(key=["HeartbeatInterval", "NoSuchKey", "NumberOfConnectors"])
        )
        assert {k["key"]: k["value"] for k in conf.configuration_key} == {
            "HeartbeatInterval": "300",
            "NumberOfConnectors": "1",
        }
        assert conf.unknown_key == ["NoSuchKey"]
        assert (
            await r.point().call(call.ChangeConfiguration(key="NoSuchKey", value="1"))
        ).status == "NotSupported"
        assert (
            await r.point().call(call.ChangeConfiguration(key="NumberOfConnectors", value="2"))
        ).status == "Rejected"
        assert (
            await r.point().call(call.ChangeConfiguration(key="HeartbeatInterval", value="-4"))
        ).status == "Rejected"

        boots = len(state.of("BootNotification"))
        assert (await r.point().call(call.Reset(type="Soft"))).status == "Accepted"
        await state.wait_for(lambda: len(state.of("BootNotification")) == boots + 1, timeout_s=15)


@dataclasses.dataclass
class FooBar:
    pass


@dataclasses.dataclass
class ReserveNow:
    connector_id: int = 1


async def test_unknown_and_unsupported_actions_get_the_right_call_error() -> None:
    async with rig(CsmsState(pending_boots=0)) as r:
        await r.until(lambda: r.charger.online)
        with pytest.raises(OcppNotImplemented):
            await r.point().call(FooBar(), suppress=False, skip_schema_validation=True)
        with pytest.raises(NotSupportedError):
            await r.point().call(ReserveNow(), suppress=False, skip_schema_validation=True)
        assert r.charger.counters["call_errors_sent"] == 2


async def test_wrong_password_is_refused_and_right_password_gets_in() -> None:
    state = CsmsState(pending_boots=0, passwords={"CP1": "s3cret", "CP2": "other"})
    async with rig(state, password="s3cret") as r:
        await r.until(lambda: r.charger.online)
    state2 = CsmsState(pending_boots=0, passwords={"CP1": "s3cret"})
    async with rig(state2, password="wrong") as r:
        await r.sim_sleep(10)
        assert not r.charger.online
        assert r.charger.counters["connects"] == 0
        assert state2.of("BootNotification") == []


async def test_network_delay_slows_every_frame_both_ways() -> None:
    async with rig(CsmsState(pending_boots=0)) as r:
        await r.until(lambda: r.charger.online)
        r.charger.network_delay_s = 5.0
        sent_s = r.clock.monotonic()
        reply = await r.point().call(call.GetConfiguration(key=["HeartbeatInterval"]))
        # Delayed on the way in and on the way out.
        assert r.clock.monotonic() - sent_s >= 10.0
        assert reply.configuration_key[0]["value"] == "300"


async def test_clock_aligned_values_follow_the_configured_interval() -> None:
    state = CsmsState(pending_boots=0)
    async with rig(state) as r:
        await r.until(lambda: r.charger.online)
        reply = await r.point().call(call.ChangeConfiguration(key="ClockAlignedDataInterval", value="30"))
        assert reply.status == "Accepted"
        r.charger.plug(1, one_phase_car(), "TAG-C")

        def aligned() -> list[dict[str, Any]]:
            return [
                m
                for m in state.of("MeterValues")
                if m["meter_value"][0]["sampled_value"][0].get("context") == "Sample.Clock"
            ]

        await state.wait_for(lambda: len(aligned()) >= 3, timeout_s=10)
        stamps = [datetime.fromisoformat(m["meter_value"][0]["timestamp"]) for m in aligned()]
        # Just after the wall clock's 30 s boundaries, 30 s apart. At this accelerated speed a busy
        # machine delays a step by a few simulated seconds; an unaligned sampler would be anywhere in
        # the 30 s, so 5 s still tells the two apart.
        assert all((ts.second % 30) + ts.microsecond / 1e6 < 5.0 for ts in stamps)
        assert [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)] == pytest.approx(
            [30.0] * (len(stamps) - 1), abs=5.0
        )


async def test_a_boot_triggered_while_pending_is_sent_at_once() -> None:
    # A CSMS that provisions a Pending charger asks for the boot again (TriggerMessage); the charger
    # must not accept the trigger and then wait out the Pending interval.
    state = CsmsState(pending_boots=1, boot_interval_s=300)
    async with rig(state) as r:
        await state.wait_for(lambda: len(state.of("BootNotification")) == 1)
        asked_s = r.clock.monotonic()
        reply = await r.point().call(call.TriggerMessage(requested_message="BootNotification"))
        assert reply.status == "Accepted"
        await r.until(lambda: r.charger.online, timeout_sim_s=30)
        assert len(state.of("BootNotification")) == 2
        assert r.clock.monotonic() - asked_s < 30
