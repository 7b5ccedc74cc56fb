"""Counters of everything that went wrong (and a few things that went right) on the OCPP listener."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from drivers.ocpp import rpc

C_AUTH_FAILURES = "auth_failures"
C_UNKNOWN_IDENTITY = "unknown_identity"
C_RATE_LIMITED = "rate_limited"
C_BAD_PATH = "bad_path"
C_BAD_SUBPROTOCOL = "bad_subprotocol"
C_TOO_MANY_CONNECTIONS = "too_many_connections"
C_PENDING_REFUSED = "pending_refused"
C_LOGINS_BUSY = "logins_busy"
C_ONBOARDING_BUSY = "onboarding_busy"
C_DUPLICATE_REPLACED = "duplicate_replaced"
C_CONNECTIONS = "connections"
C_UNKNOWN_CONNECTOR = "unknown_connector"
C_UNKNOWN_TRANSACTIONS = "unknown_transactions"
C_REPLAYED_STARTS = "replayed_starts"
C_REPLAYED_STOPS = "replayed_stops"
C_SINK_ERRORS = "sink_errors"
C_PROVISIONING_FAILURES = "provisioning_failures"
C_PENDING_CALLS = "pending_calls_refused"
C_RECORD_FAILURES = "record_failures"
C_TRANSACTIONS_GONE = "transactions_gone"

NAMES: tuple[str, ...] = (
    rpc.C_MESSAGES_IN,
    rpc.C_MESSAGES_OUT,
    rpc.C_BAD_JSON,
    rpc.C_BAD_FRAME,
    rpc.C_BAD_MESSAGE_TYPE,
    rpc.C_UNKNOWN_ACTION,
    rpc.C_SCHEMA_VIOLATIONS,
    rpc.C_BAD_VALUES,
    rpc.C_OVERSIZE,
    rpc.C_HANDLER_ERRORS,
    rpc.C_UNEXPECTED_RESPONSES,
    rpc.C_INVALID_RESPONSES,
    rpc.C_CALL_TIMEOUTS,
    rpc.C_CALL_ERRORS_RECEIVED,
    C_AUTH_FAILURES,
    C_UNKNOWN_IDENTITY,
    C_RATE_LIMITED,
    C_BAD_PATH,
    C_BAD_SUBPROTOCOL,
    C_TOO_MANY_CONNECTIONS,
    C_PENDING_REFUSED,
    C_LOGINS_BUSY,
    C_ONBOARDING_BUSY,
    C_DUPLICATE_REPLACED,
    C_CONNECTIONS,
    C_UNKNOWN_CONNECTOR,
    C_UNKNOWN_TRANSACTIONS,
    C_REPLAYED_STARTS,
    C_REPLAYED_STOPS,
    C_SINK_ERRORS,
    C_PROVISIONING_FAILURES,
    C_PENDING_CALLS,
    C_RECORD_FAILURES,
    C_TRANSACTIONS_GONE,
)


class Counters(Mapping[str, int]):
    """A read-only mapping for readers; `inc` for the listener. Every known name starts at 0."""

    def __init__(self) -> None:
        self._values = dict.fromkeys(NAMES, 0)

    def inc(self, name: str, n: int = 1) -> None:
        self._values[name] = self._values.get(name, 0) + n

    def __getitem__(self, name: str) -> int:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)
