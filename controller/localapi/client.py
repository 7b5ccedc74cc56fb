"""The `sitectl` side of the local control API. Imports nothing heavy, so CLI commands start fast."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Any

from controller.localapi.protocol import INTERNAL_ERROR, encode

CLIENT_LIMIT_BYTES = 64 * 1024 * 1024  # answers (snapshots of big sites) may be large


class DaemonUnreachable(Exception):
    """The control socket cannot be used: `sitectl` prints the message and exits 1."""


class DaemonNotRunning(DaemonUnreachable):
    pass


class RemoteError(Exception):
    """The daemon answered with an error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


async def call(
    socket_path: Path, method: str, params: Mapping[str, Any] | None = None, *, timeout_s: float = 30.0
) -> Any:
    """Call `method` on the running daemon and return its result.

    Raises DaemonNotRunning ("daemon not running (no socket at ...)"), DaemonUnreachable (e.g. no
    permission), RemoteError for an error answer, TimeoutError after `timeout_s`.
    """
    async with asyncio.timeout(timeout_s):
        reader, writer = await _connect(socket_path)
        try:
            writer.write(_request_line(1, method, params))
            await writer.drain()
            answer = await _read_answer(reader, 1)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                await writer.wait_closed()
    if "error" in answer:
        raise _remote_error(answer["error"])
    return answer.get("result")


async def stream(
    socket_path: Path,
    method: str,
    params: Mapping[str, Any] | None = None,
    *,
    connect_timeout_s: float = 10.0,
) -> AsyncGenerator[Any, None]:
    """Call a stream method; yields each event until the daemon ends the stream. Closing the
    generator (leaving `async for`) closes the connection, which stops the stream on the daemon."""
    async with asyncio.timeout(connect_timeout_s):
        reader, writer = await _connect(socket_path)
    try:
        writer.write(_request_line(1, method, params))
        await writer.drain()
        while True:
            answer = await _read_answer(reader, 1)
            if "event" in answer:
                yield answer["event"]
            elif "error" in answer:
                raise _remote_error(answer["error"])
            else:
                return
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, BrokenPipeError):
            await writer.wait_closed()


async def _connect(socket_path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.open_unix_connection(str(socket_path), limit=CLIENT_LIMIT_BYTES)
    except FileNotFoundError:
        raise DaemonNotRunning(f"daemon not running (no socket at {socket_path})") from None
    except ConnectionRefusedError:
        raise DaemonNotRunning(f"daemon not running (stale socket at {socket_path})") from None
    except PermissionError:
        raise DaemonUnreachable(
            f"permission denied on {socket_path} (is this user in the control socket's group?)"
        ) from None


def _request_line(request_id: int, method: str, params: Mapping[str, Any] | None) -> bytes:
    return encode({"id": request_id, "method": method, "params": dict(params or {})})


async def _read_answer(reader: asyncio.StreamReader, request_id: int) -> dict[str, Any]:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError:
        raise DaemonUnreachable("the daemon closed the connection without answering") from None
    try:
        answer = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DaemonUnreachable(f"unreadable answer from the daemon: {exc}") from None
    if not isinstance(answer, dict):
        raise DaemonUnreachable("unreadable answer from the daemon: not an object")
    if answer.get("id") not in (request_id, None):
        raise DaemonUnreachable(f"answer to another request: {answer.get('id')!r}")
    return answer


def _remote_error(error: Any) -> RemoteError:
    if isinstance(error, dict):
        return RemoteError(str(error.get("code", INTERNAL_ERROR)), str(error.get("message", "")))
    return RemoteError(INTERNAL_ERROR, str(error))
