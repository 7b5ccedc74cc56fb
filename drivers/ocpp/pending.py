"""Chargers that connected with an identity nobody configured, held for the electrician (adoption).

A pending connection stays open: Boot is answered `Pending`, Heartbeat is answered, every other request
gets a `SecurityError`. What the charger said about itself (vendor, model, serial) is kept for
`sitectl chargers pending`. At most `max_pending` records are kept (the oldest go first) and at most
`max_pending` pending connections are open at once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from drivers.contracts import Clock
from drivers.ocpp import counters as c
from drivers.ocpp import rpc
from drivers.ocpp.counters import Counters
from drivers.ocpp.profiles import ocpp_time
from drivers.ocpp.session import Handler, Reply, RpcSession, Transport

CLOSE_REPLACED = 4000  # private-use close code: a newer connection with the same identity took over


@dataclass(frozen=True, slots=True)
class PendingCharger:
    """A charger that connected with an identity nobody configured (adoption mode)."""

    identity: str
    address: str
    first_seen_utc: datetime
    last_seen_utc: datetime
    subprotocol: str
    connected: bool
    vendor: str | None = None
    model: str | None = None
    serial: str | None = None


class _NotAdopted(Mapping[str, Handler]):
    """Routes for a pending charger: boot (answered Pending) and heartbeat; anything else refused."""

    def __init__(self, routes: dict[str, Handler]) -> None:
        self._routes = routes

    def __getitem__(self, action: str) -> Handler:
        return self._routes.get(action, _refuse_not_adopted)

    def __iter__(self) -> Iterator[str]:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)


def _refuse_not_adopted(payload: dict[str, Any]) -> Reply:
    raise rpc.OcppFault("SecurityError", "charger not adopted yet", c.C_PENDING_CALLS)


class PendingChargers:
    def __init__(
        self,
        clock: Clock,
        counters: Counters,
        max_pending: int,
        *,
        first_seen: Callable[[str, str], None],
        spawn_detached: Callable[[Coroutine[Any, Any, None], str], None],
    ) -> None:
        self._clock = clock
        self._counters = counters
        self._max_pending = max_pending
        self._first_seen = first_seen  # (identity, address) of a charger not seen before
        self._spawn_detached = spawn_detached
        self._records: OrderedDict[str, PendingCharger] = OrderedDict()
        self._sessions: dict[str, RpcSession] = {}

    def records(self) -> tuple[PendingCharger, ...]:
        return tuple(self._records.values())

    def full_for(self, identity: str) -> bool:
        """No room for another pending connection (one already known may always reconnect)."""
        return identity not in self._records and len(self._sessions) >= self._max_pending

    def adopted(self, identity: str) -> RpcSession | None:
        """Forget `identity`; its open pending connection, if any, for the caller to close."""
        self._records.pop(identity, None)
        return self._sessions.pop(identity, None)

    async def serve(
        self,
        transport: Transport,
        identity: str,
        version: rpc.Version,
        address: str,
        subprotocol: str,
        receive: Callable[[RpcSession], Awaitable[None]],
    ) -> None:
        now = self._clock.utc_now()
        known = self._records.get(identity)
        if known is None:
            self._records[identity] = PendingCharger(identity, address, now, now, subprotocol, True)
        else:
            self._records[identity] = replace(
                known, address=address, last_seen_utc=now, subprotocol=subprotocol, connected=True
            )
        while len(self._records) > self._max_pending:
            self._records.popitem(last=False)
        if known is None:
            self._first_seen(identity, address)

        def boot(payload: dict[str, Any]) -> Reply:
            station_info = payload.get("chargingStation", {})
            entry = self._records.get(identity)
            if entry is not None:
                self._records[identity] = replace(
                    entry,
                    last_seen_utc=self._clock.utc_now(),
                    vendor=payload.get("chargePointVendor", station_info.get("vendorName")),
                    model=payload.get("chargePointModel", station_info.get("model")),
                    serial=payload.get("chargePointSerialNumber", station_info.get("serialNumber")),
                )
            return {"status": "Pending", "currentTime": ocpp_time(self._clock.utc_now()), "interval": 60}

        def heartbeat(payload: dict[str, Any]) -> Reply:
            return {"currentTime": ocpp_time(self._clock.utc_now())}

        session = RpcSession(
            identity,
            version,
            transport,
            _NotAdopted({"BootNotification": boot, "Heartbeat": heartbeat}),
            self._counters,
            self._clock,
            remote_address=address,
        )
        old = self._sessions.get(identity)
        if old is not None:
            self._spawn_detached(
                old.close(CLOSE_REPLACED, "replaced by a newer connection"), "ocpp-close-old-pending"
            )
        self._sessions[identity] = session
        try:
            await receive(session)
        finally:
            session.mark_closed()
            if self._sessions.get(identity) is session:
                del self._sessions[identity]
                entry = self._records.get(identity)
                if entry is not None:
                    self._records[identity] = replace(
                        entry, last_seen_utc=self._clock.utc_now(), connected=False
                    )
