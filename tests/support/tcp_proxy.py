"""A loopback TCP proxy whose network can be blocked (bytes stop flowing) or cut (connections reset)."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self


class TcpProxy:
    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        self.connections = 0

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def block(self) -> None:
        """Stop forwarding: like a dead link, nothing arrives and nothing is refused."""
        self._flowing.clear()

    def unblock(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        """Reset every open connection."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            try:
                upstream_r, upstream_w = await asyncio.open_connection("127.0.0.1", self._upstream_port)
            except OSError:
                client_w.transport.abort()
                return
            self._writers.update((client_w, upstream_w))
            async with asyncio.TaskGroup() as pumps:
                pumps.create_task(self._pump(client_r, upstream_w, client_w))
                pumps.create_task(self._pump(upstream_r, client_w, upstream_w))
        finally:
            self._tasks.discard(task)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, source_w: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                await self._flowing.wait()
                data = await source.read(65536)
                if not data:
                    break
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            for w in (sink, source_w):
                w.transport.abort()
                self._writers.discard(w)
                with contextlib.suppress(Exception):
                    w.close()
