"""Charger events → session versions in the ledger: the state machine plus storage, and counters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import structlog

from drivers.contracts import ChargerEvent, Clock

from .ledger import Ledger
from .machine import Outcome, Step, apply
from .model import Session
from .periods import DEFAULT_ZONE

log = structlog.get_logger(__name__)

# Outcomes worth a log line of their own; the rest are visible in the counters.
_NOTABLE = frozenset(
    {
        Outcome.STARTED,
        Outcome.STOPPED,
        Outcome.SUPERSEDED,
        Outcome.TRANSACTION_LOST,
        Outcome.REOPENED,
        Outcome.INFERRED_STOP_COMPLETED,
        Outcome.REGISTER_BACKWARDS,
        Outcome.START_REGISTER_FROM_SAMPLE,
        Outcome.STOP_BELOW_START,
        Outcome.ENERGY_UNKNOWN,
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
        (step,) = await self.handle_many([event])
        return step

    async def handle_many(self, events: Iterable[ChargerEvent]) -> list[Step]:
        """Apply events in order, all in one transaction (one fsync for a burst)."""
        batch = list(events)
        steps: list[Step] = []
        async with self._ledger.transaction() as tx:
            by_transaction, open_on_charger = await tx.lookup(
                {(e.charger_id, e.transaction_id) for e in batch if e.transaction_id is not None},
                {e.charger_id for e in batch},
            )
            versions: list[tuple[Session, UUID]] = []
            for event in batch:
                step = apply(
                    event,
                    by_transaction=(
                        None
                        if event.transaction_id is None
                        else by_transaction.get((event.charger_id, event.transaction_id))
                    ),
                    open_on_charger=open_on_charger.get(event.charger_id),
                    new_id=self._new_session_id,
                    zone=self._zone,
                )
                for session in step.changes:
                    # Later events of the batch see this version, as they would after a commit.
                    by_transaction[(session.charger_id, session.transaction_id)] = session
                    current = open_on_charger.get(session.charger_id)
                    if session.active:
                        open_on_charger[session.charger_id] = session
                    elif current is not None and current.session_id == session.session_id:
                        del open_on_charger[session.charger_id]
                    versions.append((session, self._new_msg_id()))
                steps.append(step)
            await tx.write_versions(versions, self._clock.utc_now())
        for event, step in zip(batch, steps, strict=True):
            self._count(event, step)
        return steps

    def _count(self, event: ChargerEvent, step: Step) -> None:
        for outcome in step.outcomes:
            self._counters[outcome] += 1
            if outcome in _NOTABLE:
                log.info(
                    f"session_{outcome.value}",
                    charger_id=event.charger_id,
                    transaction_id=event.transaction_id,
                    session_ids=[str(s.session_id) for s in step.changes],
                    detail=step.detail or None,
                )
