"""The product's OCPP server (drivers/ocpp) against the simulator's virtual chargers, both versions.

Real websockets on loopback, one accelerated timeline for both sides (tests/integration/ocpp_sim_rig.py).
The assertions look at both ends: the driver's events (what the controller would see) and the
simulator's own state (what the car really drew, how the charger evaluates its profile stack).
"""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from controller.sessions import Ledger, OcppTransactionIds, Outcome, SessionRecorder
from controller.sessions.machine import register_wh
from drivers.contracts import (
    ChargerStatus,
    ConnectorState,
    EnergySample,
    TransactionStarted,
    TransactionStopped,
)
from simulator.chargers import VirtualCharger
from tests.integration.ocpp_sim_rig import (
    EPOCH,
    SAFE_A,
    Site,
    car,
    charger_id,
    running_site,
    sim_spec,
)
from tests.support.charger_events import sequential_ids
from tests.support.session_book import MemoryBook

pytestmark = pytest.mark.integration

VERSIONS = ["1.6", "2.0.1"]


def wh(register: float) -> int:
    """A register as the ledger keeps it: whole Wh, half up (Python's round() would round half even)."""
    value = register_wh(register)
    assert value is not None
    return value


REGISTER_START_WH = 1_234_567.0
PROFILE_DELAY_S = 1.0
CAR_DELAY_S = 2.0


def effective_limit_a(sim: VirtualCharger) -> float:
    """The limit the charger's own profile evaluation gives connector 1 now: for the running
    transaction, or for one that would start now."""
    conn = sim.connectors[0]
    now = sim.now_utc
    tx = conn.tx
    tx_key = None
    if tx is not None:
        tx_key = str(tx.server_id) if sim.version == "1.6" else tx.local_id
    limit = sim.profiles.transaction_limit_a(
        1, now, now if tx is None else tx.start_utc, tx_key, lambda phases: 230.0
    )
    cap = sim.profiles.max_limit_a(now, lambda phases: 230.0)
    value = sim.spec.fallback_limit_a if limit is None else limit
    return min(value, sim.spec.max_current_a, cap if cap is not None else value)


def quarter_hour_offset_s(moment: datetime) -> float:
    return (moment - moment.replace(minute=moment.minute // 15 * 15, second=0, microsecond=0)).total_seconds()


def measured(site: Site, cid: str) -> tuple[float | None, ...]:
    status = site.status(cid)
    return () if status is None else status.measured_current_a


def state(site: Site, cid: str) -> ConnectorState | None:
    status = site.status(cid)
    return None if status is None else status.state


@pytest.mark.parametrize("version", VERSIONS)
async def test_boot_authorize_charge_meter_values_and_set_current(version: str) -> None:
    async with running_site([sim_spec("SIM-1", version)]) as site:
        cid = charger_id("SIM-1")
        handle = site.csms.charger(cid)
        sim = site.charger("SIM-1")
        at_provisioned: dict[str, object] = {}
        site.once(
            lambda e: handle.provisioned,
            lambda: at_provisioned.update(
                online=sim.online,
                boots=sim.counters["boots"],
                profiles=sim.counters["profiles_set"],
                t=site.now_s(),
            ),
        )
        await site.until(lambda: sim.online, "boot accepted")
        # Boot was answered Pending until the safe profile was on the charger, then Accepted - at
        # once, on the driver's TriggerMessage, not after the Pending interval (5 s).
        assert at_provisioned["online"] is False
        assert isinstance(at_provisioned["t"], float) and site.now_s() - at_provisioned["t"] < 2.5
        assert at_provisioned["boots"] == 1
        assert isinstance(at_provisioned["profiles"], int) and at_provisioned["profiles"] >= 1
        assert sim.counters["boots"] >= 2
        # With no lease the charger's own evaluation gives the safe current.
        await site.until(lambda: effective_limit_a(sim) == SAFE_A, "the safe profile in effect", 5)
        safe = [p for p in sim.profiles.profiles if p.stack_level == 0 and p.purpose == "tx_default"]
        assert [(p.connector, p.duration_s, p.periods[0].limit) for p in safe] == [(0, None, SAFE_A)]

        # A tag that is not on the local list is refused: no transaction, no current.
        stranger = car()
        sim.plug(1, stranger, "NOT-ON-LIST")
        await site.until(lambda: state(site, cid) is ConnectorState.PREPARING, "the car plugged in")
        await site.sleep(5)
        assert sim.connectors[0].tx is None and stranger.current_a == 0.0
        assert site.of(TransactionStarted, cid) == []
        sim.unplug(1)

        # Authorize (local list), start, and the car follows the safe current.
        the_car = car()
        sim.plug(1, the_car, "TAG-1")
        await site.until(lambda: bool(site.of(TransactionStarted, cid)), "TransactionStarted")
        (started,) = site.of(TransactionStarted, cid)
        assert (started.id_tag, started.meter_start_wh) == ("TAG-1", REGISTER_START_WH)
        await site.until(lambda: the_car.current_a == SAFE_A, "the car at the safe current")
        assert sim.connectors[0].pilot_a == SAFE_A
        # A one-phase car on an IT charger: its branch current flows through terminals 1 and 2.
        await site.until(lambda: measured(site, cid) == (SAFE_A, SAFE_A, 0.0), "measured safe current")
        assert state(site, cid) is ConnectorState.CHARGING

        # A dynamic limit: acknowledged, the car follows after the charger's and its own delays.
        sent_s = site.now_s()
        result = await handle.set_current(16.0, lease_s=600)
        assert result.ok, result
        await site.until(lambda: the_car.current_a == 16.0, "the car at 16 A")
        followed_s = site.first_time("SIM-1", sent_s, lambda d: d.current_a == 16.0)
        assert followed_s >= sent_s + PROFILE_DELAY_S + CAR_DELAY_S - 0.5
        assert followed_s <= sent_s + PROFILE_DELAY_S + CAR_DELAY_S + 4.0
        status = site.status(cid)
        assert status is not None and status.applied_limit_a == 16.0
        await site.until(lambda: measured(site, cid) == (16.0, 16.0, 0.0), "measured 16 A")

        # 0 A pauses, a higher value resumes.
        assert (await handle.set_current(0.0, lease_s=600)).ok
        await site.until(lambda: state(site, cid) is ConnectorState.SUSPENDED_EVSE, "SuspendedEVSE")
        assert sim.connectors[0].status == "SuspendedEVSE"
        await site.until(lambda: the_car.current_a == 0.0, "the car paused")
        await site.until(lambda: measured(site, cid) == (0.0, 0.0, 0.0), "measured 0 A")
        assert (await handle.set_current(20.0, lease_s=600)).ok
        await site.until(lambda: state(site, cid) is ConnectorState.CHARGING, "Charging again")
        await site.until(lambda: the_car.current_a == 20.0, "the car at 20 A")
        await site.until(lambda: measured(site, cid) == (20.0, 20.0, 0.0), "measured 20 A")

        # Clock-aligned values at the quarter-hour (ClockAlignedDataInterval = 900).
        await site.until(
            lambda: any(s.clock_aligned for s in site.of(EnergySample, cid)), "a clock-aligned sample", 90
        )
        aligned = [s for s in site.of(EnergySample, cid) if s.clock_aligned]
        assert [s.measured_utc.replace(microsecond=0) for s in aligned] == [
            EPOCH.replace(hour=17, minute=0, second=0)
        ]
        assert all(quarter_hour_offset_s(s.measured_utc) < 0.5 for s in aligned)
        assert aligned[0].transaction_id == started.transaction_id

        sim.unplug(1)
        await site.until(lambda: bool(site.of(TransactionStopped, cid)), "TransactionStopped")
        (stopped,) = site.of(TransactionStopped, cid)
        assert stopped.transaction_id == started.transaction_id
        assert stopped.reason == "EVDisconnected"
        assert stopped.meter_stop_wh is not None and started.meter_start_wh is not None
        # The registers the driver reports carry exactly the energy the car took.
        assert abs(stopped.meter_stop_wh - started.meter_start_wh - the_car.energy_wh) <= 1.0

        # Every energy sample of the transaction matches the car's integrated energy at its step.
        samples = [s for s in site.of(EnergySample, cid) if s.transaction_id == started.transaction_id]
        assert len(samples) >= 5
        registers = [s.energy_register_wh for s in samples]
        assert registers == sorted(registers)
        by_time = {EPOCH + timedelta(seconds=d.t_s): d for d in site.drawn("SIM-1", 0)}
        for s in samples:
            step = min(by_time, key=lambda t: abs((t - s.measured_utc).total_seconds()))
            assert abs((step - s.measured_utc).total_seconds()) < 0.002
            # A sample taken at the plug-in (2.0.1 Transaction.Begin) names the step before the car.
            car_wh = by_time[step].car_energy_wh or 0.0
            assert abs(s.energy_register_wh - REGISTER_START_WH - car_wh) <= 0.1, s
        assert not [
            e for e in site.of(ChargerStatus, cid) if e.transaction_id not in (None, started.transaction_id)
        ]


async def charging_at_safe_current(site: Site, identity: str, tag: str = "TAG-1") -> TransactionStarted:
    """Wait for the boot, plug a one-phase car and wait until it draws the safe current."""
    sim = site.charger(identity)
    cid = charger_id(identity)
    await site.until(lambda: sim.online, f"{identity} accepted")
    the_car = car()
    sim.plug(1, the_car, tag)
    await site.until(lambda: bool(site.of(TransactionStarted, cid)), f"{identity} TransactionStarted")
    await site.until(lambda: the_car.current_a == SAFE_A, f"{identity} car at the safe current")
    return site.of(TransactionStarted, cid)[-1]


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_dead_controller_leaves_the_charger_at_its_safe_current_when_the_lease_lapses(
    version: str,
) -> None:
    async with running_site([sim_spec("SIM-1", version)]) as site:
        sim = site.charger("SIM-1")
        handle = site.csms.charger(charger_id("SIM-1"))
        await charging_at_safe_current(site, "SIM-1")
        the_car = sim.connectors[0].car
        assert the_car is not None
        assert (await handle.set_current(16.0, lease_s=30)).ok
        await site.until(lambda: the_car.current_a == 16.0, "the car at 16 A")
        # A refresh before expiry replaces the lease (same profile id) and restarts its duration.
        await site.sleep(15)
        refreshed_s = site.now_s()
        assert (await handle.set_current(16.0, lease_s=30)).ok
        await site.sleep(PROFILE_DELAY_S + 1)
        assert [p.stack_level for p in sim.profiles.profiles if p.stack_level > 0] == [1]
        assert effective_limit_a(sim) == 16.0

        # The controller dies: nobody refreshes, nobody is connected.
        await site.csms.__aexit__(None, None, None)
        await site.until(lambda: not sim.online, "the charger offline")
        await site.until(lambda: effective_limit_a(sim) == SAFE_A, "the lease lapsed", 60)
        lapsed_s = site.first_time("SIM-1", refreshed_s, lambda d: d.pilot_a == SAFE_A)
        # The lease starts at the driver's clock (whole seconds) and lasts 30 s from the refresh.
        assert refreshed_s + 30 - 1.5 <= lapsed_s <= refreshed_s + 30 + 1.0
        await site.until(lambda: the_car.current_a == SAFE_A, "the car back at the safe current")
        assert (
            site.first_time("SIM-1", lapsed_s, lambda d: d.current_a == SAFE_A)
            >= lapsed_s + CAR_DELAY_S - 0.5
        )
        # Still charging, at the safe profile the driver installed at boot (stack level 0, no duration).
        assert sim.connectors[0].status == "Charging"


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_start_and_a_stop_resent_after_a_cut_link_are_counted_once(version: str) -> None:
    async with running_site([sim_spec("SIM-1", version)], through_proxy=True) as site:
        sim = site.charger("SIM-1")
        cid = charger_id("SIM-1")
        proxy = site.proxy
        assert proxy is not None
        await site.until(lambda: sim.online, "boot accepted")
        # Cut the network while the driver handles the start: its answer never reaches the charger,
        # which resends the start after reconnecting.
        site.once(lambda e: isinstance(e, TransactionStarted), proxy.cut)
        the_car = car()
        sim.plug(1, the_car, "TAG-1")
        await site.until(lambda: sim.counters["connects"] == 2 and sim.online, "reconnected")
        await site.until(lambda: site.csms.counters["replayed_starts"] == 1, "the start resent")
        # The resent start is passed on again (the ledger takes it as a duplicate); 1.6: it got the
        # same id from the driver.
        started, again = site.of(TransactionStarted, cid)
        assert again == replace(started, received=again.received)
        tx = sim.connectors[0].tx
        assert tx is not None
        # The driver has counted the resent start; the charger takes the id from the answer a moment
        # later.
        await site.until(lambda: version != "1.6" or tx.server_id is not None, "the id answered")
        assert started.transaction_id == (str(tx.server_id) if version == "1.6" else tx.local_id)
        await site.until(lambda: the_car.current_a == SAFE_A, "charging")
        await site.sleep(12)

        site.once(lambda e: isinstance(e, TransactionStopped), proxy.cut)
        sim.unplug(1)
        await site.until(lambda: sim.counters["connects"] == 3 and sim.online, "reconnected again")
        await site.until(lambda: site.csms.counters["replayed_stops"] == 1, "the stop resent")
        await site.until(lambda: sim.queued_transaction_messages == 0, "the queue drained")
        stopped, stopped_again = site.of(TransactionStopped, cid)
        assert (stopped_again.transaction_id, stopped_again.meter_stop_wh) == (
            stopped.transaction_id,
            stopped.meter_stop_wh,
        )
        assert stopped.transaction_id == started.transaction_id
        assert started.meter_start_wh is not None and stopped.meter_stop_wh is not None
        assert abs(stopped.meter_stop_wh - started.meter_start_wh - the_car.energy_wh) <= 1.0
        # The ledger's state machine fed with everything the driver emitted: one session, its energy.
        book = MemoryBook(sequential_ids())
        book.feed_all(site.events)
        (session,) = book.final()
        assert not session.active
        assert session.energy_wh == wh(stopped.meter_stop_wh) - wh(started.meter_start_wh)


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_charger_rebooted_while_offline_replays_its_transaction_messages_in_order(
    version: str,
) -> None:
    async with running_site([sim_spec("SIM-1", version)]) as site:
        sim = site.charger("SIM-1")
        cid = charger_id("SIM-1")
        first = await charging_at_safe_current(site, "SIM-1")
        the_car = sim.connectors[0].car
        assert the_car is not None
        await site.until(lambda: sim.queued_transaction_messages == 0, "nothing in flight")
        sim.disconnect(30.0)
        await site.until(lambda: not sim.online, "offline")
        offline_s = site.now_s()
        await site.sleep(6)
        sim.power_cycle()  # ends the transaction (PowerLoss); the car starts again after the reboot
        await site.until(
            lambda: sim.connectors[0].tx is not None and the_car.current_a > 0, "charging offline"
        )
        queued = sim.queued_transaction_messages
        assert queued >= 3  # samples, the stop, the new start
        await site.until(lambda: len(site.of(TransactionStarted, cid)) == 2, "the offline start replayed", 60)
        await site.until(lambda: sim.queued_transaction_messages == 0, "the queue drained")
        second = site.of(TransactionStarted, cid)[1]
        (stopped,) = site.of(TransactionStopped, cid)
        transactional = [e for e in site.events if isinstance(e, TransactionStarted | TransactionStopped)]
        assert transactional == [first, stopped, second]
        assert stopped.transaction_id == first.transaction_id != second.transaction_id
        assert stopped.reason == "PowerLoss"
        assert second.id_tag == "TAG-1"
        # Samples taken while offline arrived, each for its own transaction.
        offline_utc = EPOCH + timedelta(seconds=offline_s)
        late = [s for s in site.of(EnergySample, cid) if s.measured_utc > offline_utc]
        assert {s.transaction_id for s in late} >= {first.transaction_id, second.transaction_id}
        book = MemoryBook(sequential_ids())
        book.feed_all(site.events)
        a, b = book.final()
        assert (a.transaction_id, b.transaction_id) == (first.transaction_id, second.transaction_id)
        assert a.meter_stop_wh is not None and a.energy_wh is not None and b.energy_wh is not None
        assert b.meter_start_wh == a.meter_stop_wh  # nothing flowed while the charger rebooted
        assert stopped.meter_stop_wh is not None
        assert a.energy_wh == wh(stopped.meter_stop_wh) - wh(REGISTER_START_WH)


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_charger_that_ignores_profiles_is_reported_as_it_draws(version: str) -> None:
    async with running_site([sim_spec("SIM-1", version, ignore_profiles=True)]) as site:
        sim = site.charger("SIM-1")
        cid = charger_id("SIM-1")
        handle = site.csms.charger(cid)
        await site.until(lambda: sim.online, "boot accepted")
        the_car = car(max_current_a=32.0)
        sim.plug(1, the_car, "TAG-1")
        # No profile took effect: the charger offers its own maximum and the car takes 32 A.
        await site.until(lambda: the_car.current_a == 32.0, "the car at 32 A")
        result = await handle.set_current(10.0, lease_s=120)
        assert result.ok  # acknowledged all the same
        await site.sleep(PROFILE_DELAY_S + CAR_DELAY_S + 8)
        assert the_car.current_a == 32.0
        status = site.status(cid)
        assert status is not None
        assert status.applied_limit_a == 10.0  # what was asked for
        assert status.measured_current_a == (32.0, 32.0, 0.0)  # what flows, for the controller to budget


async def test_twenty_chargers_of_both_versions_boot_charge_and_follow_their_limits() -> None:
    specs = [
        sim_spec(f"SIM-{n:02d}", "1.6" if n % 2 else "2.0.1", lines=("L1", "L2", "L3")[: 2 + n % 2])
        for n in range(20)
    ]
    async with running_site(specs) as site:
        sims = list(site.chargers.values())
        await site.until(lambda: all(s.online for s in sims), "all accepted", 60)
        assert all(site.csms.charger(charger_id(s.spec.identity)).provisioned for s in sims)
        cars = {s.spec.identity: car(phases=3 if len(s.spec.lines) == 3 else 1) for s in sims}
        for s in sims:
            s.plug(1, cars[s.spec.identity], "TAG-2")
        await site.until(lambda: all(c.current_a == SAFE_A for c in cars.values()), "all at the safe current")
        assert len(site.of(TransactionStarted)) == 20
        results = await asyncio.gather(
            *(
                site.csms.charger(charger_id(i)).set_current(6.0 + n / 2, lease_s=300)
                for n, i in enumerate(cars)
            )
        )
        assert all(r.ok for r in results), results
        await site.until(
            lambda: all(c.current_a == 6.0 + n / 2 for n, c in enumerate(cars.values())),
            "all at their limits",
        )
        for n, (identity, the_car) in enumerate(cars.items()):
            want = 6.0 + n / 2
            per_amp = site.charger(identity).connectors[0].terminal_per_amp
            # A terminal the charger does not report (a two-wire charger's third) stays None, not 0.
            expected = tuple(round(want * k, 2) for k in per_amp) + (None,) * (3 - len(per_amp))
            await site.until(
                functools.partial(lambda cid, e: measured(site, cid) == e, charger_id(identity), expected),
                f"{identity} measured {expected}",
            )
            assert the_car.current_a == want
        assert {state(site, charger_id(i)) for i in cars} == {ConnectorState.CHARGING}


async def test_a_201_transaction_without_registers_is_billed_from_its_samples_never_from_0(
    tmp_path: Path,
) -> None:
    async with running_site([sim_spec("SIM-1", "2.0.1")]) as site:
        sim = site.charger("SIM-1")
        cid = charger_id("SIM-1")
        handle = site.csms.charger(cid)
        await site.until(lambda: sim.online, "boot accepted")
        # Through the driver, as an operator would: Started/Ended events without meter values.
        assert (await handle.configure("SampledDataCtrlr.TxStartedMeasurands", "")).ok
        assert (await handle.configure("SampledDataCtrlr.TxEndedMeasurands", "")).ok
        the_car = car()
        sim.plug(1, the_car, "TAG-1")
        await site.until(lambda: bool(site.of(TransactionStarted, cid)), "TransactionStarted")
        (started,) = site.of(TransactionStarted, cid)

        def samples() -> list[EnergySample]:
            return [s for s in site.of(EnergySample, cid) if s.transaction_id == started.transaction_id]

        await site.until(lambda: len(samples()) >= 3, "three samples")
        sim.unplug(1)
        await site.until(lambda: bool(site.of(TransactionStopped, cid)), "TransactionStopped")
        (stopped,) = site.of(TransactionStopped, cid)
        assert (started.meter_start_wh, stopped.meter_stop_wh) == (None, None)
        first, last = samples()[0].energy_register_wh, samples()[-1].energy_register_wh
        assert first >= REGISTER_START_WH
        async with await Ledger.open(tmp_path / "ledger.sqlite") as ledger:
            recorder = SessionRecorder(ledger, site.clock)
            await recorder.handle_many(site.events)
            (session,) = await ledger.list_sessions()
            message = json.loads((await ledger.pending())[-1].payload)
    # The energy between the first and the last sample: never the register itself (1.2 MWh).
    assert session.meter_start_wh == wh(first)
    assert session.meter_stop_wh == wh(last)
    assert session.energy_wh == wh(last) - wh(first)
    assert 0 < session.energy_wh <= the_car.energy_wh + 1
    assert message["energy_wh"] == session.energy_wh
    assert message["energy_status"] == "partial"
    assert message["flags"] == ["start_register_missing", "stop_register_missing"]


async def test_a_stop_register_below_the_start_after_a_daemon_restart_is_flagged_not_negative(
    tmp_path: Path,
) -> None:
    async with await Ledger.open(tmp_path / "ledger.sqlite") as ledger:
        ids = OcppTransactionIds(ledger)  # persistent: the restarted daemon knows the transaction
        async with running_site([sim_spec("SIM-1", "1.6")], transaction_ids=ids) as site:
            sim = site.charger("SIM-1")
            cid = charger_id("SIM-1")
            started = await charging_at_safe_current(site, "SIM-1")
            await site.until(
                lambda: len([s for s in site.of(EnergySample, cid) if s.transaction_id]) >= 2, "samples"
            )
            await site.until(lambda: sim.queued_transaction_messages == 0, "nothing in flight")
            await site.stop_csms()
            await site.until(lambda: not sim.online, "the charger offline")
            # While the daemon is down the charger's meter is replaced (fault injection): its stop
            # register is far below the start register the ledger holds.
            sim.connectors[0].register_wh = 321.0
            sim.unplug(1)
            await site.start_csms()
            await site.until(lambda: bool(site.of(TransactionStopped, cid)), "the stop replayed", 60)
        (stopped,) = site.of(TransactionStopped, cid)
        # The new driver never saw the start, so it cannot refuse the stop: it reports it as sent.
        assert (stopped.transaction_id, stopped.meter_stop_wh) == (started.transaction_id, 321.0)
        recorder = SessionRecorder(ledger, site.clock)
        await recorder.handle_many(site.events)
        (session,) = await ledger.list_sessions()
        message = json.loads((await ledger.pending())[-1].payload)
    assert recorder.counters[Outcome.STOP_BELOW_START] == 1
    assert session.meter_start_wh == wh(REGISTER_START_WH)
    assert session.energy_wh is not None and session.energy_wh > 0  # up to the last good sample
    assert session.meter_stop_wh == session.last_register_wh
    assert session.meter_stop_wh is not None and session.meter_stop_wh > wh(REGISTER_START_WH)
    assert message["flags"] == ["stop_register_below_start"]
    assert message["energy_status"] == "partial"
