"""Sessions of a Modbus charger from its vehicle state, across restarts of the daemon."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from drivers.contracts import EnergySample, ReceiveTime, TransactionStarted, TransactionStopped
from drivers.modbus.transactions import ModbusTransactions

T0 = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)


def at(s: float) -> ReceiveTime:
    return ReceiveTime(s, T0 + timedelta(seconds=s))


def tracker() -> ModbusTransactions:
    ids = itertools.count(1)
    return ModbusTransactions("MB-1", lambda: f"mb-{next(ids)}", sample_every_s=10.0)


def test_plug_in_to_unplug_is_one_session_with_samples_between() -> None:
    t = tracker()
    assert t.observe("A", 1000.0, None, at(0)) == []
    (started,) = t.observe("B", 1000.0, None, at(2))
    assert isinstance(started, TransactionStarted) and started.meter_start_wh == 1000.0
    assert t.observe("C", 1001.0, None, at(4)) == []  # sampled at most every 10 s
    (sample,) = t.observe("C", 1010.0, None, at(12))
    assert isinstance(sample, EnergySample) and sample.transaction_id == started.transaction_id
    assert t.observe("F", 1011.0, None, at(30))  # a fault does not end it: still sampled
    (stopped,) = t.observe("A", 1020.0, None, at(40))
    assert isinstance(stopped, TransactionStopped)
    assert (stopped.transaction_id, stopped.meter_stop_wh, stopped.reason) == (
        "mb-1",
        1020.0,
        "EVDisconnected",
    )
    assert t.observe("A", 1020.0, None, at(42)) == []


def test_an_unreadable_state_proves_nothing() -> None:
    t = tracker()
    t.observe("C", 5.0, None, at(0))
    assert t.observe(None, None, None, at(20)) == []
    assert t.transaction_id == "mb-1"


def test_a_session_resumed_after_a_restart_goes_on_or_ends_with_the_register_as_it_reads() -> None:
    still = tracker()
    still.resume("mb-7", None, 500.0)
    (sample,) = still.observe("C", 900.0, None, at(100))
    assert isinstance(sample, EnergySample) and sample.transaction_id == "mb-7"
    left = tracker()
    left.resume("mb-8", None, 500.0)
    (stopped,) = left.observe("A", 1400.0, None, at(100))
    # What the car drew while the daemon was down is in the register: billed to its session.
    assert isinstance(stopped, TransactionStopped) and stopped.meter_stop_wh == 1400.0
