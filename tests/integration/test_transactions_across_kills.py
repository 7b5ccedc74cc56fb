"""Transactions against a daemon that is SIGKILLed: an answered stop is never lost, an open session
survives the restart, and what the car drew meanwhile is billed.

The daemon is a real `sitectl run` process (killed with SIGKILL, as a power cut or the OOM killer
would); the chargers are the `ocpp` library's charge points, not the simulator, so that the driver is
held to what an independent implementation sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.sessions import Ledger
from controller.sessions.model import Session, SessionFlag, StopSource
from tests.integration.ocpp_support import (
    PASSWORD_HASH,
    call16,
    call201,
    connected,
    now_iso,
    sample_values_16,
    sample_values_201,
)
from tests.support import free_tcp_port, sitectl_argv, subprocess_env
from tests.support.waiting import until

pytestmark = [pytest.mark.integration]

SITE = """
[site]
id = "kills"

[grid]
type = "TN"

[[fuses]]
id = "main"
limit_a = 63

[ocpp]
listen = "127.0.0.1:{ocpp_port}"

[[chargers]]
id = "K16"
protocol = "ocpp"
fuse = "main"
lines = ["L1", "L2", "L3"]
max_a = 16
safe_current_a = 6
password_hash = "{password_hash}"

[[chargers]]
id = "K201"
protocol = "ocpp"
fuse = "main"
lines = ["L1", "L2", "L3"]
max_a = 16
safe_current_a = 6
password_hash = "{password_hash}"

[storage]
path = "{folder}/ledger.sqlite"

[control]
socket_path = "{folder}/control.sock"
"""


class Box:
    """One site folder and its daemon process, started and killed at will."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_tcp_port()
        self.site = folder / "site.toml"
        self.site.write_text(SITE.format(ocpp_port=self.port, password_hash=PASSWORD_HASH, folder=folder))
        self.url = f"ws://127.0.0.1:{self.port}/ocpp"
        self.process: asyncio.subprocess.Process | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The daemon, up when this enters (systemd's READY=1), SIGKILLed when it leaves unless
        it is gone already."""
        notify_path = self.folder / "notify"
        notify_path.unlink(missing_ok=True)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        notify.setblocking(False)
        self.process = await asyncio.create_subprocess_exec(
            *sitectl_argv("run", "--config", str(self.site)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            env=subprocess_env(NOTIFY_SOCKET=str(notify_path)),
        )
        try:
            async with asyncio.timeout(30):
                while True:
                    message = await asyncio.get_running_loop().sock_recv(notify, 4096)
                    if message.startswith(b"READY=1"):
                        break
            yield
        finally:
            notify.close()
            self.kill()
            await self.process.wait()

    def kill(self) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)

    async def sessions(self) -> list[Session]:
        async with await Ledger.open(self.folder / "ledger.sqlite") as ledger:
            return await ledger.list_sessions()


async def start_16(cp: Any, meter_start: int) -> int:
    await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
    start = await cp.call(
        call16.StartTransaction(connector_id=1, id_tag="TAG-K", meter_start=meter_start, timestamp=now_iso())
    )
    await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
    return int(start.transaction_id)


def event_201(kind: str, tx: str, seq: int, energy_wh: float, context: str, **info: Any) -> Any:
    # A second apart per sequence number: readings stamped the same second are one reading.
    moment = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seq)
    return call201.TransactionEvent(
        event_type=kind,
        timestamp=moment.isoformat(),
        trigger_reason="Authorized" if kind == "Started" else "EVCommunicationLost",
        seq_no=seq,
        transaction_info={"transaction_id": tx, **info},
        evse={"id": 1, "connector_id": 1},
        id_token={"id_token": "TAG-K", "type": "ISO14443"},
        meter_value=sample_values_201(energy_wh, (16.0, 16.0, 16.0), context, moment.isoformat()),
    )


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_stop_the_charger_saw_answered_survives_a_kill_right_after_the_answer(
    tmp_path: Path, version: str
) -> None:
    # The kill lands the moment the answer arrives, eight times over: a daemon that answered first
    # and wrote afterwards loses some of these stops (and bills the session at its last sample).
    box = Box(tmp_path)
    identity = "K16" if version == "1.6" else "K201"
    rounds = 8
    for n in range(rounds):
        register = 10_000 * (n + 1)
        async with box.running(), connected(box.url, identity, version=version) as cp:
            await cp.boot_until_accepted()
            if version == "1.6":
                tx = await start_16(cp, register)
                await cp.call(
                    call16.StopTransaction(
                        transaction_id=tx, meter_stop=register + 726, timestamp=now_iso(), reason="Local"
                    )
                )
            else:
                tx_id = f"tx-{n}"
                await cp.call(
                    event_201("Started", tx_id, 0, register, "Transaction.Begin", charging_state="Charging")
                )
                await cp.call(
                    event_201("Ended", tx_id, 1, register + 726, "Transaction.End", stopped_reason="Local")
                )
            box.kill()
    sessions = await box.sessions()
    assert len(sessions) == rounds
    for session in sessions:
        assert session.stop_source is StopSource.CHARGER, session
        assert session.energy_wh == 726


async def test_an_open_session_survives_a_kill_and_bills_what_the_car_drew_meanwhile(tmp_path: Path) -> None:
    box = Box(tmp_path)
    async with box.running(), connected(box.url, "K16") as cp:
        await cp.boot_until_accepted()
        tx = await start_16(cp, 5_000)
        await cp.call(
            call16.MeterValues(
                connector_id=1, transaction_id=tx, meter_value=sample_values_16(5_400, (16.0, 16.0, 16.0))
            )
        )
        box.kill()
    # The car went on charging while the box was down; the charger reconnects to the new daemon
    # without a boot (only its link dropped) and is asked what it has.
    async with box.running(), connected(box.url, "K16") as cp:
        await cp.boot_until_accepted()
        await until(lambda: "MeterValues" in cp.rec.triggers, 30, "the daemon asking for a reading")
        assert "StatusNotification" in cp.rec.triggers
        await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Charging"))
        await cp.call(
            call16.MeterValues(
                connector_id=1, transaction_id=tx, meter_value=sample_values_16(9_100, (16.0, 16.0, 16.0))
            )
        )
        await cp.call(
            call16.StopTransaction(
                transaction_id=tx, meter_stop=9_300, timestamp=now_iso(), reason="EVDisconnected"
            )
        )
    (session,) = await box.sessions()
    assert session.stop_source is StopSource.CHARGER
    assert session.stop_reason == "EVDisconnected"
    assert session.energy_wh == 4_300
    assert sum(p.energy_wh for p in session.periods) == 4_300


async def test_a_201_transaction_the_station_no_longer_has_is_closed_with_its_last_reading(
    tmp_path: Path,
) -> None:
    box = Box(tmp_path)
    async with box.running(), connected(box.url, "K201", version="2.0.1") as cp:
        await cp.boot_until_accepted()
        await cp.call(
            event_201("Started", "tx-gone", 0, 2_000, "Transaction.Begin", charging_state="Charging")
        )
        await cp.call(event_201("Updated", "tx-gone", 1, 2_600, "Sample.Periodic", charging_state="Charging"))
        box.kill()
    # The station lost power and its queue meanwhile: it says the transaction is not ongoing and
    # nothing is queued for it, and its connector is free. Only then is the session closed.
    async with box.running(), connected(box.url, "K201", version="2.0.1") as cp:
        cp.rec.transaction_status = {"ongoing_indicator": False, "messages_in_queue": False}
        await cp.boot_until_accepted()
        await until(
            lambda: any(name == "GetTransactionStatus" for name, _ in cp.rec.commands),
            30,
            "the daemon asking about the transaction",
        )
        (open_session,) = await box.sessions()
        assert open_session.active  # the answer alone, with the connector's state unknown, is no stop
        await cp.call(
            call201.StatusNotification(
                timestamp=now_iso(), connector_status="Available", evse_id=1, connector_id=1
            )
        )

        async def closed() -> bool:
            return not (await box.sessions())[0].active

        await until(closed, 30, "the session closed")
    (session,) = await box.sessions()
    assert session.stop_source is StopSource.INFERRED, session
    assert session.energy_wh == 600, session
    assert SessionFlag.REOPENED not in session.flags
