"""A broker front that speaks only MQTT 3.1.1, as older brokers do: it refuses a version-5 CONNECT
with the 3.1.1 CONNACK "unacceptable protocol version" and pipes 3.1.1 connections to a real broker."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self


class Mqtt311Front:
    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.refused_v5 = 0

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            # CONNECT: fixed header, remaining length (1 byte for small packets), "\x00\x04MQTT", level.
            head = await reader.readexactly(9)
            if head[8] != 4:
                self.refused_v5 += 1
                writer.write(b"\x20\x02\x00\x01")
                await writer.drain()
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
            up_writer.write(head)
            try:
                async with asyncio.TaskGroup() as pipes:
                    pipes.create_task(_pipe(reader, up_writer))
                    pipes.create_task(_pipe(up_reader, writer))
            finally:
                up_writer.transport.abort()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
            self._tasks.discard(task)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.transport.abort()
