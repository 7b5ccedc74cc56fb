"""Commissioning a new charger against the running daemon: pending → `sitectl chargers adopt` → reload.

The electrician's path on site: the charger is pointed at the box and waits as pending; `sitectl
chargers pending` shows it; `sitectl chargers adopt` writes it into the site file and has the daemon
reload; the charger, given its password, gets in and receives its safe profile. A reload of a broken
file is refused and the daemon keeps running on what it had.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
from pathlib import Path

import pytest
import websockets

from controller.app import Daemon, Tuning, serve
from controller.settings import load_settings
from drivers.clock import SystemClock
from tests.integration.ocpp_support import PASSWORD_HASH, connected, eventually
from tests.support import free_tcp_port, sitectl_argv, subprocess_env

pytestmark = [pytest.mark.integration, pytest.mark.hil, pytest.mark.usefixtures("no_site_env")]

SITE = """\
[site]
id = "adopt"

[grid]
type = "IT"

[[fuses]]
id = "main"
limit_a = 63

[[fuses]]
id = "c1"
parent = "main"
limit_a = 32

[ocpp]
listen = "127.0.0.1:{ocpp_port}"
adoption = true

[[chargers]]
id = "OLD-1"
protocol = "ocpp"
fuse = "c1"
lines = ["L1", "L2", "L3"]
max_a = 16
safe_current_a = 6
password_hash = "{password_hash}"

[storage]
path = "{folder}/ledger.sqlite"

[control]
socket_path = "{folder}/control.sock"
"""


async def sitectl(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *sitectl_argv(*args),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=subprocess_env(),
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_pending_charger_is_adopted_and_gets_in_after_the_reload(
    tmp_path: Path,
) -> None:
    site_file = tmp_path / "site.toml"
    port = free_tcp_port()
    site_file.write_text(SITE.format(ocpp_port=port, password_hash=PASSWORD_HASH, folder=tmp_path))
    url = f"ws://127.0.0.1:{port}/ocpp"

    daemons: list[Daemon] = []
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(
            load_settings(site_file, {}),
            SystemClock(),
            stop,
            load=lambda: load_settings(site_file, {}),
            tuning=Tuning(tick_s=0.5, command_timeout_s=3.0),
            started=daemons.append,
        ),
        name="daemon-under-test",
    )
    try:
        await eventually(lambda: bool(daemons) and daemons[0].ready.is_set(), timeout_s=15)

        # A charger nobody configured waits as pending, with the password it came with.
        async with connected(url, "NEW-7", password="factory-default-pw-1") as pending:
            assert await pending.boot() == "Pending"
            code, out, err = await sitectl("chargers", "pending", "--config", str(site_file))
            assert code == 0, err
            assert out.startswith("NEW-7 ")

            code, out, err = await sitectl(
                "chargers", "adopt", "NEW-7", "--config", str(site_file),
                "--fuse", "c1", "--lines", "L1,L2,L3", "--max-a", "16", "--safe-a", "6",
            )  # fmt: skip
            assert code == 0, err
            assert "daemon reloading: 2 chargers configured" in out
            match = re.search(r"only its hash is stored\): (\S+)", out)
            assert match is not None
            password = match.group(1)
            # The reload restarts the daemon in place: the pending connection is closed.
            async with asyncio.timeout(20):
                await pending._connection.wait_closed()  # the ocpp library's handle on the socket

        await eventually(lambda: len(daemons) == 2 and daemons[1].ready.is_set(), timeout_s=20)
        # Its old password no longer gets it anywhere; the new one makes it a configured charger.
        with pytest.raises(websockets.InvalidStatus):
            async with connected(url, "NEW-7", password="factory-default-pw-1"):
                pass
        async with connected(url, "NEW-7", password=password) as charger:
            await charger.boot_until_accepted()
            profiles = charger.rec.profiles
            await eventually(lambda: any(p["stack_level"] == 0 for _, p in profiles), timeout_s=10)
            safe = next(p for _, p in profiles if p["stack_level"] == 0)
            assert safe["charging_schedule"]["charging_schedule_period"][0]["limit"] == 6
        assert [c.id for c in daemons[1].settings.chargers] == ["OLD-1", "NEW-7"]

        # A broken file is refused: the daemon keeps running on the configuration it has.
        good = site_file.read_text()
        site_file.write_text(good.replace("limit_a = 63", "limit_a = -63"))
        code, out, err = await sitectl("reload", "--config", str(site_file))
        assert code == 2
        assert "refused" in err and "limit_a" in err
        await asyncio.sleep(1.0)
        assert len(daemons) == 2 and not task.done()
        code, out, err = await sitectl("status", "--config", str(site_file))
        assert code == 0, err
        assert "NEW-7" in out
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await task


async def test_sighup_reloads_the_daemon_process_as_systemctl_reload_does(
    tmp_path: Path,
) -> None:
    # `sitectl run` as systemd runs it: a real process, notifications on a datagram socket. A charger
    # written in with --no-reload is taken in by SIGHUP (ExecReload), announced RELOADING=1, READY=1.
    site_file = tmp_path / "site.toml"
    site_file.write_text(SITE.format(ocpp_port=free_tcp_port(), password_hash=PASSWORD_HASH, folder=tmp_path))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.setblocking(False)
    received: list[str] = []

    def notifications() -> list[str]:
        with contextlib.suppress(BlockingIOError):
            while True:
                received.append(notify.recv(4096).decode())
        return [m.split("\n")[0] for m in received if not m.startswith(("WATCHDOG", "STATUS"))]

    process = await asyncio.create_subprocess_exec(
        *sitectl_argv("run", "--config", str(site_file)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=subprocess_env(NOTIFY_SOCKET=str(tmp_path / "notify")),
    )
    try:
        await eventually(lambda: notifications() == ["READY=1"], timeout_s=30)
        code, out, err = await sitectl(
            "chargers", "adopt", "NEW-8", "--config", str(site_file), "--no-reload",
            "--fuse", "c1", "--lines", "L1,L2", "--max-a", "16", "--safe-a", "0",
        )  # fmt: skip
        assert code == 0, err
        assert "not reloaded" in out
        process.send_signal(signal.SIGHUP)
        await eventually(lambda: notifications() == ["READY=1", "RELOADING=1", "READY=1"], timeout_s=30)
        assert any("MONOTONIC_USEC=" in m for m in received if m.startswith("RELOADING=1"))
        code, out, err = await sitectl("status", "--config", str(site_file))
        assert code == 0, err
        assert "NEW-8" in out
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 30) == 0
        notify.close()
