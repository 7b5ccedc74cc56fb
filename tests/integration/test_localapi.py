"""The local control socket, served and called over real Unix sockets."""

from __future__ import annotations

import asyncio
import grp
import json
import math
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.localapi.client import DaemonNotRunning, RemoteError, call, stream
from controller.localapi.server import ApiError, ControlServer, MethodRegistry, Params
from tests.support import subprocess_env

pytestmark = pytest.mark.integration


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # pytest's tmp_path can exceed the 108-byte limit of a Unix socket path.
    path = Path(tempfile.mkdtemp(prefix="sitectl-", dir="/tmp"))
    yield path
    shutil.rmtree(path)


@pytest.fixture
def registry() -> MethodRegistry:
    registry = MethodRegistry()

    async def status(params: Params) -> Any:
        return {"online": True, "chargers": 12, "echo": params.get("echo")}

    class AdoptParams(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid")
        charger_id: str
        fuse: str

    async def adopt(params: Params) -> Any:
        request = AdoptParams.model_validate(params)
        if request.fuse == "nowhere":
            raise ApiError("unknown_fuse", f"no fuse {request.fuse!r}")
        return {"adopted": request.charger_id}

    async def crash(params: Params) -> Any:
        raise RuntimeError("boom")

    async def not_json(params: Params) -> Any:
        return {"value": object()} if params.get("kind") == "object" else {"value": math.nan}

    async def hang(params: Params) -> Any:
        await asyncio.Event().wait()

    registry.add("status", status)
    registry.add("adopt", adopt)
    registry.add("crash", crash)
    registry.add("not_json", not_json)
    registry.add("hang", hang)
    return registry


@pytest.fixture
async def server(socket_dir: Path, registry: MethodRegistry) -> AsyncIterator[ControlServer]:
    async with ControlServer(socket_dir / "run" / "control.sock", registry, call_timeout_s=0.2) as server:
        yield server


class RawClient:
    """A client speaking the wire format by hand, to send what `call` never would."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> Any:
        return json.loads(await asyncio.wait_for(self.reader.readline(), 5))

    async def at_eof(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 5) == b""

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
async def raw(server: ControlServer) -> AsyncIterator[RawClient]:
    client = RawClient(*await asyncio.open_unix_connection(str(server.path)))
    yield client
    await client.close()


# -------------------------------------------------------------------------------- socket and files


async def test_socket_is_mode_0660_in_a_private_directory(server: ControlServer) -> None:
    mode = os.stat(server.path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660
    assert stat.S_IMODE(os.stat(server.path.parent).st_mode) == 0o750
    assert [p.name for p in server.path.parent.iterdir()] == ["control.sock"]  # no temporary left


async def test_socket_group(socket_dir: Path, registry: MethodRegistry) -> None:
    candidates = [g for g in os.getgroups() if g != os.getegid()] if os.geteuid() != 0 else []
    group = grp.getgrnam("dialout") if os.geteuid() == 0 else grp.getgrgid((candidates or [os.getegid()])[0])
    async with ControlServer(socket_dir / "control.sock", registry, group=group.gr_name) as server:
        assert os.stat(server.path).st_gid == group.gr_gid


async def test_unknown_group_is_refused(socket_dir: Path, registry: MethodRegistry) -> None:
    server = ControlServer(socket_dir / "control.sock", registry, group="no-such-group-here")
    with pytest.raises(ValueError, match="group 'no-such-group-here' does not exist"):
        await server.start()
    assert not (socket_dir / "control.sock").exists()


async def test_close_removes_the_socket(socket_dir: Path, registry: MethodRegistry) -> None:
    async with ControlServer(socket_dir / "control.sock", registry) as server:
        assert server.path.exists()
    assert not server.path.exists()


async def test_stale_socket_is_replaced(socket_dir: Path, registry: MethodRegistry) -> None:
    path = socket_dir / "control.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))  # bound, never listening: what a crashed daemon leaves
    async with ControlServer(path, registry):
        assert (await call(path, "status"))["online"] is True


async def test_live_socket_is_not_taken_over(server: ControlServer, registry: MethodRegistry) -> None:
    with pytest.raises(RuntimeError, match="another daemon"):
        await ControlServer(server.path, registry).start()
    assert (await call(server.path, "status"))["online"] is True


async def test_a_file_in_the_way_is_left_alone(socket_dir: Path, registry: MethodRegistry) -> None:
    path = socket_dir / "control.sock"
    path.write_text("not a socket")
    with pytest.raises(FileExistsError):
        await ControlServer(path, registry).start()
    assert path.read_text() == "not a socket"


async def test_close_leaves_a_successors_socket(socket_dir: Path, registry: MethodRegistry) -> None:
    path = socket_dir / "control.sock"
    server = ControlServer(path, registry)
    await server.start()
    path.unlink()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as successor:
        successor.bind(str(path))
        await server.close()
        assert path.exists()


def test_socket_path_too_long(registry: MethodRegistry) -> None:
    with pytest.raises(ValueError, match="too long"):
        ControlServer(Path("/run/" + "x" * 120), registry)


# ------------------------------------------------------------------------------------------- calls


async def test_round_trip(server: ControlServer) -> None:
    assert await call(server.path, "status", {"echo": "ø"}) == {"online": True, "chargers": 12, "echo": "ø"}
    assert server.counters.requests == 1
    assert server.counters.errors == 0


async def test_handler_error_answer(server: ControlServer) -> None:
    with pytest.raises(RemoteError) as caught:
        await call(server.path, "adopt", {"charger_id": "CP-9", "fuse": "nowhere"})
    assert (caught.value.code, caught.value.message) == ("unknown_fuse", "no fuse 'nowhere'")
    assert await call(server.path, "adopt", {"charger_id": "CP-9", "fuse": "c01"}) == {"adopted": "CP-9"}


async def test_invalid_params_from_pydantic(server: ControlServer) -> None:
    with pytest.raises(RemoteError) as caught:
        await call(server.path, "adopt", {"charger_id": "CP-9", "fuse_id": "c01"})
    assert caught.value.code == "invalid_params"
    assert "fuse: Field required" in caught.value.message
    assert "fuse_id: Extra inputs are not permitted" in caught.value.message


async def test_unknown_method(server: ControlServer) -> None:
    with pytest.raises(RemoteError) as caught:
        await call(server.path, "reboot")
    assert caught.value.code == "method_not_found"
    assert server.counters.errors == 1


async def test_crashing_handler_is_an_error_not_a_crash(server: ControlServer) -> None:
    with pytest.raises(RemoteError) as caught:
        await call(server.path, "crash")
    assert caught.value.code == "internal_error"
    assert "RuntimeError: boom" in caught.value.message
    assert (await call(server.path, "status"))["online"] is True


@pytest.mark.parametrize("kind", ["object", "nan"])
async def test_result_that_is_not_json(server: ControlServer, kind: str) -> None:
    with pytest.raises(RemoteError) as caught:
        await call(server.path, "not_json", {"kind": kind})
    assert caught.value.code == "internal_error"
    assert "not JSON" in caught.value.message


async def test_handler_timeout(server: ControlServer) -> None:
    with pytest.raises(RemoteError) as caught:
        await call(server.path, "hang")
    assert caught.value.code == "timeout"
    assert server.counters.timeouts == 1


async def test_concurrent_clients(socket_dir: Path) -> None:
    clients = 20
    arrived = 0
    everyone = asyncio.Event()
    registry = MethodRegistry()

    async def rendezvous(params: Params) -> Any:
        # Answers only when every client is inside a call at once: serial serving would hang.
        nonlocal arrived
        arrived += 1
        if arrived == clients:
            everyone.set()
        await everyone.wait()
        return params["n"]

    registry.add("rendezvous", rendezvous)
    async with ControlServer(socket_dir / "control.sock", registry, max_connections=clients) as server:
        results = await asyncio.gather(*(call(server.path, "rendezvous", {"n": n}) for n in range(clients)))
        assert results == list(range(clients))
        assert server.counters.connections == clients


async def test_pipelined_requests_answered_in_order(raw: RawClient) -> None:
    await raw.send(b"".join(json.dumps({"id": n, "method": "status"}).encode() + b"\n" for n in range(5)))
    assert [(await raw.answer())["id"] for _ in range(5)] == list(range(5))


# -------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("line", "answer_id", "code"),
    [
        (b"{not json\n", None, "parse_error"),
        (b"\xff\xfe\n", None, "parse_error"),
        (b"[1, 2]\n", None, "invalid_request"),
        (b'{"id": true, "method": "status"}\n', None, "invalid_request"),
        (b'{"id": [1], "method": "status"}\n', None, "invalid_request"),
        (b'{"id": 7}\n', 7, "invalid_request"),
        (b'{"id": 7, "method": 3}\n', 7, "invalid_request"),
        (b'{"id": "a", "method": "status", "params": [1]}\n', "a", "invalid_request"),
        (b'{"id": 8, "method": "status", "parms": {}}\n', 8, "invalid_request"),
    ],
)
async def test_malformed_request_gets_an_error_and_is_counted(
    server: ControlServer, raw: RawClient, line: bytes, answer_id: Any, code: str
) -> None:
    await raw.send(line)
    answer = await raw.answer()
    assert answer["id"] == answer_id
    assert answer["error"]["code"] == code
    assert server.counters.malformed == 1
    # The connection stays usable after a malformed line.
    await raw.send(b'{"id": 2, "method": "status"}\n')
    assert (await raw.answer())["result"]["online"] is True


async def test_blank_lines_are_ignored(server: ControlServer, raw: RawClient) -> None:
    await raw.send(b'\n  \n{"id": 1, "method": "status"}\n')
    assert (await raw.answer())["id"] == 1
    assert server.counters.malformed == 0


async def test_oversized_request(socket_dir: Path, registry: MethodRegistry) -> None:
    async with ControlServer(socket_dir / "control.sock", registry, max_request_bytes=1024) as server:
        client = RawClient(*await asyncio.open_unix_connection(str(server.path)))
        try:
            await client.send(b'{"id": 1, "method": "status", "params": {"x": "' + b"a" * 5000 + b'"}}\n')
            answer = await client.answer()
            assert answer["error"]["code"] == "request_too_large"
            assert await client.at_eof()
        finally:
            await client.close()
        assert server.counters.oversize == 1
        assert (await call(server.path, "status"))["online"] is True


async def test_idle_connection_is_closed(socket_dir: Path, registry: MethodRegistry) -> None:
    async with ControlServer(socket_dir / "control.sock", registry, idle_timeout_s=0.05) as server:
        client = RawClient(*await asyncio.open_unix_connection(str(server.path)))
        try:
            await client.send(b'{"id": 1, "meth')  # never finished
            assert (await client.answer())["error"]["code"] == "timeout"
            assert await client.at_eof()
        finally:
            await client.close()
        assert server.counters.timeouts == 1


async def test_too_many_connections(socket_dir: Path, registry: MethodRegistry) -> None:
    async with ControlServer(socket_dir / "control.sock", registry, max_connections=1) as server:
        first = RawClient(*await asyncio.open_unix_connection(str(server.path)))
        try:
            await first.send(b'{"id": 1, "method": "status"}\n')
            await first.answer()  # the first connection is being served
            with pytest.raises(RemoteError) as caught:
                await call(server.path, "status")
            assert caught.value.code == "busy"
            assert server.counters.refused == 1
        finally:
            await first.close()


async def test_client_disconnect_mid_call_does_not_hurt(server: ControlServer, raw: RawClient) -> None:
    await raw.send(b'{"id": 1, "method": "hang"}\n')
    await raw.close()
    assert (await call(server.path, "status"))["online"] is True


# ----------------------------------------------------------------------------------------- streams


async def test_stream_events_then_end(socket_dir: Path) -> None:
    registry = MethodRegistry()

    async def watch(params: Params) -> AsyncGenerator[Any, None]:
        for n in range(params["count"]):
            yield {"n": n}

    registry.add_stream("watch", watch)
    async with ControlServer(socket_dir / "control.sock", registry) as server:
        assert [e async for e in stream(server.path, "watch", {"count": 3})] == [{"n": 0}, {"n": 1}, {"n": 2}]
        # The connection-level protocol continues after a stream ends.
        client = RawClient(*await asyncio.open_unix_connection(str(server.path)))
        try:
            await client.send(b'{"id": 1, "method": "watch", "params": {"count": 1}}\n')
            answers = [await client.answer() for _ in range(2)]
            await client.send(b'{"id": 2, "method": "watch", "params": {"count": 0}}\n')
            answers.append(await client.answer())
        finally:
            await client.close()
        assert answers == [{"id": 1, "event": {"n": 0}}, {"id": 1, "result": None}, {"id": 2, "result": None}]


async def test_stream_stops_when_the_client_leaves(socket_dir: Path) -> None:
    registry = MethodRegistry()
    closed = asyncio.Event()

    async def watch(params: Params) -> AsyncGenerator[Any, None]:
        try:
            yield "first"
            await asyncio.Event().wait()  # nothing more to say for a long time
            yield "never"
        finally:
            closed.set()

    registry.add_stream("watch", watch)
    async with ControlServer(socket_dir / "control.sock", registry) as server:
        events = stream(server.path, "watch")
        assert await anext(events) == "first"
        await events.aclose()
        await asyncio.wait_for(closed.wait(), 5)


async def test_sending_during_a_stream_ends_it(socket_dir: Path) -> None:
    registry = MethodRegistry()
    closed = asyncio.Event()

    async def watch(params: Params) -> AsyncGenerator[Any, None]:
        try:
            yield "first"
            await asyncio.Event().wait()
            yield "never"
        finally:
            closed.set()

    registry.add_stream("watch", watch)
    async with ControlServer(socket_dir / "control.sock", registry) as server:
        client = RawClient(*await asyncio.open_unix_connection(str(server.path)))
        try:
            await client.send(b'{"id": 1, "method": "watch"}\n')
            assert await client.answer() == {"id": 1, "event": "first"}
            await client.send(b'{"id": 2, "method": "status"}\n')
            await asyncio.wait_for(closed.wait(), 5)
            assert await client.at_eof()
        finally:
            await client.close()


async def test_stream_error_after_events(socket_dir: Path) -> None:
    registry = MethodRegistry()

    async def watch(params: Params) -> AsyncGenerator[Any, None]:
        yield 1
        raise ApiError("meter_gone", "the meter went away")

    registry.add_stream("watch", watch)
    async with ControlServer(socket_dir / "control.sock", registry) as server:
        events = stream(server.path, "watch")
        assert await anext(events) == 1
        with pytest.raises(RemoteError) as caught:
            await anext(events)
        assert caught.value.code == "meter_gone"


def test_method_names_are_unique(registry: MethodRegistry) -> None:
    async def other(params: Params) -> AsyncGenerator[Any, None]:
        yield None

    with pytest.raises(ValueError, match="already registered"):
        registry.add_stream("status", other)
    assert registry.names() == ["adopt", "crash", "hang", "not_json", "status"]


# ------------------------------------------------------------------------------------ no daemon


async def test_daemon_not_running(socket_dir: Path) -> None:
    path = socket_dir / "control.sock"
    with pytest.raises(DaemonNotRunning) as caught:
        await call(path, "status")
    assert str(caught.value) == f"daemon not running (no socket at {path})"


async def test_daemon_died_leaving_its_socket(socket_dir: Path) -> None:
    path = socket_dir / "control.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(path))
    with pytest.raises(DaemonNotRunning, match="daemon not running \\(stale socket at"):
        await call(path, "status")


# ------------------------------------------------------------------------------- hostile clients

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
REQUEST_LIKE = st.fixed_dictionaries(
    {},
    optional={
        "id": JSON_VALUES,
        "method": st.sampled_from(["status", "adopt", "crash", "nope", ""]) | JSON_VALUES,
        "params": JSON_VALUES,
        "extra": JSON_VALUES,
    },
)
LINES = st.one_of(
    st.binary(max_size=300),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    REQUEST_LIKE.map(lambda v: json.dumps(v).encode()),
).map(lambda line: line.replace(b"\n", b" "))


@given(st.lists(LINES, min_size=1, max_size=8))
def test_any_input_gets_one_answer_per_line_and_the_server_survives(lines: list[bytes]) -> None:
    async def scenario() -> None:
        socket_dir = Path(tempfile.mkdtemp(prefix="sitectl-", dir="/tmp"))
        registry = MethodRegistry()

        async def status(params: Params) -> Any:
            return {"online": True}

        async def crash(params: Params) -> Any:
            raise RuntimeError("boom")

        registry.add("status", status)
        registry.add("crash", crash)
        try:
            async with ControlServer(socket_dir / "control.sock", registry) as server:
                client = RawClient(*await asyncio.open_unix_connection(str(server.path)))
                try:
                    await client.send(b"".join(line + b"\n" for line in lines))
                    for line in lines:
                        if not line.strip():
                            continue
                        answer = await client.answer()
                        assert set(answer) in ({"id", "result"}, {"id", "error"}), answer
                        if "error" in answer:
                            assert isinstance(answer["error"]["code"], str)
                            assert isinstance(answer["error"]["message"], str)
                finally:
                    await client.close()
                assert await call(server.path, "status") == {"online": True}
                answered = sum(1 for line in lines if line.strip())
                assert server.counters.requests == answered + 1
        finally:
            shutil.rmtree(socket_dir)

    asyncio.run(scenario())


def test_client_imports_stay_light() -> None:
    """`sitectl status` on a Pi should not pay for pydantic or structlog just to ask the daemon."""
    probe = (
        "import sys, controller.localapi.client; print(sorted({'pydantic', 'structlog'} & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=subprocess_env(), timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
