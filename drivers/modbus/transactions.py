"""Sessions of a Modbus charger, from its vehicle state and energy register.

Most Modbus chargers know no transactions: a session starts when a car is plugged in (IEC 61851 B,
C or D), ends when it is unplugged (A), and its energy is the register at the stop less the
register at the start, with readings in between for the 15-minute periods. A charger fault (E, F)
does not end it: the car is still there. An open session survives a restart of the daemon (the
ledger resumes it, `resume`): if the car is still plugged in it goes on, if it left meanwhile it
ends at once with the register as it reads now, so what the car drew while the daemon was down is
billed to it.

Pure: readings and times in, transaction events out, in the order they must be recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from drivers.contracts import ChargerEvent, EnergySample, ReceiveTime, TransactionStarted, TransactionStopped

PLUGGED = frozenset({"B", "C", "D"})
UNPLUGGED = "A"


@dataclass(slots=True)
class OpenTransaction:
    transaction_id: str
    id_tag: str | None
    meter_start_wh: float | None
    last_sample_mono: float | None = None


class ModbusTransactions:
    def __init__(self, charger_id: str, new_id: Callable[[], str], *, sample_every_s: float = 10.0) -> None:
        self.charger_id = charger_id
        self._new_id = new_id
        self._sample_every_s = sample_every_s
        self.open: OpenTransaction | None = None

    def resume(self, transaction_id: str, id_tag: str | None, meter_start_wh: float | None) -> None:
        """A session the ledger holds open for this charger (after a restart of the daemon)."""
        self.open = OpenTransaction(transaction_id, id_tag, meter_start_wh)

    def observe(
        self, state: str | None, energy_wh: float | None, id_tag: str | None, received: ReceiveTime
    ) -> list[ChargerEvent]:
        """The transaction events one poll implies. `state` is the IEC letter (None: unreadable,
        which proves nothing); `energy_wh` the register (None: unreadable)."""
        if state is None:
            return []
        open_ = self.open
        if open_ is None:
            if state not in PLUGGED:
                return []
            transaction_id = self._new_id()
            self.open = OpenTransaction(transaction_id, id_tag, energy_wh, received.monotonic_s)
            return [
                TransactionStarted(
                    charger_id=self.charger_id,
                    transaction_id=transaction_id,
                    id_tag=id_tag,
                    meter_start_wh=energy_wh,
                    started_utc=received.utc,
                    received=received,
                )
            ]
        if state == UNPLUGGED:
            self.open = None
            return [
                TransactionStopped(
                    charger_id=self.charger_id,
                    transaction_id=open_.transaction_id,
                    id_tag=open_.id_tag,
                    meter_stop_wh=energy_wh,
                    stopped_utc=received.utc,
                    reason="EVDisconnected",
                    received=received,
                )
            ]
        if energy_wh is None:
            return []
        due = (
            open_.last_sample_mono is None
            or received.monotonic_s - open_.last_sample_mono >= self._sample_every_s
        )
        if not due:
            return []
        open_.last_sample_mono = received.monotonic_s
        return [
            EnergySample(
                charger_id=self.charger_id,
                transaction_id=open_.transaction_id,
                energy_register_wh=energy_wh,
                measured_utc=received.utc,
                received=received,
            )
        ]

    @property
    def transaction_id(self) -> str | None:
        return None if self.open is None else self.open.transaction_id

    @property
    def id_tag(self) -> str | None:
        return None if self.open is None else self.open.id_tag
