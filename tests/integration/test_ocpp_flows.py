"""The CSMS against chargers built on the `ocpp` library, over real websockets, both versions."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from drivers.contracts import (
    ChargerStatus,
    CommandOutcome,
    ConnectorState,
    EnergySample,
    TransactionStarted,
    TransactionStopped,
)
from drivers.ocpp import AuthEntry, Quirks, TagKind
from tests.integration.ocpp_support import (
    Harness,
    call16,
    call201,
    charge_point,
    connected,
    eventually,
    now_iso,
    running_csms,
    sample_values_16,
    sample_values_201,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


def latest_status(h: Harness, charger_id: str) -> ChargerStatus:
    statuses: list[ChargerStatus] = [e for e in h.of_type(ChargerStatus) if e.charger_id == charger_id]
    return statuses[-1]


async def test_v16_boot_is_pending_until_the_safe_profile_is_installed() -> None:
    async with (
        running_csms([charge_point("CP1", safe_current_a=8.0, phases=3)]) as h,
        connected(h.url, "CP1") as cp,
    ):
        assert await cp.boot() == "Pending"
        async with asyncio.timeout(5):
            await cp.rec.accepted.wait()
        connector_id, profile = cp.rec.profiles[0]
        assert connector_id == 0
        assert profile["stack_level"] == 0
        assert profile["charging_profile_purpose"] == "TxDefaultProfile"
        assert "duration" not in profile["charging_schedule"]
        period = profile["charging_schedule"]["charging_schedule_period"][0]
        assert Decimal(str(period["limit"])) == Decimal("8.0")
        assert period["number_phases"] == 3
        assert cp.rec.configuration["MeterValueSampleInterval"] == "1"
        assert cp.rec.configuration["ClockAlignedDataInterval"] == "900"
        assert "BootNotification" in cp.rec.triggers
        assert h.csms.charger("CP1-1").provisioned


async def test_v16_transaction_flow_and_idempotent_replays() -> None:
    async with running_csms([charge_point("CP1")]) as h:
        h.auth.apply_full(1, {"04A1B2C3": AuthEntry(TagKind.RESIDENT)})
        async with connected(h.url, "CP1") as cp:
            await cp.boot_until_accepted()
            await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
            auth = await cp.call(call16.Authorize(id_tag="04a1b2c3"))
            assert auth.id_tag_info["status"] == "Accepted"
            unknown = await cp.call(call16.Authorize(id_tag="DEADBEEF"))
            assert unknown.id_tag_info["status"] == "Invalid"
            started = now_iso()
            start = call16.StartTransaction(
                connector_id=1, id_tag="04A1B2C3", meter_start=1000, timestamp=started
            )
            first = await cp.call(start)
            replay = await cp.call(start)
            assert first.transaction_id == replay.transaction_id
            # The replay is passed on again, the same start: the ledger takes it as one.
            start_event, replayed = h.of_type(TransactionStarted)
            assert replayed == replace(start_event, received=replayed.received)
            await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
            await cp.call(
                call16.MeterValues(
                    connector_id=1,
                    transaction_id=first.transaction_id,
                    meter_value=sample_values_16(1500, (15.9, 16.0, 15.8)),
                )
            )
            status = latest_status(h, "CP1-1")
            assert status.state is ConnectorState.CHARGING
            assert status.vehicle_connected
            assert status.measured_current_a == (15.9, 16.0, 15.8)
            assert status.energy_register_wh == 1500
            assert status.transaction_id == str(first.transaction_id)
            assert status.id_tag == "04A1B2C3"
            samples = h.of_type(EnergySample)
            assert samples[-1].energy_register_wh == 1500
            assert samples[-1].transaction_id == str(first.transaction_id)

            result = await h.csms.charger("CP1-1").set_current(16.37, lease_s=30, phases=1)
            assert result.ok
            connector_id, lease = cp.rec.profiles[-1]
            assert connector_id == 1
            assert lease["charging_profile_purpose"] == "TxProfile"
            assert lease["transaction_id"] == first.transaction_id
            assert lease["stack_level"] == 1
            assert lease["charging_schedule"]["duration"] == 30
            period = lease["charging_schedule"]["charging_schedule_period"][0]
            assert Decimal(str(period["limit"])) == Decimal("16.3")
            assert period["number_phases"] == 1
            assert latest_status(h, "CP1-1").applied_limit_a == pytest.approx(16.3)

            stop = call16.StopTransaction(
                transaction_id=first.transaction_id,
                meter_stop=4200,
                timestamp=now_iso(),
                id_tag="04A1B2C3",
                reason="EVDisconnected",
            )
            await cp.call(stop)
            await cp.call(stop)
            stopped = h.of_type(TransactionStopped)
            # The replayed stop is passed on again too (the ledger takes it as a duplicate).
            assert len(stopped) == 2
            assert stopped[1] == replace(stopped[0], received=stopped[1].received)
            assert stopped[0].meter_stop_wh == 4200
            assert stopped[0].reason == "EVDisconnected"
            assert h.csms.counters["replayed_starts"] == 1
            assert h.csms.counters["replayed_stops"] == 1
            second = await cp.call(
                call16.StartTransaction(
                    connector_id=1, id_tag="04A1B2C3", meter_start=4200, timestamp=now_iso()
                )
            )
            assert second.transaction_id != first.transaction_id


async def test_a_reconnected_charger_reports_no_currents_until_it_measures_again() -> None:
    async with running_csms([charge_point("CP1")]) as h:
        async with connected(h.url, "CP1") as cp:
            await cp.boot_until_accepted()
            await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
            await cp.call(
                call16.MeterValues(connector_id=1, meter_value=sample_values_16(1500, (6.2, 6.2, 6.2)))
            )
            assert latest_status(h, "CP1-1").measured_current_a == (6.2, 6.2, 6.2)
        await eventually(lambda: not latest_status(h, "CP1-1").online)
        # Back (say after a reboot) with the car no longer drawing: the old 6.2 A must not stand
        # for it, or the site reads the base load 6.2 A low on every line.
        async with connected(h.url, "CP1") as cp:
            await eventually(lambda: latest_status(h, "CP1-1").online)
            status = latest_status(h, "CP1-1")
            assert status.measured_current_a == (None, None, None)
            assert status.energy_register_wh == 1500  # a register stays: it is read, not a rate
            await cp.call(
                call16.MeterValues(connector_id=1, meter_value=sample_values_16(1510, (0.0, 0.0, 0.0)))
            )
            assert latest_status(h, "CP1-1").measured_current_a == (0.0, 0.0, 0.0)


async def test_v16_commands_reach_the_charger() -> None:
    async with running_csms([charge_point("CP1")]) as h, connected(h.url, "CP1") as cp:
        await cp.boot_until_accepted()
        handle = h.csms.charger("CP1-1")
        assert (await handle.remote_start("04A1B2C3")).ok
        assert (await handle.remote_stop()).outcome is CommandOutcome.REJECTED  # no transaction yet
        start = await cp.call(
            call16.StartTransaction(connector_id=1, id_tag="X", meter_start=0, timestamp=now_iso())
        )
        assert (await handle.remote_stop()).ok
        assert (await handle.set_available(False)).ok
        assert (await h.csms.reset("CP1-1")).ok
        assert (await h.csms.trigger("CP1-1", "MeterValues")).ok
        assert (await handle.configure("HeartbeatInterval", "120")).ok
        values = await handle.read_configuration("HeartbeatInterval", "Nope")
        assert values == {"HeartbeatInterval": "120", "Nope": None}
        assert (await handle.pause(lease_s=10)).ok
        period = cp.rec.profiles[-1][1]["charging_schedule"]["charging_schedule_period"][0]
        assert Decimal(str(period["limit"])) == 0
        names = [name for name, _ in cp.rec.commands]
        assert names == ["RemoteStartTransaction", "RemoteStopTransaction", "ChangeAvailability", "Reset"]
        assert cp.rec.commands[1][1]["transaction_id"] == start.transaction_id


async def test_commands_to_an_offline_or_unprovisioned_charger() -> None:
    async with running_csms([charge_point("CP1")]) as h:
        handle = h.csms.charger("CP1-1")
        assert (await handle.set_current(10, lease_s=10)).outcome is CommandOutcome.OFFLINE
        async with connected(h.url, "CP1") as cp:
            cp.rec.profile_status = "Rejected"  # the safe profile never goes in
            assert await cp.boot() == "Pending"
            result = await handle.set_current(10, lease_s=10)
            assert result.outcome is CommandOutcome.REJECTED
            assert "provisioned" in result.detail
        await eventually(lambda: not latest_status(h, "CP1-1").online)


async def test_lease_quirks_watts_and_stack_level_zero() -> None:
    quirks = Quirks(stack_level_zero_only=True, limit_in_watts=True, nominal_voltage_v=230)
    async with (
        running_csms([charge_point("CPQ", quirks=quirks, phases=3, safe_current_a=6)]) as h,
        connected(h.url, "CPQ") as cp,
    ):
        await cp.boot_until_accepted()
        safe = cp.rec.profiles[0][1]["charging_schedule"]
        assert safe["charging_rate_unit"] == "W"
        assert Decimal(str(safe["charging_schedule_period"][0]["limit"])) == Decimal(6 * 230 * 3)
        assert (await h.csms.charger("CPQ-1").set_current(10, lease_s=20)).ok
        connector_id, lease = cp.rec.profiles[-1]
        assert connector_id == 1  # connector-specific: overrides the connector-0 safe profile
        assert lease["stack_level"] == 0
        assert lease["charging_profile_purpose"] == "TxDefaultProfile"
        assert Decimal(str(lease["charging_schedule"]["charging_schedule_period"][0]["limit"])) == 6900
        assert latest_status(h, "CPQ-1").applied_limit_a == pytest.approx(10)


async def test_v201_flow_boot_transaction_meter_values_profile_stop() -> None:
    chargers = [charge_point("CS2", connectors={1: "CS2-A", 2: "CS2-B"}, max_current_a=32, safe_current_a=6)]
    async with running_csms(chargers) as h:
        h.auth.apply_full(1, {"AABBCCDD": AuthEntry(TagKind.EV_ASSOCIATION)})
        async with connected(h.url, "CS2", version="2.0.1") as cp:
            assert await cp.boot() == "Pending"
            async with asyncio.timeout(5):
                await cp.rec.accepted.wait()
            purposes = [(evse, p["charging_profile_purpose"]) for evse, p in cp.rec.profiles]
            assert (0, "ChargingStationMaxProfile") in purposes
            assert (0, "TxDefaultProfile") in purposes
            assert cp.rec.configuration["AlignedDataCtrlr.Interval"] == "900"
            assert cp.rec.configuration["SampledDataCtrlr.TxUpdatedInterval"] == "1"

            await cp.call(
                call201.StatusNotification(
                    timestamp=now_iso(), connector_status="Occupied", evse_id=2, connector_id=1
                )
            )
            auth = await cp.call(call201.Authorize(id_token={"id_token": "AABBCCDD", "type": "ISO14443"}))
            assert auth.id_token_info["status"] == "Accepted"
            started: dict[str, Any] = {
                "event_type": "Started",
                "timestamp": now_iso(),
                "trigger_reason": "Authorized",
                "seq_no": 0,
                "transaction_info": {"transaction_id": "tx-201-1", "charging_state": "Charging"},
                "evse": {"id": 2, "connector_id": 1},
                "id_token": {"id_token": "AABBCCDD", "type": "ISO14443"},
                "meter_value": sample_values_201(2000.0, (10.0, 10.1, 9.9), "Transaction.Begin"),
            }
            reply = await cp.call(call201.TransactionEvent(**started))
            assert reply.id_token_info["status"] == "Accepted"
            await cp.call(call201.TransactionEvent(**started))  # replayed: the same start again
            assert [
                (e.charger_id, e.transaction_id, e.meter_start_wh) for e in h.of_type(TransactionStarted)
            ] == [("CS2-B", "tx-201-1", 2000.0)] * 2
            await cp.call(
                call201.TransactionEvent(
                    event_type="Updated",
                    timestamp=now_iso(),
                    trigger_reason="MeterValuePeriodic",
                    seq_no=1,
                    transaction_info={"transaction_id": "tx-201-1", "charging_state": "Charging"},
                    meter_value=sample_values_201(2600.0, (16.0, 16.1, 15.9)),
                )
            )
            status = latest_status(h, "CS2-B")
            assert status.state is ConnectorState.CHARGING
            assert status.measured_current_a == (16.0, 16.1, 15.9)
            assert status.energy_register_wh == 2600.0

            assert (await h.csms.charger("CS2-B").set_current(13.0, lease_s=15, phases=3)).ok
            evse, lease = cp.rec.profiles[-1]
            assert evse == 2
            assert lease["charging_profile_purpose"] == "TxProfile"
            assert lease["transaction_id"] == "tx-201-1"
            assert lease["charging_schedule"][0]["duration"] == 15
            assert lease["charging_schedule"][0]["charging_schedule_period"][0]["limit"] == 13.0

            assert (await h.csms.charger("CS2-B").remote_stop()).ok
            assert cp.rec.commands[-1] == ("RequestStopTransaction", {"transaction_id": "tx-201-1"})
            ended: dict[str, Any] = {
                "event_type": "Ended",
                "timestamp": now_iso(),
                "trigger_reason": "RemoteStop",
                "seq_no": 2,
                "transaction_info": {"transaction_id": "tx-201-1", "stopped_reason": "Remote"},
                "meter_value": sample_values_201(3100.0, (0.0, 0.0, 0.0), "Transaction.End"),
            }
            await cp.call(call201.TransactionEvent(**ended))
            await cp.call(call201.TransactionEvent(**ended))
            stops = h.of_type(TransactionStopped)
            assert [(s.charger_id, s.meter_stop_wh, s.reason) for s in stops] == [
                ("CS2-B", 3100.0, "Remote")
            ] * 2
            assert latest_status(h, "CS2-B").transaction_id is None

            assert (await h.csms.charger("CS2-A").configure("OCPPCommCtrlr.HeartbeatInterval", "100")).ok
            values = await h.csms.charger("CS2-A").read_configuration("OCPPCommCtrlr.HeartbeatInterval")
            assert values == {"OCPPCommCtrlr.HeartbeatInterval": "100"}
            assert (await h.csms.charger("CS2-A").remote_start("AABBCCDD")).ok
            assert (await h.csms.reset("CS2-A")).ok


async def test_v201_transaction_running_before_a_restart_is_tracked_without_a_new_start() -> None:
    async with running_csms([charge_point("CS2")]) as h, connected(h.url, "CS2", version="2.0.1") as cp:
        await cp.boot_until_accepted()
        update: dict[str, Any] = {
            "event_type": "Updated",
            "timestamp": now_iso(),
            "trigger_reason": "MeterValuePeriodic",
            "seq_no": 7,
            "transaction_info": {"transaction_id": "old-tx", "charging_state": "Charging"},
            "evse": {"id": 1, "connector_id": 1},
            "meter_value": sample_values_201(9000.0, (8.0, 8.0, 8.0)),
        }
        await cp.call(call201.TransactionEvent(**update))
        assert h.of_type(TransactionStarted) == []
        assert latest_status(h, "CS2-1").transaction_id == "old-tx"
        assert (await h.csms.charger("CS2-1").set_current(9, lease_s=10)).ok
        assert cp.rec.profiles[-1][1]["transaction_id"] == "old-tx"
        update.update(event_type="Ended", seq_no=8, meter_value=sample_values_201(9100.0, (0, 0, 0)))
        await cp.call(call201.TransactionEvent(**update))
        assert [(s.transaction_id, s.meter_stop_wh) for s in h.of_type(TransactionStopped)] == [
            ("old-tx", 9100.0)
        ]


async def test_v201_start_and_stop_without_a_register_are_reported_as_none_not_zero() -> None:
    # A 2.0.1 Started/Ended event may carry no meter value. The register the station reported
    # earlier (outside the transaction) is not a start register either.
    async with running_csms([charge_point("CS2")]) as h, connected(h.url, "CS2", version="2.0.1") as cp:
        await cp.boot_until_accepted()
        await cp.call(call201.MeterValues(evse_id=1, meter_value=sample_values_201(1_234_000.0, (0, 0, 0))))
        event: dict[str, Any] = {
            "event_type": "Started",
            "timestamp": now_iso(),
            "trigger_reason": "Authorized",
            "seq_no": 0,
            "transaction_info": {"transaction_id": "tx-bare", "charging_state": "Charging"},
            "evse": {"id": 1, "connector_id": 1},
        }
        await cp.call(call201.TransactionEvent(**event))
        event.update(
            event_type="Updated",
            seq_no=1,
            trigger_reason="MeterValuePeriodic",
            meter_value=sample_values_201(1_234_567.0, (16.0, 16.0, 16.0)),
        )
        await cp.call(call201.TransactionEvent(**event))
        del event["meter_value"]
        event.update(
            event_type="Ended",
            seq_no=2,
            trigger_reason="EVCommunicationLost",
            transaction_info={"transaction_id": "tx-bare", "stopped_reason": "EVDisconnected"},
        )
        await cp.call(call201.TransactionEvent(**event))
        (started,) = h.of_type(TransactionStarted)
        (stopped,) = h.of_type(TransactionStopped)
        assert (started.transaction_id, started.meter_start_wh) == ("tx-bare", None)
        assert (stopped.transaction_id, stopped.meter_stop_wh) == ("tx-bare", None)
        samples = [e for e in h.of_type(EnergySample) if e.transaction_id == "tx-bare"]
        assert [s.energy_register_wh for s in samples] == [1_234_567.0]
