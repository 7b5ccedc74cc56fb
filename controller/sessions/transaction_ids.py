"""OCPP 1.6 transaction ids, handed out by the central system and kept in the ledger's database.

A charger that does not hear the answer to StartTransaction sends it again; it must get the same
id back, or the site would bill one charge twice. A new start gets an id never handed out before,
also across restarts: the table uses AUTOINCREMENT, which never reuses an id, not even a deleted one.
"""

from __future__ import annotations

import json
from datetime import datetime

from .ledger import Ledger, db_time


class OcppTransactionIds:
    """The transaction-id store of drivers/ocpp, backed by the ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def id_for_start(
        self, charger_id: str, id_tag: str | None, meter_start_wh: float, started_utc: datetime
    ) -> int:
        """The id for this start: the same start again → the same id; a new start → a new id."""
        key = json.dumps([charger_id, id_tag, repr(float(meter_start_wh)), db_time(started_utc)])
        async with self._ledger.transaction() as tx:
            await tx.db.execute(
                "INSERT OR IGNORE INTO ocpp_transactions "
                "(start_key, charger_id, id_tag, meter_start_wh, started_utc) VALUES (?, ?, ?, ?, ?)",
                (key, charger_id, id_tag, float(meter_start_wh), db_time(started_utc)),
            )
            async with tx.db.execute(
                "SELECT transaction_id FROM ocpp_transactions WHERE start_key = ?", (key,)
            ) as cursor:
                row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def stop(self, transaction_id: int, meter_stop_wh: float, stopped_utc: datetime) -> bool:
        """Record the stop; False if this transaction was already stopped.

        A stop for an id this box never handed out (a charger that started offline, or a ledger
        restored from an old backup) is recorded and answered True, so the caller still reports it;
        the id is then taken and never handed out for a start.
        """
        async with self._ledger.transaction() as tx:
            cursor = await tx.db.execute(
                "UPDATE ocpp_transactions SET meter_stop_wh = ?, stopped_utc = ? "
                "WHERE transaction_id = ? AND stopped_utc IS NULL",
                (float(meter_stop_wh), db_time(stopped_utc), transaction_id),
            )
            if cursor.rowcount == 1:
                return True
            async with tx.db.execute(
                "SELECT 1 FROM ocpp_transactions WHERE transaction_id = ?", (transaction_id,)
            ) as check:
                known = await check.fetchone()
            if known is not None:
                return False
            await tx.db.execute(
                "INSERT INTO ocpp_transactions (transaction_id, start_key, charger_id, meter_stop_wh, "
                "stopped_utc) VALUES (?, ?, '', ?, ?)",
                (
                    transaction_id,
                    f"unknown-start:{transaction_id}",
                    float(meter_stop_wh),
                    db_time(stopped_utc),
                ),
            )
            return True
