"""OCPP 1.6 transaction ids: integers the CSMS hands out, stable across replays and daemon restarts.

A charger that lost our StartTransaction reply sends the same start again; it must get the same id
back, and a new start must get an id never used before. The daemon supplies a SQLite-backed
implementation; `InMemoryTransactionIds` serves tests and small setups without persistence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class TransactionIds(Protocol):
    async def id_for_start(
        self, charger_id: str, id_tag: str | None, meter_start_wh: float, started_utc: datetime
    ) -> int:
        """The id for this start: the same start again -> the same id; a new one -> a fresh id."""
        ...

    async def stop(self, transaction_id: int, meter_stop_wh: float, stopped_utc: datetime) -> bool:
        """Record the stop. False if the transaction was already stopped (or is unknown)."""
        ...


@dataclass(frozen=True, slots=True)
class _Start:
    charger_id: str
    id_tag: str | None
    meter_start_wh: float
    started_utc: datetime


class InMemoryTransactionIds:
    """Ids from `first_id` upwards; forgets everything when the process ends."""

    def __init__(self, first_id: int = 1) -> None:
        self._next = first_id
        self._by_start: dict[_Start, int] = {}
        self._starts: dict[int, _Start] = {}
        self._stopped: set[int] = set()

    async def id_for_start(
        self, charger_id: str, id_tag: str | None, meter_start_wh: float, started_utc: datetime
    ) -> int:
        start = _Start(charger_id, id_tag, meter_start_wh, started_utc)
        existing = self._by_start.get(start)
        if existing is not None:
            return existing
        transaction_id = self._next
        self._next += 1
        self._by_start[start] = transaction_id
        self._starts[transaction_id] = start
        return transaction_id

    async def stop(self, transaction_id: int, meter_stop_wh: float, stopped_utc: datetime) -> bool:
        if transaction_id not in self._starts or transaction_id in self._stopped:
            return False
        self._stopped.add(transaction_id)
        return True
