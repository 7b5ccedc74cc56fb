"""OCPP-J framing (RPC over WebSocket), written from the specification for both 1.6J and 2.0.1.

Frames are JSON arrays: CALL `[2, id, action, payload]`, CALLRESULT `[3, id, payload]`, CALLERROR
`[4, id, code, description, details]`. The error codes differ between the versions (1.6 spells
"FormationViolation" and "OccurenceConstraintViolation"; 2.0.1 has "FormatViolation",
"OccurrenceConstraintViolation", "RpcFrameworkError", "MessageTypeNotSupported").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

Version = Literal["1.6", "2.0.1"]
Payload = dict[str, Any]

SUBPROTOCOL: dict[Version, str] = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}

ERROR_CODES: dict[Version, frozenset[str]] = {
    "1.6": frozenset(
        {
            "NotImplemented",
            "NotSupported",
            "InternalError",
            "ProtocolError",
            "SecurityError",
            "FormationViolation",
            "PropertyConstraintViolation",
            "OccurenceConstraintViolation",
            "TypeConstraintViolation",
            "GenericError",
        }
    ),
    "2.0.1": frozenset(
        {
            "FormatViolation",
            "GenericError",
            "InternalError",
            "MessageTypeNotSupported",
            "NotImplemented",
            "NotSupported",
            "OccurrenceConstraintViolation",
            "PropertyConstraintViolation",
            "ProtocolError",
            "RpcFrameworkError",
            "SecurityError",
            "TypeConstraintViolation",
        }
    ),
}


def format_error(version: Version) -> str:
    """The code for a payload that is not what the action requires."""
    return "FormationViolation" if version == "1.6" else "FormatViolation"


def require(payload: Payload, name: str, kind: type | tuple[type, ...], version: Version) -> Any:
    """A required field of the right JSON type, or the CallError the version names for it (1.6
    spells it "Occurence", as its specification does)."""
    if name not in payload:
        code = "OccurenceConstraintViolation" if version == "1.6" else "OccurrenceConstraintViolation"
        raise OcppError(code, f"{name} is required")
    value = payload[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise OcppError("TypeConstraintViolation", f"{name} has the wrong type")
    return value


def framing_error(version: Version) -> str:
    """The code for a frame that is not an OCPP-J message at all."""
    return "ProtocolError" if version == "1.6" else "RpcFrameworkError"


@dataclass(frozen=True, slots=True)
class Call:
    unique_id: str
    action: str
    payload: Payload


@dataclass(frozen=True, slots=True)
class CallResult:
    unique_id: str
    payload: Payload


@dataclass(frozen=True, slots=True)
class CallError:
    unique_id: str
    code: str
    description: str = ""
    details: Payload = field(default_factory=dict)


Frame = Call | CallResult | CallError


class FrameError(Exception):
    """A frame that cannot be parsed. `unique_id` is known when the array was readable that far."""

    def __init__(self, message: str, unique_id: str | None = None) -> None:
        super().__init__(message)
        self.unique_id = unique_id


class OcppError(Exception):
    """Raised by a handler to answer a CALL with a CALLERROR."""

    def __init__(self, code: str, description: str = "", details: Payload | None = None) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details or {}


def decode(text: str | bytes) -> Frame:
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FrameError(f"not JSON: {exc}") from None
    if not isinstance(data, list) or len(data) < 3:
        raise FrameError("not an OCPP-J array")
    kind, unique_id = data[0], data[1]
    if not isinstance(unique_id, str) or not unique_id or len(unique_id) > 36:
        raise FrameError("message id must be a string of 1-36 characters")
    if kind == 2:
        if len(data) != 4 or not isinstance(data[2], str) or not isinstance(data[3], dict):
            raise FrameError("CALL must be [2, id, action, {payload}]", unique_id)
        return Call(unique_id, data[2], data[3])
    if kind == 3:
        if len(data) != 3 or not isinstance(data[2], dict):
            raise FrameError("CALLRESULT must be [3, id, {payload}]", unique_id)
        return CallResult(unique_id, data[2])
    if kind == 4:
        if len(data) != 5 or not isinstance(data[2], str) or not isinstance(data[3], str):
            raise FrameError("CALLERROR must be [4, id, code, description, {details}]", unique_id)
        details = data[4] if isinstance(data[4], dict) else {}
        return CallError(unique_id, data[2], data[3], details)
    raise FrameError(f"unknown message type {kind!r}", unique_id)


def encode(frame: Frame) -> str:
    if isinstance(frame, Call):
        body: list[Any] = [2, frame.unique_id, frame.action, frame.payload]
    elif isinstance(frame, CallResult):
        body = [3, frame.unique_id, frame.payload]
    else:
        body = [4, frame.unique_id, frame.code, frame.description, frame.details]
    return json.dumps(body, separators=(",", ":"))
