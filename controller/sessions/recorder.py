"""Charger events → session versions in the ledger: the state machine plus storage, and counters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import structlog

from drivers.contracts import ChargerEvent, Clock

from .ledger import Ledger, LedgerTx
from .machine import Outcome, Step, apply
from .periods import DEFAULT_ZONE

log = structlog.get_logger(__name__)

# Outcomes worth a log line of their own; the rest are visible in the counters.
_NOTABLE = frozenset(
    {
        Outcome.STARTED,
        Outcome.STOPPED,
        Outcome.SUPERSEDED,
        Outcome.TRANSACTION_LOST,
        Outcome.INFERRED_STOP_COMPLETED,
        Outcome.REGISTER_BACKWARDS,
        Outcome.UNKNOWN_STOP,
        Outcome.BAD_EVENT,
    }
)


class SessionRecorder:
    """Applies charger events to the ledger, each event in one transaction with its outbox rows."""

    def __init__(
        self,
        ledger: Ledger,
        clock: Clock,
        *,
        new_session_id: Callable[[], UUID] = uuid4,
        new_msg_id: Callable[[], UUID] = uuid4,
        zone: ZoneInfo = DEFAULT_ZONE,
    ) -> None:
        self._ledger = ledger
        self._clock = clock
        self._new_session_id = new_session_id
        self._new_msg_id = new_msg_id
        self._zone = zone
        self._counters: Counter[Outcome] = Counter()

    @property
    def counters(self) -> Mapping[Outcome, int]:
        return dict(self._counters)

    async def handle(self, event: ChargerEvent) -> Step:
        async with self._ledger.transaction() as tx:
            step = await self._apply(tx, event)
        self._count(event, step)
        return step

    async def handle_many(self, events: Iterable[ChargerEvent]) -> list[Step]:
        """Apply a burst of events in one transaction (one fsync instead of one per event)."""
        steps: list[tuple[ChargerEvent, Step]] = []
        async with self._ledger.transaction() as tx:
            for event in events:
                steps.append((event, await self._apply(tx, event)))
        for event, step in steps:
            self._count(event, step)
        return [step for _, step in steps]

    async def _apply(self, tx: LedgerTx, event: ChargerEvent) -> Step:
        transaction_id = _transaction_of(event)
        by_transaction = (
            None if transaction_id is None else await tx.find_by_transaction(event.charger_id, transaction_id)
        )
        open_on_charger = await tx.open_session(event.charger_id)
        step = apply(
            event,
            by_transaction=by_transaction,
            open_on_charger=open_on_charger,
            new_id=self._new_session_id,
            zone=self._zone,
        )
        now = self._clock.utc_now()
        for session in step.changes:
            await tx.put_session(session, self._new_msg_id(), now)
        return step

    def _count(self, event: ChargerEvent, step: Step) -> None:
        for outcome in step.outcomes:
            self._counters[outcome] += 1
            if outcome in _NOTABLE:
                log.info(
                    f"session_{outcome.value}",
                    charger_id=event.charger_id,
                    transaction_id=_transaction_of(event),
                    session_ids=[str(s.session_id) for s in step.changes],
                    detail=step.detail or None,
                )


def _transaction_of(event: ChargerEvent) -> str | None:
    return event.transaction_id
