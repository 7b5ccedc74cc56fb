"""Replays and reordering (hypothesis): duplicates never create, lose or double-count energy."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import replace
from pathlib import Path
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.sessions.ledger import Ledger
from controller.sessions.model import Session, SessionFlag
from controller.sessions.recorder import SessionRecorder
from drivers.clock import SystemClock
from drivers.contracts import ChargerEvent, EnergySample, TransactionStarted, TransactionStopped
from tests.support.charger_events import sample, sequential_ids, start, stop
from tests.support.session_book import MemoryBook
from tests.unit.test_session_machine import assert_periods_add_up

CHARGERS = ("CP-01", "CP-02", "CP-03")


@st.composite
def charger_history(
    draw: st.DrawFn, charger: str, truth: dict[str, tuple[int, int]] | None = None
) -> list[ChargerEvent]:
    """Sessions on one charger in time order: start, rising samples, stop (sometimes missing).

    Starts and stops sometimes carry no register (OCPP 2.0.1 allows that). `truth`, when given,
    receives each transaction's real register at its start and at its stop (or last reading).
    """
    events: list[ChargerEvent] = []
    minute = draw(st.floats(min_value=0, max_value=60))
    register = draw(st.integers(min_value=0, max_value=10_000_000))
    for n in range(draw(st.integers(min_value=1, max_value=3))):
        tx = f"{charger}-{n}"
        first = register
        events.append(start(tx, minute, None if draw(st.integers(0, 4)) == 0 else register, charger=charger))
        for _ in range(draw(st.integers(min_value=0, max_value=6))):
            minute += draw(st.floats(min_value=0.5, max_value=45))
            register += draw(st.integers(min_value=0, max_value=20_000))
            events.append(sample(tx, minute, register, charger=charger))
        minute += draw(st.floats(min_value=0.5, max_value=45))
        register += draw(st.integers(min_value=0, max_value=20_000))
        if draw(st.booleans()) or n == 0:
            bare = draw(st.integers(0, 4)) == 0
            events.append(stop(tx, minute, None if bare else register, charger=charger))
        if truth is not None:
            truth[tx] = (first, register)
        minute += draw(st.floats(min_value=0, max_value=120))
    return events


def _event_time(e: ChargerEvent) -> float:
    if isinstance(e, TransactionStarted):
        return e.started_utc.timestamp()
    if isinstance(e, EnergySample):
        return e.measured_utc.timestamp()
    assert isinstance(e, TransactionStopped)
    return e.stopped_utc.timestamp()


@st.composite
def site_history(draw: st.DrawFn) -> list[ChargerEvent]:
    per_charger = [draw(charger_history(c)) for c in CHARGERS[: draw(st.integers(1, len(CHARGERS)))]]
    merged = [e for events in per_charger for e in events]
    return sorted(merged, key=_event_time)  # stable: one charger's own order is kept


@st.composite
def with_replays(draw: st.DrawFn, events: list[ChargerEvent]) -> list[ChargerEvent]:
    """The events with copies of earlier events delivered again later (first deliveries in order)."""
    out = list(events)
    for _ in range(draw(st.integers(min_value=0, max_value=2 * len(events)))):
        source = draw(st.integers(min_value=0, max_value=len(out) - 1))
        target = draw(st.integers(min_value=source + 1, max_value=len(out)))
        out.insert(target, out[source])
    return out


def _final(events: list[ChargerEvent]) -> MemoryBook:
    book = MemoryBook(sequential_ids())
    book.feed_all(events)
    return book


@given(data=st.data(), events=site_history())
def test_replayed_events_give_the_same_final_sessions(
    data: st.DataObject, events: list[ChargerEvent]
) -> None:
    replayed = data.draw(with_replays(events))
    assert _final(replayed).final() == _final(events).final()


def _without_ids(book: MemoryBook) -> list[Session]:
    nil = UUID(int=0)
    return sorted(
        (replace(s, session_id=nil) for s in book.final()),
        key=lambda s: (s.charger_id, s.started_utc, s.transaction_id),
    )


@given(data=st.data())
def test_any_interleaving_of_chargers_with_replays_gives_the_same_sessions(data: st.DataObject) -> None:
    # Chargers are independent: however their streams interleave (and whatever is replayed), each
    # charger's sessions come out the same; only the order in which ids are minted differs.
    streams = [data.draw(charger_history(c)) for c in CHARGERS]
    reference = _final([e for stream in streams for e in stream])
    positions = [0] * len(streams)
    interleaved: list[ChargerEvent] = []
    while any(p < len(s) for p, s in zip(positions, streams, strict=True)):
        ready = [i for i, s in enumerate(streams) if positions[i] < len(s)]
        pick = data.draw(st.sampled_from(ready))
        interleaved.append(streams[pick][positions[pick]])
        positions[pick] += 1
    shuffled = _final(data.draw(with_replays(interleaved)))
    assert _without_ids(shuffled) == _without_ids(reference)


@given(data=st.data(), events=charger_history("CP-01"))
def test_reordered_samples_keep_the_session_energy_and_exact_sums(
    data: st.DataObject, events: list[ChargerEvent]
) -> None:
    # Inside each session shuffle the samples (start first, stop last): late samples are dropped,
    # but the session's energy comes from its start and stop, and the periods still add up. (A
    # charger's messages arrive in order; reordering is what a faulty relay could do.)
    shuffled: list[ChargerEvent] = []
    block: list[ChargerEvent] = []
    for e in events:
        if isinstance(e, EnergySample):
            block.append(e)
            continue
        shuffled.extend(data.draw(st.permutations(block)))
        block = []
        shuffled.append(e)
    shuffled.extend(data.draw(st.permutations(block)))
    in_order = _final(events).final()
    reordered = _final(shuffled).final()
    assert len(reordered) == len(in_order)
    for a, b in zip(in_order, reordered, strict=True):
        assert (a.session_id, a.transaction_id) == (b.session_id, b.transaction_id)
        assert_periods_add_up(a)
        assert_periods_add_up(b)
        if SessionFlag.START_REGISTER_MISSING in a.flags:
            # A bare start takes the first sample to arrive: a late one arriving first can only
            # lose energy (the earlier ones are then stale), never add any.
            if a.meter_start_wh is not None and b.meter_start_wh is not None:
                assert b.meter_start_wh >= a.meter_start_wh
            if not a.active and b.energy_wh is not None:
                assert a.energy_wh is not None and b.energy_wh <= a.energy_wh
            continue
        assert a.meter_start_wh == b.meter_start_wh
        if not a.active:
            assert b.energy_wh == a.energy_wh
            assert b.stopped_utc == a.stopped_utc


@given(data=st.data())
def test_a_session_never_bills_more_than_its_register_moved(data: st.DataObject) -> None:
    # Whatever registers the charger leaves out, and whatever is replayed: the energy is unknown
    # or between 0 and what the register really moved during the transaction.
    truth: dict[str, tuple[int, int]] = {}
    events = data.draw(charger_history("CP-01", truth))
    for session in _final(data.draw(with_replays(events))).final():
        assert_periods_add_up(session)
        first, last = truth[session.transaction_id]
        if session.energy_wh is not None:
            assert 0 <= session.energy_wh <= last - first
            assert session.meter_start_wh is not None and session.meter_start_wh >= first


async def _through_ledger(events: list[ChargerEvent], folder: Path, batch: int) -> list[object]:
    async with await Ledger.open(folder / "ledger.sqlite") as ledger:
        recorder = SessionRecorder(ledger, SystemClock(), new_session_id=sequential_ids())
        for i in range(0, len(events), batch):
            # Batches see their own earlier changes exactly as separate transactions would.
            await recorder.handle_many(events[i : i + batch])
        return list(await ledger.list_sessions())


@settings(max_examples=25)
@given(data=st.data(), events=site_history())
def test_the_ledger_applies_replays_like_the_pure_machine(
    data: st.DataObject, events: list[ChargerEvent]
) -> None:
    replayed = data.draw(with_replays(events))
    batch = data.draw(st.sampled_from([1, 3, 1000]))
    with tempfile.TemporaryDirectory() as folder:
        stored = asyncio.run(_through_ledger(replayed, Path(folder), batch))
    assert stored == sorted(_final(events).final(), key=lambda s: (s.started_utc, s.session_id.int))
