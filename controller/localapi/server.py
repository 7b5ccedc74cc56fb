"""The daemon's side of the local control API: a `MethodRegistry` served on a Unix socket.

Access control is the file system: the socket is mode 0660 (owner and one group) in a directory the
daemon owns (systemd's RuntimeDirectory). A request larger than `max_request_bytes`, a connection idle
longer than `idle_timeout_s`, malformed JSON and handler failures get an error answer and a counter;
none of them can stop the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import json
import os
import socket
import stat
import struct
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pydantic
import structlog

from controller.localapi.protocol import (
    BUSY,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    REQUEST_TOO_LARGE,
    TIMEOUT,
    UnencodableMessage,
    encode,
)

log = structlog.get_logger(__name__)

Params = Mapping[str, Any]
UnaryHandler = Callable[[Params], Awaitable[Any]]
StreamHandler = Callable[[Params], AsyncGenerator[Any, None]]

SOCKET_MODE = 0o660
DIRECTORY_MODE = 0o750
MAX_SOCKET_PATH_BYTES = 107  # sun_path is 108 bytes including the terminating NUL


class ApiError(Exception):
    """Raised by a handler to answer with an error; `code` is a short machine-readable word."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class MethodRegistry:
    """The methods the daemon offers. Handlers take the request's params and return JSON values."""

    def __init__(self) -> None:
        self._unary: dict[str, UnaryHandler] = {}
        self._stream: dict[str, StreamHandler] = {}

    def add(self, name: str, handler: UnaryHandler) -> None:
        self._check_new(name)
        self._unary[name] = handler

    def add_stream(self, name: str, handler: StreamHandler) -> None:
        """A method that yields events until it returns or the client disconnects."""
        self._check_new(name)
        self._stream[name] = handler

    def names(self) -> list[str]:
        return sorted([*self._unary, *self._stream])

    def unary(self, name: str) -> UnaryHandler | None:
        return self._unary.get(name)

    def stream(self, name: str) -> StreamHandler | None:
        return self._stream.get(name)

    def _check_new(self, name: str) -> None:
        if not name or name in self._unary or name in self._stream:
            raise ValueError(f"method name {name!r} is empty or already registered")


@dataclass(slots=True)
class ApiCounters:
    connections: int = 0
    requests: int = 0
    malformed: int = 0
    oversize: int = 0
    timeouts: int = 0
    errors: int = 0
    """Error answers of any kind, including the malformed, oversize and timed-out ones."""
    refused: int = 0
    """Connections turned away because `max_connections` were open."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class ControlServer:
    """Serves a `MethodRegistry` on a Unix stream socket. Use as `async with ControlServer(...):`."""

    def __init__(
        self,
        path: Path,
        registry: MethodRegistry,
        *,
        group: str | None = None,
        max_request_bytes: int = 64 * 1024,
        idle_timeout_s: float = 60.0,
        call_timeout_s: float = 30.0,
        max_connections: int = 32,
    ) -> None:
        if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES - 16:  # room for the temporary name
            raise ValueError(f"control socket path too long for a Unix socket: {path}")
        self.path = path
        self.registry = registry
        self.group = group
        self.max_request_bytes = max_request_bytes
        self.idle_timeout_s = idle_timeout_s
        self.call_timeout_s = call_timeout_s
        self.max_connections = max_connections
        self.counters = ApiCounters()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._inode: int | None = None

    async def start(self) -> None:
        gid = _group_id(self.group) if self.group is not None else None
        self.path.parent.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        _refuse_live_socket(self.path)
        # Bind under a temporary name, set mode and group, then rename over the final name: nobody
        # can connect before the permissions are right (listen() comes last), and a stale socket
        # left by a crash is replaced atomically.
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(temporary))
            os.chmod(temporary, SOCKET_MODE)
            if gid is not None:
                os.chown(temporary, -1, gid)
            os.replace(temporary, self.path)
            self._inode = os.stat(self.path).st_ino
            sock.listen(self.max_connections)
            self._server = await asyncio.start_unix_server(
                self._accept, sock=sock, limit=self.max_request_bytes
            )
        except BaseException:
            sock.close()
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        log.info("control_socket_listening", path=str(self.path), group=self.group)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        self._unlink_own_socket()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _unlink_own_socket(self) -> None:
        # Only our own socket: a successor daemon may already have replaced it.
        try:
            if self._inode is not None and os.stat(self.path).st_ino == self._inode:
                self.path.unlink()
        except FileNotFoundError:
            pass
        self._inode = None

    # ------------------------------------------------------------------------------------ serving

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.counters.connections += 1
        peer = _peer(writer)
        try:
            if len(self._connections) >= self.max_connections:
                self.counters.refused += 1
                await self._send_error(writer, None, BUSY, "too many control connections")
                return
            self._connections.add(task)
            await self._serve(reader, writer, peer)
        except (ConnectionError, BrokenPipeError):
            pass  # the client went away; nothing to answer
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                await writer.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Mapping[str, int]
    ) -> None:
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout_s):
                    line = await reader.readuntil(b"\n")
            except TimeoutError:
                self.counters.timeouts += 1
                await self._send_error(writer, None, TIMEOUT, f"no request within {self.idle_timeout_s:g} s")
                return
            except asyncio.LimitOverrunError:
                self.counters.oversize += 1
                log.warning("control_request_too_large", limit_bytes=self.max_request_bytes, **peer)
                await self._send_error(
                    writer, None, REQUEST_TOO_LARGE, f"request exceeds {self.max_request_bytes} bytes"
                )
                return  # the rest of the oversized line cannot be told from the next request
            except asyncio.IncompleteReadError:
                return  # end of input (a last line without newline is not a request)
            if line.strip() and not await self._request(line, reader, writer, peer):
                return

    async def _request(
        self, line: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Mapping[str, int]
    ) -> bool:
        """Answer one request line; False when the connection should end."""
        self.counters.requests += 1
        try:
            request = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            return await self._malformed(writer, None, PARSE_ERROR, f"not JSON: {exc}", peer)
        if not isinstance(request, dict):
            return await self._malformed(writer, None, INVALID_REQUEST, "a request is a JSON object", peer)
        request_id = request.get("id")
        if isinstance(request_id, bool) or not isinstance(request_id, str | int | None):
            return await self._malformed(
                writer, None, INVALID_REQUEST, "id must be a string or integer", peer
            )
        method = request.get("method")
        params = request.get("params", {})
        unknown = set(request) - {"id", "method", "params"}
        if not isinstance(method, str) or not method:
            return await self._malformed(writer, request_id, INVALID_REQUEST, "method must be a string", peer)
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return await self._malformed(
                writer, request_id, INVALID_REQUEST, "params must be an object", peer
            )
        if unknown:
            message = f"unknown request keys: {', '.join(sorted(unknown))}"
            return await self._malformed(writer, request_id, INVALID_REQUEST, message, peer)

        log.info("control_call", method=method, **peer)
        unary = self.registry.unary(method)
        if unary is not None:
            await self._call(unary, method, request_id, params, writer)
            return True
        streamer = self.registry.stream(method)
        if streamer is not None:
            return await self._stream(streamer, method, request_id, params, reader, writer)
        await self._send_error(writer, request_id, METHOD_NOT_FOUND, f"no method {method!r}")
        return True

    async def _call(
        self,
        handler: UnaryHandler,
        method: str,
        request_id: Any,
        params: Params,
        writer: asyncio.StreamWriter,
    ) -> None:
        try:
            async with asyncio.timeout(self.call_timeout_s):
                result = await handler(params)
            payload = encode({"id": request_id, "result": result})
        except Exception as exc:  # every failure becomes an error answer
            code, message = self._failure(method, exc)
            await self._send_error(writer, request_id, code, message)
            return
        writer.write(payload)
        await writer.drain()

    async def _stream(
        self,
        handler: StreamHandler,
        method: str,
        request_id: Any,
        params: Params,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        async def pump() -> None:
            events = handler(params)
            try:
                async for event in events:
                    writer.write(encode({"id": request_id, "event": event}))
                    await writer.drain()
            finally:
                await events.aclose()
            writer.write(encode({"id": request_id, "result": None}))
            await writer.drain()

        pumping = asyncio.create_task(pump(), name=f"control-stream-{method}")
        # A client says it is done by closing (or by sending anything): stop the stream then, even
        # when the handler has nothing to send for a long time.
        hangup = asyncio.create_task(reader.read(1), name=f"control-stream-hangup-{method}")
        try:
            await asyncio.wait({pumping, hangup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pumping, hangup):
                task.cancel()
            await asyncio.gather(pumping, hangup, return_exceptions=True)
        if not pumping.done() or pumping.cancelled():
            return False
        exc = pumping.exception()
        if exc is None:
            return not hangup.done() or hangup.cancelled()
        if isinstance(exc, ConnectionError | BrokenPipeError):
            return False
        code, message = self._failure(method, exc)
        await self._send_error(writer, request_id, code, message)
        return False

    def _failure(self, method: str, exc: BaseException) -> tuple[str, str]:
        if isinstance(exc, ApiError):
            return exc.code, exc.message
        if isinstance(exc, pydantic.ValidationError):
            return INVALID_PARAMS, _validation_message(exc)
        if isinstance(exc, TimeoutError):
            self.counters.timeouts += 1
            return TIMEOUT, f"{method} did not finish within {self.call_timeout_s:g} s"
        if isinstance(exc, UnencodableMessage):
            log.error("control_result_not_json", method=method, error=str(exc))
            return INTERNAL_ERROR, f"{method} produced a result that is not JSON: {exc}"
        log.error("control_handler_failed", method=method, exc_info=exc)
        return INTERNAL_ERROR, f"{method} failed: {type(exc).__name__}: {exc}"

    async def _malformed(
        self, writer: asyncio.StreamWriter, request_id: Any, code: str, message: str, peer: Mapping[str, int]
    ) -> bool:
        self.counters.malformed += 1
        log.warning("control_request_malformed", code=code, message=message, **peer)
        await self._send_error(writer, request_id, code, message)
        return True

    async def _send_error(
        self, writer: asyncio.StreamWriter, request_id: Any, code: str, message: str
    ) -> None:
        self.counters.errors += 1
        writer.write(encode({"id": request_id, "error": {"code": code, "message": message}}))
        await writer.drain()


def _validation_message(exc: pydantic.ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'params'}: {error['msg']}" for error in exc.errors()
    )


def _group_id(group: str) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"control socket group {group!r} does not exist") from None


def _refuse_live_socket(path: Path) -> None:
    """Refuse to take over a socket another daemon is serving; anything but a socket is left alone."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(errno.EEXIST, "exists and is not a socket", str(path))
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return  # stale: left by a daemon that died
    finally:
        probe.close()
    raise RuntimeError(f"another daemon is serving the control socket {path}")


def _peer(writer: asyncio.StreamWriter) -> dict[str, int]:
    """The connecting process's pid, uid and gid (SO_PEERCRED), for the audit log."""
    sock = writer.get_extra_info("socket")
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (AttributeError, OSError):
        return {}
    pid, uid, gid = struct.unpack("3i", raw)
    return {"peer_pid": pid, "peer_uid": uid, "peer_gid": gid}
