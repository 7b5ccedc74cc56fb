"""Builders for charger events (drivers.contracts) used by the session and ledger tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

from drivers.contracts import (
    ChargerStatus,
    ConnectorState,
    EnergySample,
    ReceiveTime,
    TransactionStarted,
    TransactionStopped,
)

T0 = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)


def at(minutes: float, base: datetime = T0) -> datetime:
    return base + timedelta(minutes=minutes)


def _rx(moment: datetime) -> ReceiveTime:
    return ReceiveTime(monotonic_s=(moment - T0).total_seconds(), utc=moment)


def start(
    tx: str, minutes: float, wh: float | None, *, charger: str = "CP-01", tag: str | None = "TAG-1"
) -> TransactionStarted:
    moment = at(minutes)
    return TransactionStarted(charger, tx, tag, wh, moment, _rx(moment))


def sample(tx: str | None, minutes: float, wh: float, *, charger: str = "CP-01") -> EnergySample:
    moment = at(minutes)
    return EnergySample(charger, tx, wh, moment, _rx(moment))


def stop(
    tx: str, minutes: float, wh: float | None, *, charger: str = "CP-01", reason: str = "EVDisconnected"
) -> TransactionStopped:
    moment = at(minutes)
    return TransactionStopped(charger, tx, "TAG-1", wh, moment, reason, _rx(moment))


def idle(
    minutes: float,
    *,
    charger: str = "CP-01",
    online: bool = True,
    state: ConnectorState = ConnectorState.AVAILABLE,
) -> ChargerStatus:
    moment = at(minutes)
    return ChargerStatus(
        charger_id=charger,
        online=online,
        state=state,
        vehicle_connected=False,
        last_seen=_rx(moment),
    )


def charging(minutes: float, tx: str, *, charger: str = "CP-01") -> ChargerStatus:
    moment = at(minutes)
    return ChargerStatus(
        charger_id=charger,
        online=True,
        state=ConnectorState.CHARGING,
        vehicle_connected=True,
        transaction_id=tx,
        last_seen=_rx(moment),
    )


def sequential_ids() -> Callable[[], UUID]:
    """Deterministic UUIDs 00000000-…-000000000001, …002, … (injected id generator)."""
    counter: Iterator[int] = itertools.count(1)
    return lambda: UUID(int=next(counter))
