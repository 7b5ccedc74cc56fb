"""Wire format of the local control API: one JSON object per line each way (see the package doc)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

PARSE_ERROR = "parse_error"
INVALID_REQUEST = "invalid_request"
METHOD_NOT_FOUND = "method_not_found"
INVALID_PARAMS = "invalid_params"
REQUEST_TOO_LARGE = "request_too_large"
TIMEOUT = "timeout"
BUSY = "busy"
INTERNAL_ERROR = "internal_error"


class UnencodableMessage(ValueError):
    """A message that JSON cannot carry (an object, NaN, infinity)."""


def encode(message: Mapping[str, Any]) -> bytes:
    """One line: compact, UTF-8, strict JSON (no NaN), newline-terminated."""
    try:
        text = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UnencodableMessage(str(exc)) from None
    return text.encode("utf-8") + b"\n"
