"""An in-memory stand-in for the ledger's session lookups, to drive the pure state machine."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from uuid import UUID

from controller.sessions.machine import Outcome, Step, apply
from controller.sessions.model import Session
from drivers.contracts import ChargerEvent


class MemoryBook:
    """Sessions by id, with the same lookup rules as controller.sessions.ledger.LedgerTx."""

    def __init__(self, new_id: Callable[[], UUID]) -> None:
        self.sessions: dict[UUID, Session] = {}
        self._order: list[UUID] = []
        self.new_id = new_id
        self.outcomes: Counter[Outcome] = Counter()
        self.history: list[Session] = []

    def find_by_transaction(self, charger_id: str, transaction_id: str) -> Session | None:
        matches = [
            s
            for s in (self.sessions[i] for i in self._order)
            if s.charger_id == charger_id and s.transaction_id == transaction_id
        ]
        return max(matches, key=lambda s: s.started_utc, default=None)

    def open_session(self, charger_id: str) -> Session | None:
        for sid in reversed(self._order):
            s = self.sessions[sid]
            if s.charger_id == charger_id and s.active:
                return s
        return None

    def feed(self, event: ChargerEvent) -> Step:
        by_tx = (
            None
            if event.transaction_id is None
            else self.find_by_transaction(event.charger_id, event.transaction_id)
        )
        step = apply(
            event,
            by_transaction=by_tx,
            open_on_charger=self.open_session(event.charger_id),
            new_id=self.new_id,
        )
        for s in step.changes:
            old = self.sessions.get(s.session_id)
            assert old is None or s.version == old.version + 1, "every change raises the version by one"
            if old is None:
                self._order.append(s.session_id)
            self.sessions[s.session_id] = s
            self.history.append(s)
        self.outcomes.update(step.outcomes)
        return step

    def feed_all(self, events: Iterable[ChargerEvent]) -> None:
        for event in events:
            self.feed(event)

    def final(self) -> list[Session]:
        return [self.sessions[i] for i in self._order]
