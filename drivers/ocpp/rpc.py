"""OCPP-J framing (CALL, CALLRESULT, CALLERROR) and schema validation, strict about hostile input.

Parsing is stricter than the `ocpp` library's `unpack`: NaN/Infinity are refused (they are not JSON),
the MessageTypeId must be an integer, the unique id a string of at most 36 characters, and every
failure says which CallError code to answer with and which counter to bump. Validation uses the
`ocpp` library's JSON schemas for both versions.
"""

from __future__ import annotations

import decimal
import json
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from ocpp.messages import get_validator

Version = Literal["1.6", "2.0.1"]

CALL: Final = 2
CALL_RESULT: Final = 3
CALL_ERROR: Final = 4
MAX_UNIQUE_ID_CHARS: Final = 36
UNREADABLE_ID: Final = "-1"  # the message id of a CALLERROR answering a message whose id can't be read

# Counter names (CentralSystem.counters). Stable: the daemon exports them.
C_BAD_JSON: Final = "bad_json"
C_BAD_FRAME: Final = "bad_frame"
C_BAD_MESSAGE_TYPE: Final = "bad_message_type"
C_UNKNOWN_ACTION: Final = "unknown_action"
C_SCHEMA_VIOLATIONS: Final = "schema_violations"
C_BAD_VALUES: Final = "bad_values"
C_OVERSIZE: Final = "oversize"
C_HANDLER_ERRORS: Final = "handler_errors"
C_UNEXPECTED_RESPONSES: Final = "unexpected_responses"
C_INVALID_RESPONSES: Final = "invalid_responses"
C_CALL_TIMEOUTS: Final = "call_timeouts"
C_CALL_ERRORS_RECEIVED: Final = "call_errors_received"

C_MESSAGES_IN: Final = "messages_in"
C_MESSAGES_OUT: Final = "messages_out"

# 1.6 spells two codes differently from 2.0.1 (the 1.6 specification's own spelling).
_CODES_16: Final = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
    "RpcFrameworkError": "ProtocolError",
    "MessageTypeNotSupported": "NotSupported",
}

# 1.6 payloads whose decimals the schemas constrain (multipleOf 0.1) must be checked as Decimal; the
# `ocpp` library caches one validator per schema, so this follows the library's own choice exactly.
_DECIMAL_16: Final = {
    (CALL, "SetChargingProfile"),
    (CALL, "RemoteStartTransaction"),
    (CALL_RESULT, "GetCompositeSchedule"),
}


def error_code(version: Version, code: str) -> str:
    """The CallError code `code` (2.0.1 spelling) as the given version spells it."""
    return _CODES_16.get(code, code) if version == "1.6" else code


@dataclass(frozen=True, slots=True)
class Call:
    unique_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallResult:
    unique_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallError:
    unique_id: str
    code: str
    description: str
    details: dict[str, Any] = field(default_factory=dict)


Frame = Call | CallResult | CallError


class OcppFault(Exception):
    """A message we answer with a CALLERROR. `code` is in the 2.0.1 spelling; `counter` is bumped."""

    def __init__(
        self, code: str, description: str, counter: str, unique_id: str = UNREADABLE_ID, *, reply: bool = True
    ) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.counter = counter
        self.unique_id = unique_id
        # A broken CALLRESULT/CALLERROR is not answered: errors about errors can ping-pong forever.
        self.reply = reply


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_frame(raw: str | bytes) -> Frame:
    """Parse one websocket message; raises OcppFault with the code to answer and the counter to bump."""
    if isinstance(raw, bytes):
        raise OcppFault("FormatViolation", "OCPP-J messages are text frames", C_BAD_JSON)
    try:
        msg = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise OcppFault("FormatViolation", f"not valid JSON: {exc}", C_BAD_JSON) from None
    if not isinstance(msg, list) or not msg:
        raise OcppFault("RpcFrameworkError", "an OCPP-J message is a non-empty JSON array", C_BAD_FRAME)
    unique_id = msg[1] if len(msg) > 1 and isinstance(msg[1], str) else None
    reply_id = unique_id if unique_id and len(unique_id) <= MAX_UNIQUE_ID_CHARS else UNREADABLE_ID
    type_id = msg[0]
    if type(type_id) is not int or type_id not in (CALL, CALL_RESULT, CALL_ERROR):
        raise OcppFault(
            "MessageTypeNotSupported",
            f"MessageTypeId {type_id!r} is not 2, 3 or 4",
            C_BAD_MESSAGE_TYPE,
            reply_id,
        )
    if unique_id is None or not unique_id or len(unique_id) > MAX_UNIQUE_ID_CHARS:
        raise OcppFault(
            "RpcFrameworkError",
            "the message id must be a string of 1-36 characters",
            C_BAD_FRAME,
            reply=type_id == CALL,
        )
    if type_id == CALL:
        if len(msg) != 4 or not isinstance(msg[2], str) or not isinstance(msg[3], dict):
            raise OcppFault(
                "RpcFrameworkError", "a CALL is [2, id, action, {payload}]", C_BAD_FRAME, reply_id
            )
        return Call(unique_id, msg[2], msg[3])
    if type_id == CALL_RESULT:
        if len(msg) != 3 or not isinstance(msg[2], dict):
            raise OcppFault(
                "RpcFrameworkError", "a CALLRESULT is [3, id, {payload}]", C_BAD_FRAME, reply_id, reply=False
            )
        return CallResult(unique_id, msg[2])
    if (
        len(msg) != 5
        or not isinstance(msg[2], str)
        or not isinstance(msg[3], str)
        or not isinstance(msg[4], dict)
    ):
        raise OcppFault(
            "RpcFrameworkError",
            "a CALLERROR is [4, id, code, description, {details}]",
            C_BAD_FRAME,
            reply_id,
            reply=False,
        )
    return CallError(unique_id, msg[2], msg[3], msg[4])


def _dumps(message: list[Any]) -> str:
    return json.dumps(message, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def call_frame(unique_id: str, action: str, payload: dict[str, Any]) -> str:
    return _dumps([CALL, unique_id, action, payload])


def result_frame(unique_id: str, payload: dict[str, Any]) -> str:
    return _dumps([CALL_RESULT, unique_id, payload])


def error_frame(
    version: Version, unique_id: str, code: str, description: str, details: dict[str, Any] | None = None
) -> str:
    # The description is for humans; keep it short so a hostile input is never echoed back in full.
    return _dumps([CALL_ERROR, unique_id, error_code(version, code), description[:200], details or {}])


_SCHEMA_CODES: Final = {
    "type": "TypeConstraintViolation",
    "required": "OccurrenceConstraintViolation",
    "additionalProperties": "FormatViolation",
}


def validate(version: Version, message_type: int, action: str, payload: dict[str, Any]) -> None:
    """Check a payload against the OCPP JSON schema; raises OcppFault (counter schema_violations)."""
    decimals = version == "1.6" and (message_type, action) in _DECIMAL_16
    try:
        validator = get_validator(
            message_type, action, version, parse_float=decimal.Decimal if decimals else float
        )
    except OSError:
        raise OcppFault("NotImplemented", f"no schema for {action}", C_UNKNOWN_ACTION) from None
    instance = json.loads(json.dumps(payload), parse_float=decimal.Decimal) if decimals else payload
    error: Any = next(iter(validator.iter_errors(instance)), None)
    if error is None:
        return
    code = _SCHEMA_CODES.get(str(error.validator), "PropertyConstraintViolation")
    where = "/".join(str(p) for p in error.absolute_path) or "payload"
    raise OcppFault(code, f"{action}: {where}: {error.message[:120]}", C_SCHEMA_VIOLATIONS)
